//! `check`: it proves the credentials and every endpoint the enabled pipelines use
//! (issue 13 part 8), naming a broken one and the setting to fix.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proves_the_credentials() {
    let mut env = CliEnv::start(t(NOW), START).await;
    let o = env.run(&["check"]).await;
    o.expect_code(0);
    assert!(o.stdout.contains("token accepted"), "{}", o.all());

    let wrong = "wrong-secret-7f3a9c";
    env.set("SOBOT_APP_SECRET", wrong);
    let o = env.run(&["check"]).await;
    o.expect_code(1);
    assert!(
        o.stderr.contains("refused") && o.stderr.contains("SOBOT_APP_SECRET"),
        "the message does not say the credentials were refused\n{}",
        o.all()
    );
    assert!(!o.all().contains(wrong), "the secret leaked\n{}", o.all());
}

// --- issue 13 part 8: `check` proves every endpoint the enabled pipelines use ---

/// An office hour of the simulated present: the talks window `check` searches (the one
/// the next run would load) holds answered calls, so parties and recordings are probed.
const CHECK_NOW: &str = "2024-01-02T15:00:00+08:00";

/// Every endpoint the shipped pipelines use with recordings on, as `check` names them,
/// with how many rows each has (one per distinct report request).
const CHECKED: &[(&str, usize)] = &[
    ("/tokens/company", 1),
    ("/callservice/tm/tm-reports/maincdrs/_search", 1),
    ("/callservice/tm/tm-reports/maincdrs/{callID}/partycdrs", 1),
    ("/callservice/v6/cc-audios/recordings/{id}", 1),
    ("/callservice/tm/tm-reports/agent-histories/_search", 1),
    ("/callservice/tm/tm-reports/agent-table/_search", 3),
    ("/callservice/tm/tm-reports/depart-table/_search", 2),
    ("/callservice/tm/tm-reports/gateway-number-table/_search", 1),
    ("/callservice/tm/tm-reports/gateway_number/check_plan", 1),
    ("/callservice/v6/webmsg/monitoring/agents-metrics", 1),
];

/// A simulator at CHECK_NOW and the shipped pipelines with recordings turned on.
async fn check_env(config: SimConfig) -> CliEnv {
    let mut env = CliEnv::start_with(config, START).await;
    let dir = env.path().join("pipelines-with-recordings");
    broken_pipelines(&dir, "recordings.toml", |t| {
        t.replace("enabled = false", "enabled = true")
    });
    env.set("SOBOT_SYNC_PIPELINES", &dir.display().to_string());
    env
}

/// The table rows of `check`'s output, keyed by endpoint (several rows may share one).
fn endpoint_rows<'a>(stdout: &'a str, endpoint: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(endpoint))
        .collect()
}

/// `check` against a simulator: exit 0, and a row `ok` for every endpoint, each with a
/// real request behind it (parties and recordings of a call the talk probe found).
async fn assert_check_proves_everything(config: SimConfig, settings: &[(&str, &str)]) {
    let mut env = check_env(config).await;
    for (k, v) in settings {
        env.set(k, v);
    }
    let before = env.sim.stats();
    let o = env.run(&["check", "--now", CHECK_NOW]).await;
    o.expect_code(0);
    assert!(o.stdout.contains("ENDPOINT"), "no table\n{}", o.all());
    for (endpoint, n) in CHECKED {
        let rows = endpoint_rows(&o.stdout, endpoint);
        assert_eq!(rows.len(), *n, "rows of {endpoint}\n{}", o.all());
        for row in rows {
            let ok = row.ends_with(" ok") || row.ends_with("ok (token accepted)");
            assert!(ok, "{endpoint} is not plainly ok: {row:?}\n{}", o.all());
        }
    }
    let stats = env.sim.stats();
    for (endpoint, at_least) in [
        ("maincdrs", 1),
        ("partycdrs", 1),
        ("recordings", 1),
        ("agent-histories", 1),
        ("agent-table", 3),
        ("depart-table", 2),
        ("gateway-number-table", 1),
        ("check_plan", 1),
        ("agents-metrics", 1),
    ] {
        let asked = stats.count(endpoint) - before.count(endpoint);
        assert!(
            asked >= at_least,
            "check asked {endpoint} {asked} times, not {at_least}\n{}",
            o.all()
        );
    }
    assert!(
        stats.token_requests > before.token_requests,
        "no token asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proves_every_endpoint() {
    assert_check_proves_everything(
        SimConfig {
            now: Some(t(CHECK_NOW)),
            ..SimConfig::default()
        },
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proves_every_endpoint_in_the_literal_dialect() {
    assert_check_proves_everything(
        SimConfig {
            now: Some(t(CHECK_NOW)),
            dialect: sobot_sync::sim::Dialect::Literal,
            ..SimConfig::default()
        },
        // The literal dialect refuses metrics without operatorUserId under a company token.
        &[("SOBOT_OPERATOR_USER_ID", "sim-operator")],
    )
    .await;
}

/// One endpoint broken for good (HTTP 403, as for a token without the permission): exit
/// 1, that endpoint's rows name the failure and the setting to fix, every other row ok;
/// `--json` says the same in fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_broken_endpoint() {
    const BROKEN: &str = "/callservice/tm/tm-reports/agent-table/_search";
    let env = check_env(SimConfig {
        now: Some(t(CHECK_NOW)),
        faults: Faults {
            broken_endpoints: vec![BROKEN.into()],
            broken_endpoint_status: Some(403),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let started = std::time::Instant::now();
    let o = env.run(&["check", "--now", CHECK_NOW]).await;
    o.expect_code(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "check took {:?} to report a broken endpoint",
        started.elapsed()
    );
    for (endpoint, n) in CHECKED {
        let rows = endpoint_rows(&o.stdout, endpoint);
        assert_eq!(rows.len(), *n, "rows of {endpoint}\n{}", o.all());
        for row in rows {
            if *endpoint == BROKEN {
                assert!(
                    row.contains("FAIL") && row.contains("HTTP 403"),
                    "{row:?}\n{}",
                    o.all()
                );
                assert!(
                    row.contains("Statistical Reports") && row.contains("SOBOT_AGENT_TOKEN"),
                    "the row does not say which permission to fix: {row:?}"
                );
            } else {
                assert!(!row.contains("FAIL"), "{endpoint} failed too: {row:?}");
            }
        }
    }
    assert!(
        o.stderr.contains(BROKEN),
        "stderr names no endpoint\n{}",
        o.all()
    );

    let o = env.run(&["check", "--json", "--now", CHECK_NOW]).await;
    o.expect_code(1);
    let doc: Value = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("check --json is not JSON: {e}\n{}", o.all()));
    assert_eq!(doc["ok"], false);
    let checks = doc["checks"].as_array().expect("checks is an array");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["check"].as_str()).collect();
    assert_eq!(
        names,
        ["settings", "pipelines", "privacy", "storage", "credentials"]
    );
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
    let endpoints = doc["endpoints"].as_array().expect("endpoints is an array");
    assert_eq!(
        endpoints.len(),
        CHECKED.iter().map(|(_, n)| n).sum::<usize>(),
        "{endpoints:#?}"
    );
    let mut failed_pipelines = Vec::new();
    for e in endpoints {
        let endpoint = e["endpoint"].as_str().expect("endpoint is a string");
        assert!(
            CHECKED.iter().any(|(c, _)| *c == endpoint),
            "unexpected endpoint {endpoint}"
        );
        let pipelines = e["pipelines"].as_array().expect("pipelines is an array");
        assert!(!pipelines.is_empty(), "{e}");
        if endpoint == BROKEN {
            assert_eq!(e["ok"], false, "{e}");
            let error = e["error"].as_str().expect("a failed row has an error");
            assert!(error.contains("HTTP 403") && error.contains(BROKEN), "{e}");
            let hint = e["hint"].as_str().expect("a failed row has a hint");
            assert!(hint.contains("SOBOT_AGENT_TOKEN"), "{e}");
            failed_pipelines.extend(pipelines.iter().filter_map(Value::as_str));
        } else {
            assert_eq!(e["ok"], true, "{e}");
            assert_eq!(e["error"], Value::Null, "{e}");
            assert_eq!(e["hint"], Value::Null, "{e}");
        }
    }
    failed_pipelines.sort_unstable();
    assert_eq!(
        failed_pipelines,
        [
            "report_agents_inbound",
            "report_agents_outbound",
            "report_agents_status"
        ]
    );
}

/// A search that finds no call leaves nothing to probe parties and recordings with: they
/// are ok with a note, not failures. A server error on the talk list leaves them
/// unproven, and says what to fix first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_without_a_call_notes_it_and_a_broken_parent_blocks_its_children() {
    let mut env = check_env(SimConfig {
        now: Some(t(CHECK_NOW)),
        ..SimConfig::default()
    })
    .await;
    // Before the simulated call centre's first call: no call in the window searched.
    let o = env
        .run(&["check", "--now", "2024-01-01T00:30:00+08:00"])
        .await;
    o.expect_code(0);
    for endpoint in [
        "/callservice/tm/tm-reports/maincdrs/{callID}/partycdrs",
        "/callservice/v6/cc-audios/recordings/{id}",
    ] {
        let rows = endpoint_rows(&o.stdout, endpoint);
        assert!(
            rows.len() == 1 && rows[0].ends_with("ok (no call to probe in the window searched)"),
            "{endpoint}\n{}",
            o.all()
        );
    }

    env.sim.set_faults(Faults {
        broken_endpoints: vec!["/callservice/tm/tm-reports/maincdrs/_search".into()],
        ..Faults::default()
    });
    env.set("SOBOT_RETRY_MIN_BACKOFF_MS", "10");
    let o = env.run(&["check", "--json", "--now", CHECK_NOW]).await;
    o.expect_code(1);
    let doc: Value = serde_json::from_str(&o.stdout).expect("check --json is JSON");
    let row = |endpoint: &str| {
        doc["endpoints"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["endpoint"] == endpoint))
            .unwrap_or_else(|| panic!("no row for {endpoint}: {doc}"))
            .clone()
    };
    let talks = row("/callservice/tm/tm-reports/maincdrs/_search");
    assert_eq!(talks["ok"], false);
    assert!(
        talks["error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 500")),
        "{talks}"
    );
    for child in [
        "/callservice/tm/tm-reports/maincdrs/{callID}/partycdrs",
        "/callservice/v6/cc-audios/recordings/{id}",
    ] {
        let r = row(child);
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(
            r["hint"], "fix /callservice/tm/tm-reports/maincdrs/_search first",
            "{r}"
        );
    }
    assert_eq!(
        row("/callservice/tm/tm-reports/agent-histories/_search")["ok"],
        true
    );
}
