//! What the binary refuses, and how: bad settings, definitions and catalogues exit 2
//! naming what to fix; corrupt state is reported without a panic; secrets never printed.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_exit_2_naming_the_setting() {
    let env = CliEnv::start(t(NOW), START).await;
    let now = env.now_arg();
    let run = ["run", "--now", now.as_str()];

    let config = env.path().join("settings.toml");
    std::fs::write(&config, "max_rps = 5\nmax_rsp = 3\n").expect("write settings file");
    let config = config.display().to_string();
    let garbled = env.path().join("garbled.toml");
    std::fs::write(&garbled, "max_rps = [5\n").expect("write settings file");
    let garbled = garbled.display().to_string();

    type Edit<'a> = (
        &'a str,
        Vec<(&'a str, Option<&'a str>)>,
        Vec<&'a str>,
        Vec<&'a str>,
    );
    let cases: Vec<Edit> = vec![
        (
            "max_rps not a number",
            vec![("SOBOT_MAX_RPS", Some("abc"))],
            run.to_vec(),
            vec!["SOBOT_MAX_RPS", "abc"],
        ),
        (
            "unknown time zone",
            vec![("SOBOT_TIMEZONE", Some("Mars/X"))],
            run.to_vec(),
            vec!["SOBOT_TIMEZONE", "Mars/X"],
        ),
        (
            "unsupported warehouse scheme",
            vec![("SOBOT_SYNC_WAREHOUSE", Some("gs://x"))],
            run.to_vec(),
            vec!["SOBOT_SYNC_WAREHOUSE", "gs://x"],
        ),
        (
            "unknown key in --config",
            vec![],
            vec!["run", "--now", now.as_str(), "--config", config.as_str()],
            vec!["max_rsp", "settings.toml"],
        ),
        (
            "app id without secret",
            vec![("SOBOT_APP_SECRET", None)],
            run.to_vec(),
            vec!["SOBOT_APP_SECRET"],
        ),
        (
            "no credentials at all",
            vec![("SOBOT_APP_ID", None), ("SOBOT_APP_SECRET", None)],
            run.to_vec(),
            vec!["SOBOT_APP_ID", "SOBOT_TOKEN"],
        ),
        (
            "--now not a time",
            vec![],
            vec!["run", "--now", "yesterday-ish"],
            vec!["--now", "yesterday-ish"],
        ),
        (
            "backfill --from not a time",
            vec![],
            vec!["backfill", "talks", "--from", "soon", "--to", "2024-01-02"],
            vec!["--from", "soon"],
        ),
        (
            "status with a bad time zone",
            vec![("SOBOT_TIMEZONE", Some("Mars/X"))],
            vec!["status", "--json"],
            vec!["SOBOT_TIMEZONE"],
        ),
        (
            "check with a bad rate",
            vec![("SOBOT_MAX_RPS", Some("0"))],
            vec!["check"],
            vec!["SOBOT_MAX_RPS"],
        ),
        (
            "unknown pipeline named",
            vec![],
            vec!["run", "calls", "--now", now.as_str()],
            vec!["calls", "talks"],
        ),
        (
            "--config file missing",
            vec![],
            vec!["check", "--config", "no-such-settings.toml"],
            vec!["--config", "no-such-settings.toml"],
        ),
        (
            "--config not TOML",
            vec![],
            vec!["check", "--config", garbled.as_str()],
            vec!["--config", "garbled.toml", "TOML"],
        ),
        (
            "base URL not a URL",
            vec![("SOBOT_BASE_URL", Some("sg.sobot.io:443"))],
            run.to_vec(),
            vec!["SOBOT_BASE_URL"],
        ),
        (
            "start not a time",
            vec![("SOBOT_SYNC_START", Some("last tuesday"))],
            run.to_vec(),
            vec!["SOBOT_SYNC_START"],
        ),
    ];
    for (case, changes, args, needles) in cases {
        let mut e = env.env.clone();
        for (k, v) in changes {
            match v {
                Some(v) => e.insert(k.to_string(), v.to_string()),
                None => e.remove(k),
            };
        }
        let o = crate::support::cli_proc::output(crate::support::cli_proc::command(
            env.path(),
            &e,
            &args,
        ))
        .await;
        assert_config_error(&o, case, &needles);
    }
    assert_eq!(
        files_under(&env.warehouse()),
        0,
        "a refused command wrote data or state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_definitions_exit_2_naming_file_and_key() {
    let mut env = CliEnv::start(t(NOW), START).await;
    let now = env.now_arg();
    type Case = (
        &'static str,
        &'static str,
        fn(&str) -> String,
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (
            "unknown key",
            "talks.toml",
            |s| format!("colour = \"red\"\n{s}"),
            &["talks.toml", "colour"],
        ),
        (
            "window_secs = 7",
            "talks.toml",
            |s| s.replace("window_secs = 3600", "window_secs = 7"),
            &["talks.toml", "window_secs"],
        ),
        (
            "missing endpoint",
            "agent_histories.toml",
            |s| {
                s.lines()
                    .filter(|l| !l.starts_with("endpoint"))
                    .collect::<Vec<_>>()
                    .join("\n")
            },
            &["agent_histories.toml", "endpoint"],
        ),
        (
            "schedule every hour",
            "talks.toml",
            |s| s.replace("schedule = \"0 5 * * * *\"", "schedule = \"every hour\""),
            &["talks.toml", "schedule", "every hour"],
        ),
        (
            "schema that does not exist",
            "talks.toml",
            |s| s.replace("schema = \"talks\"", "schema = \"calls_v9\""),
            &["talks.toml", "schema", "calls_v9"],
        ),
        (
            "two pipelines writing one table",
            "agent_histories.toml",
            |s| {
                s.replace("table = \"agent_histories\"", "table = \"talks\"")
                    .replace("schema = \"agent_histories\"", "schema = \"talks\"")
            },
            &["talks.toml", "table", "talks", "agent_histories"],
        ),
        (
            "child with unknown parent",
            "parties.toml",
            |s| s.replace("parent = \"talks\"", "parent = \"calls\""),
            &["parties.toml", "parent", "calls"],
        ),
    ];
    for (i, (case, file, edit, needles)) in cases.iter().enumerate() {
        let dir = env.path().join(format!("pipelines-{i}"));
        broken_pipelines(&dir, file, edit);
        env.set("SOBOT_SYNC_PIPELINES", &dir.display().to_string());
        let o = env.run(&["run", "--now", &now]).await;
        assert_config_error(&o, case, needles);
        let o = env.run(&["check"]).await;
        assert_config_error(&o, &format!("check: {case}"), needles);
    }
    env.set("SOBOT_SYNC_PIPELINES", &format!("{REPO}/pipelines"));

    // A malformed schema: a column type that does not exist.
    let schemas = env.path().join("schemas-bad");
    copy_dir(&Path::new(REPO).join("schemas"), &schemas);
    let file = schemas.join("agent_histories.toml");
    let text = std::fs::read_to_string(&file).expect("read schema");
    let bad = text.replacen("type = \"int\"", "type = \"decimal\"", 1);
    assert_ne!(bad, text);
    std::fs::write(&file, bad).expect("write schema");
    env.set("SOBOT_SYNC_SCHEMAS", &schemas.display().to_string());
    let o = env.run(&["run", "--now", &now]).await;
    assert_config_error(
        &o,
        "schema with an unknown type",
        &["agent_histories.toml", "decimal"],
    );
    assert_eq!(
        files_under(&env.warehouse()),
        0,
        "a refused command wrote data or state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_state_is_reported_without_a_panic() {
    let env = CliEnv::start(t(NOW), "2024-01-02T20:00:00+08:00").await;
    env.sync().await.expect_code(0);
    let dir = env.warehouse().join("_state/talks/state");
    let mut versions: Vec<_> = std::fs::read_dir(&dir)
        .expect("talks has committed state")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    versions.sort();
    let newest = versions.pop().expect("a state version");
    std::fs::write(&newest, b"{\"format\": 1, \"pipel").expect("corrupt the state");
    for args in [vec!["status", "--json"], vec!["run", "talks", "--now", NOW]] {
        let o = env.run(&args).await;
        o.expect_code(1);
        assert!(
            o.stderr.contains("talks") && o.stderr.contains("unreadable"),
            "{args:?}: the message does not say which state is broken\n{}",
            o.all()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_printed() {
    let secret = "a-unique-secret-value";
    let token = "a-unique-static-token-value";
    let config = SimConfig {
        now: Some(t(NOW)),
        app_secret: secret.into(),
        static_token: Some(token.into()),
        ..SimConfig::default()
    };
    let mut env = CliEnv::start_with(config, "2024-01-02T18:00:00+08:00").await;
    env.set("SOBOT_SYNC_LOG", "debug");
    let now = env.now_arg();
    let mut outputs = Vec::new();
    for args in [
        vec!["check"],
        vec!["run", "--now", now.as_str()],
        vec!["status", "--now", now.as_str()],
        vec!["status", "--json", "--now", now.as_str()],
    ] {
        let o = env.run(&args).await;
        o.expect_code(0);
        outputs.push(o);
    }
    // A ready token instead of company credentials, even at the most verbose level.
    env.unset("SOBOT_APP_ID").unset("SOBOT_APP_SECRET");
    env.set("SOBOT_TOKEN", token).set("SOBOT_SYNC_LOG", "trace");
    for args in [vec!["check"], vec!["run", "--now", now.as_str()]] {
        let o = env.run(&args).await;
        o.expect_code(0);
        outputs.push(o);
    }
    // And when the secret is refused.
    env.unset("SOBOT_TOKEN");
    env.set("SOBOT_APP_ID", "sim-app")
        .set("SOBOT_APP_SECRET", "a-unique-wrong-secret");
    let o = env.run(&["check"]).await;
    o.expect_code(1);
    outputs.push(o);
    for o in &outputs {
        let all = o.all();
        for s in [secret, token, "a-unique-wrong-secret"] {
            assert!(!all.contains(s), "{s} was printed\n{all}");
        }
    }
    assert!(
        outputs[1].stderr.contains("DEBUG"),
        "debug logging was not on, so the test proves little\n{}",
        outputs[1].all()
    );
}

/// A broken indicator catalogue in the configured schemas folder (SOBOT_SYNC_SCHEMAS) is
/// refused like a broken table schema: exit 2 naming the file and the fault, nothing
/// written. So is a missing one: the folder exists, so the built-in copies are not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_indicator_catalogue_exits_2_naming_the_file() {
    let mut env = CliEnv::start(t(NOW), START).await;
    let now = env.now_arg();
    let schemas = env.path().join("schemas-bad-indicators");
    copy_dir(&Path::new(REPO).join("schemas"), &schemas);
    let file = schemas.join("indicators").join("agents.toml");
    let text = std::fs::read_to_string(&file).expect("read catalogue");
    let bad = text.replacen("kind = \"ratio\"", "kind = \"percent\"", 1);
    assert_ne!(bad, text);
    std::fs::write(&file, bad).expect("write catalogue");
    env.set("SOBOT_SYNC_SCHEMAS", &schemas.display().to_string());
    for cmd in ["run", "check"] {
        let o = if cmd == "run" {
            env.run(&["run", "--now", &now]).await
        } else {
            env.run(&["check"]).await
        };
        assert_config_error(
            &o,
            &format!("{cmd}: catalogue with an unknown kind"),
            &["indicators/agents.toml", "percent"],
        );
    }
    std::fs::write(&file, text).expect("restore catalogue");
    std::fs::remove_file(schemas.join("indicators").join("departments.toml")).expect("remove");
    let o = env.run(&["run", "--now", &now]).await;
    assert_config_error(
        &o,
        "missing catalogue",
        &["indicators/departments.toml", "cannot read"],
    );
    assert_eq!(
        files_under(&env.warehouse()),
        0,
        "a refused command wrote data or state"
    );
}
