//! Observability (issue 4, part 2): `/metrics` and `/healthz` over HTTP against runs on
//! the simulator, JSON logs and the log-format setting of the real binary.

use crate::support::cli_proc::CliEnv;
use crate::support::rig::{Rig, Warehouse};
use chrono::{DateTime, Duration, Utc};
use sobot_sync::app::http;
use sobot_sync::app::http::{HttpContext, Server};
use sobot_sync::core::clock::FixedClock;
use sobot_sync::engine::run::Engine;
use sobot_sync::sim::{Faults, SimConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("test time {s:?}: {e}"))
}

/// One sample: metric name and its labels, sorted.
type Series = (String, BTreeMap<String, String>);

/// A small parser of the Prometheus text format (version 0.0.4): comment lines, then
/// `name{label="value",...} value` or `name value`. Label values may hold any character
/// but an unescaped quote (ours hold `{id}`). Panics on a line it cannot read, so a
/// malformed exposition fails the test.
fn parse_prometheus(text: &str) -> BTreeMap<Series, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "unexpected comment line {line:?}"
            );
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value on line {line:?}"));
        let name = &line[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let mut key = String::new();
            let close;
            loop {
                let (i, c) = chars
                    .next()
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                match c {
                    '}' => {
                        close = i;
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|x| x.1), Some('"'), "in {line:?}");
                        let mut value = String::new();
                        loop {
                            let (_, c) = chars
                                .next()
                                .unwrap_or_else(|| panic!("unclosed value in {line:?}"));
                            match c {
                                '"' => break,
                                '\\' => value.push(chars.next().map_or('\\', |x| x.1)),
                                c => value.push(c),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            }
            rest = &body[close + 1..];
        }
        let value = rest.split_whitespace().next().unwrap_or_default();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|e| panic!("bad value {v:?} in {line:?}: {e}")),
        };
        out.insert((name.to_string(), labels), value);
    }
    out
}

/// The sum of every sample of `name` whose labels include `want`.
fn sum(m: &BTreeMap<Series, f64>, name: &str, want: &[(&str, &str)]) -> f64 {
    m.iter()
        .filter(|((n, labels), _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .sum()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

async fn scrape(addr: SocketAddr) -> BTreeMap<Series, f64> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    parse_prometheus(&body)
}

async fn health(addr: SocketAddr) -> (u16, serde_json::Value) {
    let (status, body) = get(addr, "/healthz").await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

/// The server for `engine`'s pipelines and state, with its own clock at `now`.
async fn server(engine: &Engine, now: DateTime<Utc>) -> Server {
    let mut ctx = HttpContext::from_engine(engine);
    ctx.clock = Arc::new(FixedClock(now));
    http::serve(([127, 0, 0, 1], 0).into(), ctx)
        .await
        .expect("metrics server binds")
}

const SEARCH: &str = "/callservice/tm/tm-reports/maincdrs/_search";
const PARTIES: &str = "/callservice/tm/tm-reports/maincdrs/{id}/partycdrs";

/// Runs talks and parties twice against a simulator answering 429s and 5xx, scraping
/// `/metrics` over HTTP after each run: every named series is there, and the counters
/// grow with the second run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_and_move_across_runs_with_faults_on() {
    let start = t("2024-03-02T00:00:00+08:00");
    let now1 = t("2024-03-02T04:00:00+08:00");
    let now2 = now1 + Duration::hours(3);
    let config = SimConfig {
        now: Some(now2 + Duration::days(1)),
        faults: Faults {
            rate_limit_every: Some(7),
            retry_after_secs: 0,
            server_error_every: Some(11),
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let mut rig = Rig::new(config, Warehouse::local().await, start).await;
    rig.set("SOBOT_RETRY_MIN_BACKOFF_MS", "1");
    rig.set("SOBOT_RETRY_MAX_BACKOFF_MS", "2");
    let names = ["talks".to_string(), "parties".to_string()];

    let engine = rig.engine(now1);
    let srv = server(&engine, now1).await;
    sobot_sync::app::run::run_pipelines(&engine, &names)
        .await
        .expect("run 1 survives the faults");
    let m1 = scrape(srv.addr).await;

    let requests = "sobot_sync_api_requests_total";
    for (labels, what) in [
        (
            vec![("endpoint", SEARCH), ("status", "200")],
            "answered searches",
        ),
        (vec![("status", "429")], "429s"),
        (
            vec![("endpoint", PARTIES), ("status", "200")],
            "party requests",
        ),
    ] {
        assert!(sum(&m1, requests, &labels) > 0.0, "{what}: {m1:#?}");
    }
    let server_errors: f64 = ["500", "502", "503"]
        .iter()
        .map(|s| sum(&m1, requests, &[("status", s)]))
        .sum();
    assert!(server_errors > 0.0, "5xx answers counted");
    assert!(
        m1.keys()
            .filter(|(n, _)| n.starts_with("sobot_sync_api_"))
            .all(|(_, l)| l
                .get("endpoint")
                .is_none_or(|e| !e.contains("partycdrs") || e == PARTIES)),
        "call ids never become label values"
    );
    for (name, labels) in [
        ("sobot_sync_api_pages_total", vec![("endpoint", SEARCH)]),
        ("sobot_sync_api_pages_total", vec![("endpoint", PARTIES)]),
        ("sobot_sync_api_retries_total", vec![]),
        ("sobot_sync_api_rate_limited_total", vec![]),
        (
            "sobot_sync_rows_written_total",
            vec![("pipeline", "talks"), ("table", "talks")],
        ),
        (
            "sobot_sync_rows_written_total",
            vec![("pipeline", "parties"), ("table", "parties")],
        ),
        (
            "sobot_sync_files_written_total",
            vec![("pipeline", "talks"), ("table", "talks")],
        ),
        (
            "sobot_sync_windows_committed_total",
            vec![("pipeline", "talks")],
        ),
        (
            "sobot_sync_window_duration_seconds_count",
            vec![("pipeline", "talks")],
        ),
        (
            "sobot_sync_window_duration_seconds_bucket",
            vec![("pipeline", "talks"), ("le", "+Inf")],
        ),
        (
            "sobot_sync_runs_total",
            vec![("pipeline", "talks"), ("outcome", "succeeded")],
        ),
        (
            "sobot_sync_last_success_timestamp_seconds",
            vec![("pipeline", "talks")],
        ),
        ("sobot_sync_alert_lag_seconds", vec![("pipeline", "talks")]),
        ("sobot_sync_pipeline_healthy", vec![("pipeline", "talks")]),
    ] {
        assert!(
            sum(&m1, name, &labels) > 0.0,
            "{name} {labels:?} in {m1:#?}"
        );
    }
    assert!(
        m1.contains_key(&(
            "sobot_sync_watermark_lag_seconds".to_string(),
            [
                ("tenant".to_string(), String::new()),
                ("pipeline".to_string(), "talks".to_string())
            ]
            .into()
        )),
        "the lag gauge of talks, with the empty tenant of a setup without tenants"
    );
    // The tenant is a label of its own on every series of a pipeline and of the API
    // (other tests of this process may run engines with tenants: any value goes), and
    // `pipeline` is the bare name.
    for (name, labels) in m1.keys() {
        if labels.contains_key("pipeline") || name.starts_with("sobot_sync_api_") {
            assert!(labels.contains_key("tenant"), "{name} {labels:?}");
        }
        let pipeline = labels
            .get("pipeline")
            .map(String::as_str)
            .unwrap_or_default();
        assert!(!pipeline.contains('/'), "{name} {labels:?}");
    }
    let build = sum(
        &m1,
        "sobot_sync_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
    );
    assert_eq!(build, 1.0, "the build info gauge: {m1:#?}");
    if cfg!(target_os = "linux") {
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(sum(&m1, name, &[]) > 0.0, "{name} in {m1:#?}");
        }
        assert!(
            m1.keys().any(|(n, _)| n == "process_cpu_seconds_total"),
            "process_cpu_seconds_total in {m1:#?}"
        );
    }

    sobot_sync::app::run::run_pipelines(&rig.engine(now2), &names)
        .await
        .expect("run 2 survives the faults");
    let m2 = scrape(srv.addr).await;
    for (name, labels) in [
        (requests, vec![("endpoint", SEARCH), ("status", "200")]),
        ("sobot_sync_api_pages_total", vec![("endpoint", PARTIES)]),
        ("sobot_sync_rows_written_total", vec![("pipeline", "talks")]),
        (
            "sobot_sync_files_written_total",
            vec![("pipeline", "parties")],
        ),
        (
            "sobot_sync_windows_committed_total",
            vec![("pipeline", "talks")],
        ),
        (
            "sobot_sync_window_duration_seconds_count",
            vec![("pipeline", "talks")],
        ),
        (
            "sobot_sync_runs_total",
            vec![("pipeline", "talks"), ("outcome", "succeeded")],
        ),
    ] {
        let (a, b) = (sum(&m1, name, &labels), sum(&m2, name, &labels));
        assert!(b > a, "{name} {labels:?} grows across runs: {a} -> {b}");
    }
}

/// issue 15: `/metrics` shows each pipeline's last run's requests and retries per
/// endpoint, exactly as the run reported them; an endpoint the next run did not call
/// (the token endpoint) drops to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_runs_requests_per_endpoint_are_gauges() {
    let start = t("2024-03-02T00:00:00+08:00");
    let now = t("2024-03-02T06:00:00+08:00");
    let config = SimConfig {
        now: Some(now + Duration::days(1)),
        faults: Faults {
            rate_limit_every: Some(5),
            retry_after_secs: 0,
            server_error_every: Some(7),
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let mut rig = Rig::new(config, Warehouse::local().await, start).await;
    rig.set("SOBOT_RETRY_MIN_BACKOFF_MS", "1");
    rig.set("SOBOT_RETRY_MAX_BACKOFF_MS", "2");
    let mut engine = rig.engine(now);
    // A label of this test's own: other tests of this process run talks too, and the
    // recorder is process-wide. The tenant only names the engine's series.
    engine.settings.tenant = Some("budget-gauges".into());
    let srv = server(&engine, now).await;
    let names = ["talks".to_string(), "parties".to_string()];
    let check = |m: &BTreeMap<Series, f64>, reports: &[sobot_sync::engine::run::Report]| {
        let mut retries = 0;
        for r in reports {
            let pipeline = r.pipeline.as_str();
            // issue 15: a lookback of parties asks nothing when no call is new, changed
            // or settling.
            assert!(
                !r.api_requests.is_empty() || r.pipeline == "parties",
                "{r:#?}"
            );
            for (endpoint, u) in &r.api_requests.0 {
                let labels = [
                    ("tenant", "budget-gauges"),
                    ("pipeline", pipeline),
                    ("endpoint", endpoint.as_str()),
                ];
                assert_eq!(
                    sum(m, "sobot_sync_run_api_requests", &labels),
                    u.requests as f64,
                    "{labels:?}"
                );
                assert_eq!(
                    sum(m, "sobot_sync_run_api_retries", &labels),
                    u.retries as f64,
                    "{labels:?}"
                );
                retries += u.retries;
            }
        }
        assert!(retries > 0, "the faults were retried: {reports:#?}");
    };
    let token = [
        ("tenant", "budget-gauges"),
        ("pipeline", "talks"),
        ("endpoint", "/tokens/company"),
    ];

    let first = sobot_sync::app::run::run_pipelines(&engine, &names)
        .await
        .expect("run 1 survives the faults");
    let m1 = scrape(srv.addr).await;
    check(&m1, &first);
    assert_eq!(sum(&m1, "sobot_sync_run_api_requests", &token), 1.0);

    // The same client: its token is still good, the lookback windows are asked again.
    let second = sobot_sync::app::run::run_pipelines(&engine, &names)
        .await
        .expect("run 2 survives the faults");
    let m2 = scrape(srv.addr).await;
    check(&m2, &second);
    assert_eq!(
        sum(&m2, "sobot_sync_run_api_requests", &token),
        0.0,
        "no token request in run 2: {second:#?}"
    );
}

/// `/healthz`: 200 while the watermark is within the threshold, 503 naming the
/// pipeline when it lags beyond (a far `now`, or a pipeline file's small
/// `alert_lag_secs`), and 503 when the state cannot be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_follows_lag_threshold_and_state() {
    let start = t("2024-03-02T00:00:00+08:00");
    let now = t("2024-03-02T04:00:00+08:00");
    let config = SimConfig {
        now: Some(now + Duration::days(1)),
        ..SimConfig::default()
    };
    let mut rig = Rig::new(config, Warehouse::local().await, start).await;
    let engine = rig.engine(now);
    sobot_sync::app::run::run_pipelines(&engine, &["talks".to_string()])
        .await
        .expect("talks runs");

    // Talks' windows up to 03:00 are loaded (30 min lag): an hour behind now.
    let fresh = server(&engine, now).await;
    let (code, body) = health(fresh.addr).await;
    assert_eq!(code, 200, "{body:#}");
    assert_eq!(body["status"], "ok");
    let talks = body["pipelines"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["pipeline"] == "talks"))
        .unwrap_or_else(|| panic!("talks in {body:#}"));
    assert_eq!(talks["lag_secs"], 3600);
    // Default: lag_secs + 2 windows + 1 h.
    assert_eq!(talks["alert_lag_secs"], 1800 + 2 * 3600 + 3600);
    assert_eq!(talks["healthy"], true);

    let stale = server(&engine, now + Duration::days(30)).await;
    let (code, body) = health(stale.addr).await;
    assert_eq!(code, 503, "{body:#}");
    assert_eq!(body["status"], "unhealthy");
    let reasons = body["reasons"].to_string();
    assert!(
        reasons.contains("pipeline talks") && reasons.contains("alert_lag_secs"),
        "{reasons}"
    );
    let m = scrape(stale.addr).await;
    assert_eq!(
        sum(&m, "sobot_sync_pipeline_healthy", &[("pipeline", "talks")]),
        0.0
    );

    // A pipeline file's own threshold, below the hour talks trails by.
    let defs = tempfile::tempdir().expect("pipelines folder");
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");
    for entry in std::fs::read_dir(repo).expect("repository pipelines") {
        let path = entry.expect("entry").path();
        let mut text = std::fs::read_to_string(&path).expect("pipeline file");
        if path.file_name().is_some_and(|n| n == "talks.toml") {
            // Before the file's first [table].
            text.insert_str(0, "alert_lag_secs = 1800\n");
        }
        let name = path.file_name().expect("file name");
        std::fs::write(defs.path().join(name), text).expect("copy");
    }
    rig.set("SOBOT_SYNC_PIPELINES", &defs.path().display().to_string());
    let strict = server(&rig.engine(now), now).await;
    let (code, body) = health(strict.addr).await;
    assert_eq!(code, 503, "{body:#}");
    assert!(
        body["reasons"]
            .to_string()
            .contains("beyond alert_lag_secs = 1800"),
        "{body:#}"
    );

    // Unreadable state: talks' state versions are no longer JSON.
    let root = rig
        .warehouse
        .url
        .strip_prefix("file://")
        .expect("local warehouse");
    let dir = std::path::Path::new(root).join("_state/talks/state");
    let mut broken = 0;
    for entry in std::fs::read_dir(&dir).expect("talks state folder") {
        std::fs::write(entry.expect("entry").path(), b"{not json").expect("corrupt");
        broken += 1;
    }
    assert!(broken > 0, "talks had state versions in {}", dir.display());
    let (code, body) = health(fresh.addr).await;
    assert_eq!(code, 503, "{body:#}");
    assert!(
        body["reasons"]
            .to_string()
            .contains("pipeline talks: state cannot be read"),
        "{body:#}"
    );
}

/// `SOBOT_SYNC_LOG_FORMAT=json`: every line the binary logs is one JSON object, and the
/// lines of a run carry its span (pipeline, mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_run_spans() {
    let now = t("2024-03-02T03:00:00+08:00");
    let mut env = CliEnv::start(now + Duration::days(1), "2024-03-02").await;
    env.set("SOBOT_SYNC_LOG_FORMAT", "json");
    env.set("SOBOT_SYNC_LOG", "debug");
    let o = env.run(&["run", "talks", "--now", &now.to_rfc3339()]).await;
    o.expect_code(0);
    let lines: Vec<serde_json::Value> = o
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{}", o.all())))
        .collect();
    assert!(!lines.is_empty(), "the run logged something");
    for l in &lines {
        assert!(l["level"].is_string() && l["fields"].is_object(), "{l}");
    }
    let planned = lines
        .iter()
        .find(|l| l["fields"]["message"] == "planned")
        .unwrap_or_else(|| panic!("a `planned` line in {}", o.stderr));
    assert_eq!(planned["span"]["name"], "run", "{planned}");
    assert_eq!(planned["span"]["pipeline"], "talks", "{planned}");
    assert_eq!(planned["span"]["mode"], "run", "{planned}");
    // Window spans nest in the run span (requests log inside them at debug).
    assert!(
        lines.iter().any(|l| l["spans"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["name"] == "window" && s["start"].is_string()))),
        "some line was logged inside a window span:\n{}",
        o.stderr
    );
}

/// `RUST_LOG` filters the logs when `SOBOT_SYNC_LOG` is unset, and `SOBOT_SYNC_LOG`
/// wins when both are set; `NO_COLOR` leaves the text lines without escape bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_stands_in_for_sobot_sync_log() {
    let now = t("2024-03-02T03:00:00+08:00");
    let mut env = CliEnv::start(now + Duration::days(1), "2024-03-02").await;
    env.unset("SOBOT_SYNC_LOG")
        .set("RUST_LOG", "debug")
        .set("NO_COLOR", "1");
    let o = env.run(&["run", "talks", "--now", &now.to_rfc3339()]).await;
    o.expect_code(0);
    assert!(
        o.stderr.contains(" DEBUG "),
        "debug lines under RUST_LOG=debug:\n{}",
        o.all()
    );
    assert!(
        !o.stderr.contains('\u{1b}'),
        "no escape bytes under NO_COLOR:\n{}",
        o.all()
    );
    env.set("SOBOT_SYNC_LOG", "info");
    let o = env.run(&["run", "talks", "--now", &now.to_rfc3339()]).await;
    o.expect_code(0);
    assert!(o.stderr.contains(" INFO "), "{}", o.all());
    assert!(
        !o.stderr.contains(" DEBUG "),
        "SOBOT_SYNC_LOG wins:\n{}",
        o.all()
    );
}

/// A bad log format or HTTP address is a configuration error: exit 2, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_log_format_and_http_addr_exit_2() {
    let now = t("2024-03-02T03:00:00+08:00");
    let mut env = CliEnv::start(now, "2024-03-02").await;
    env.set("SOBOT_SYNC_LOG_FORMAT", "yaml");
    let o = env.run(&["status"]).await;
    o.expect_code(2);
    assert!(
        o.stderr.contains("SOBOT_SYNC_LOG_FORMAT") && o.stderr.contains("yaml"),
        "{}",
        o.all()
    );
    env.unset("SOBOT_SYNC_LOG_FORMAT");
    env.set("SOBOT_SYNC_HTTP_ADDR", "localhost");
    let o = env.run(&["run", "--now", &now.to_rfc3339()]).await;
    o.expect_code(2);
    assert!(o.stderr.contains("SOBOT_SYNC_HTTP_ADDR"), "{}", o.all());
}

/// `backfill` with `SOBOT_SYNC_HTTP_ADDR` serves `/metrics` and `/healthz` while it
/// works (a CronJob's scrape), and still exits 0 with nothing on a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_serves_metrics_while_it_works() {
    let now = t("2024-03-05T00:00:00+08:00");
    let config = SimConfig {
        now: Some(now),
        faults: Faults {
            // Every request waits, so the backfill lasts seconds, not milliseconds.
            slow_every: Some(1),
            slow_ms: 150,
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let mut env = CliEnv::start_with(config, "2024-03-01").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    env.set("SOBOT_SYNC_HTTP_ADDR", &addr.to_string());
    let child = env.spawn(&[
        "backfill",
        "talks",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-03",
        "--now",
        &now.to_rfc3339(),
    ]);
    let mut scraped = None;
    for _ in 0..200 {
        if let Ok(resp) = reqwest::get(format!("http://{addr}/metrics")).await {
            let text = resp.text().await.unwrap_or_default();
            let answered = [("endpoint", SEARCH), ("status", "200")];
            if sum(
                &parse_prometheus(&text),
                "sobot_sync_api_requests_total",
                &answered,
            ) > 0.0
            {
                scraped = Some(text);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A backfill never moves the watermark: talks' state stands at SOBOT_SYNC_START,
    // four days behind now, which the health rule reports.
    let (code, body) = health(addr).await;
    assert_eq!(code, 503, "{body:#}");
    assert!(
        body["reasons"]
            .to_string()
            .contains("pipeline talks: watermark"),
        "{body:#}"
    );
    let o = crate::support::cli_proc::finish(child).await;
    o.expect_code(0);
    let m = parse_prometheus(
        &scraped.unwrap_or_else(|| panic!("no scrape while running\n{}", o.all())),
    );
    assert!(
        sum(
            &m,
            "sobot_sync_api_requests_total",
            &[("endpoint", SEARCH), ("status", "200")]
        ) > 0.0
    );
    assert!(
        !o.stderr.contains("windows,") && !o.stderr.contains("ETA"),
        "no progress bar without a terminal:\n{}",
        o.stderr
    );
}

/// On a terminal (a pseudo-terminal from util-linux `script`), `backfill` draws its
/// progress bar: windows done of total, rows and ETA.
/// Runs a command line of the binary with a terminal on its standard streams (util-linux
/// `script`), as a person at a shell would.
async fn on_a_terminal(env: &CliEnv, line: &str) -> crate::support::cli_proc::Outcome {
    let mut cmd = tokio::process::Command::new("script");
    cmd.args(["-qec", line, "/dev/null"])
        .current_dir(env.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", env.path())
        .env("TERM", "xterm")
        .envs(&env.env)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    crate::support::cli_proc::output(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_on_a_terminal_shows_a_progress_bar() {
    let now = t("2024-03-05T00:00:00+08:00");
    let config = SimConfig {
        now: Some(now),
        faults: Faults {
            slow_every: Some(1),
            slow_ms: 20,
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let env = CliEnv::start_with(config, "2024-03-01").await;
    let line = [
        crate::support::cli_proc::BIN,
        "backfill",
        "talks",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-03",
        "--now",
        &now.to_rfc3339(),
    ]
    .join(" ");
    let o = on_a_terminal(&env, &line).await;
    o.expect_code(0);
    // 2024-03-01 .. 03 in hourly windows: 48, all done at the end.
    assert!(o.stdout.contains("48/48 windows"), "{}", o.all());
    assert!(o.stdout.contains(" rows, ETA "), "{}", o.all());
    assert!(
        o.stdout.contains("talks: 48 windows"),
        "the report follows: {}",
        o.all()
    );

    // A report pipeline's backfill draws the same bar, to the last window.
    let line = line.replace(" talks ", " report_gateway_numbers ");
    let o = on_a_terminal(&env, &line).await;
    o.expect_code(0);
    let finished = o.stdout.split(" windows, ").any(|before| {
        let counts = before.rsplit(' ').next().unwrap_or_default();
        matches!(counts.split_once('/'), Some((a, b)) if a == b && a != "0")
    });
    assert!(finished, "a full bar for the report backfill: {}", o.all());
}

/// The report driver records its windows (duration histogram) and, at the end of the
/// run, its rows and files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_runs_record_windows_rows_and_files() {
    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-03T02:00:00+08:00");
    let config = SimConfig {
        now: Some(now + Duration::days(3)),
        ..SimConfig::default()
    };
    let rig = Rig::new(config, Warehouse::local().await, start).await;
    let engine = rig.engine(now);
    let srv = server(&engine, now).await;
    let name = "report_gateway_numbers";
    let before = scrape(srv.addr).await;
    let reports = sobot_sync::app::run::run_pipelines(&engine, &[name.to_string()])
        .await
        .expect("report runs");
    let rows = reports.iter().map(|r| r.rows).sum::<u64>();
    assert!(rows > 0, "the report loaded rows: {reports:?}");
    let after = scrape(srv.addr).await;
    let grew = |metric: &str| {
        sum(&after, metric, &[("pipeline", name)]) - sum(&before, metric, &[("pipeline", name)])
    };
    assert!(grew("sobot_sync_window_duration_seconds_count") >= 2.0);
    assert!(grew("sobot_sync_rows_written_total") >= rows as f64);
    assert!(grew("sobot_sync_files_written_total") >= 2.0);
}
