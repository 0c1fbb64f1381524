//! issue 5 (M): `watch-metrics` against the simulator's agent metrics stream, its clock
//! running 600 times faster than real time (a tick of 10 simulated seconds every ~17 ms,
//! a one-minute snapshot every 100 ms). OWNER: watch-metrics.
//!
//! Every snapshot written is compared with the simulator's model at the snapshot's time
//! (`Dataset::agent_metrics`, the code View Agent Indicator serves).

use crate::support::cli_proc::{CliEnv, finish};
use crate::support::rig::{Rig, Warehouse};
use crate::support::table::{self, i64_at, ms_at, str_at};
use chrono::{DateTime, Duration, Utc};
use sobot_sync::engine::watch_metrics::{WATCH_ENDPOINT, WatchReport, watch};
use sobot_sync::sim::{Faults, SimConfig};
use std::collections::{BTreeMap, BTreeSet};
use tokio_util::sync::CancellationToken;

const SPEED: f64 = 600.0;
const TICK_MS: u64 = 10_000;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("test time {s:?}: {e}"))
}

/// Office hours on a Monday: agents change state every few simulated minutes.
fn start() -> DateTime<Utc> {
    t("2024-03-04T15:00:00+08:00")
}

async fn rig(faults: Faults, warehouse: Warehouse) -> Rig {
    let config = SimConfig {
        now: Some(start()),
        metrics_tick_ms: TICK_MS,
        faults,
        ..SimConfig::default()
    };
    let mut rig = Rig::new(config, warehouse, t("2024-03-01T00:00:00+08:00")).await;
    rig.set("SOBOT_SYNC_METRICS_SNAPSHOT_SECS", "60");
    // At 600x, half a real second of backoff is five simulated minutes.
    rig.set("SOBOT_RETRY_MIN_BACKOFF_MS", "500");
    rig.set("SOBOT_RETRY_MAX_BACKOFF_MS", "1000");
    rig
}

/// Runs `watch` while the simulated clock runs from `start()` for `minutes`, then (with
/// `caught_up`) until the snapshot of `minutes - 2` is stored, so a client slowed down by
/// a busy machine is not stopped before it got there; then stops it.
async fn watch_for(rig: &Rig, minutes: i64, caught_up: bool) -> WatchReport {
    let engine = rig.engine(start());
    let stop = CancellationToken::new();
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move { watch(&engine, stop).await })
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    // The clock stands at start() until the stream is open, so its first full message
    // is at start() whatever the time the client took to connect.
    while rig.sim.stats().count("agents-metrics-watch") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no stream opened");
        assert!(!task.is_finished(), "watch ended early: {:?}", task.await);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    rig.sim.run_clock(start(), SPEED);
    let end = start() + Duration::minutes(minutes);
    while rig.sim.now() < end {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the simulated clock stalled"
        );
        assert!(!task.is_finished(), "watch ended early: {:?}", task.await);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if caught_up {
        let reader = rig.engine(start());
        let name = (end - Duration::minutes(2))
            .format("%Y%m%dT%H%M%SZ_")
            .to_string();
        loop {
            let files = sobot_sync::io::sink::list_files(&reader.warehouse, "agent_metrics")
                .await
                .expect("listing");
            if files.iter().any(|f| f.contains(&name)) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the snapshot {name} never came"
            );
            assert!(!task.is_finished(), "watch ended early: {:?}", task.await);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(30), task)
        .await
        .expect("watch stops after cancel")
        .expect("watch task")
        .expect("watch succeeds")
}

/// Asserts the table holds exactly the snapshots `written`, each equal to the model at its
/// time, every key once.
async fn assert_snapshots_are_true(rig: &Rig, written: &[DateTime<Utc>]) {
    assert_snapshots_are_true_where(rig, written, &|_| true).await;
}

/// The same for a stream filtered to the agents `keep` accepts in the model.
async fn assert_snapshots_are_true_where(
    rig: &Rig,
    written: &[DateTime<Utc>],
    keep: &dyn Fn(&serde_json::Value) -> bool,
) {
    let engine = rig.engine(start());
    let ds = rig.sim.dataset();
    let table = table::read(&engine, "agent_metrics").await;
    let mut by_time: BTreeMap<i64, usize> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for f in &table.files {
        let b = &f.batch;
        for i in 0..b.num_rows() {
            let uuid = str_at(b, "agent_uuid", i).expect("agent_uuid");
            let at_ms = ms_at(b, "snapshot_time", i).expect("snapshot_time");
            assert!(
                keys.insert((uuid.clone(), at_ms)),
                "key ({uuid}, {at_ms}) twice"
            );
            *by_time.entry(at_ms).or_default() += 1;
            let at = DateTime::<Utc>::from_timestamp_millis(at_ms).expect("time");
            let truth = ds.agent_metrics(rig.tz, at, &Faults::default());
            let a = truth["agentsMetrics"]["list"]
                .as_array()
                .and_then(|l| l.iter().find(|a| a["agentUUID"] == uuid.as_str()))
                .unwrap_or_else(|| panic!("agent {uuid} not in the model at {at}"));
            for (col, field) in [
                ("agent_login_status", "agentLoginStatus"),
                ("agent_work_status", "agentWorkStatus"),
                ("agent_busy_reason_code", "agentBusyReasonCode"),
                ("call_type", "callType"),
                ("phone_type", "phoneType"),
                (
                    "inbound_established_calls_count_today",
                    "inboundEstablishedCallsCountToday",
                ),
                (
                    "inbound_abandon_calls_count_today",
                    "inboundAbandonCallsCountToday",
                ),
                ("outbound_calls_count_today", "outboundCallsCountToday"),
                (
                    "outbound_established_calls_count_today",
                    "outboundEstablishedCallsCountToday",
                ),
            ] {
                assert_eq!(i64_at(b, col, i), a[field].as_i64(), "{uuid} {col} at {at}");
            }
            for (col, field) in [
                ("last_work_status_changed_time", "lastWorkStatusChangedTime"),
                (
                    "last_login_status_changed_time",
                    "lastLoginStatusChangedTime",
                ),
            ] {
                assert_eq!(
                    ms_at(b, col, i),
                    a[field].as_i64().filter(|v| *v != 0),
                    "{uuid} {col} at {at}"
                );
            }
            for (col, field) in [
                ("agent_id", "agentID"),
                ("customer_number", "customerNumber"),
                ("this_dn", "thisDN"),
            ] {
                assert_eq!(
                    str_at(b, col, i).unwrap_or_default(),
                    a[field].as_str().unwrap_or_default(),
                    "{uuid} {col} at {at}"
                );
            }
            // The summary counts the agents the stream serves: all of them unfiltered
            // (then it is the model's agentsSummary), the kept ones under a filter.
            let kept: Vec<&serde_json::Value> = truth["agentsMetrics"]["list"]
                .as_array()
                .map(|l| l.iter().filter(|a| keep(a)).collect())
                .unwrap_or_default();
            let sum = |field: &str| kept.iter().filter_map(|a| a[field].as_i64()).sum::<i64>();
            let all = kept.len() == 12;
            for (col, field) in [
                (
                    "summary_inbound_established_calls_count_today",
                    "inboundEstablishedCallsCountToday",
                ),
                (
                    "summary_inbound_abandon_calls_count_today",
                    "inboundAbandonCallsCountToday",
                ),
                (
                    "summary_outbound_calls_count_today",
                    "outboundCallsCountToday",
                ),
                (
                    "summary_outbound_established_calls_count_today",
                    "outboundEstablishedCallsCountToday",
                ),
            ] {
                assert_eq!(i64_at(b, col, i), Some(sum(field)), "summary {col} at {at}");
                if all {
                    assert_eq!(
                        truth["agentsSummary"][field].as_i64(),
                        Some(sum(field)),
                        "the model's own summary {field}"
                    );
                }
            }
            assert!(
                ms_at(b, "creation_time", i).is_some_and(|c| c <= at_ms),
                "creation_time after the snapshot"
            );
            assert!(str_at(b, "_extra", i).is_none(), "every field has a column");
        }
    }
    // The model's agents at each time, as the filter keeps them; a snapshot without
    // agents has no file.
    let expected: BTreeMap<i64, usize> = written
        .iter()
        .map(|w| {
            let truth = ds.agent_metrics(rig.tz, *w, &Faults::default());
            let n = truth["agentsMetrics"]["list"]
                .as_array()
                .map_or(0, |l| l.iter().filter(|a| keep(a)).count());
            (w.timestamp_millis(), n)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(by_time, expected, "snapshot times and agents in the table");
    assert_eq!(table.files.len(), expected.len(), "one file per snapshot");
}

/// The boundaries are consecutive minutes from `start()`, each written or skipped once.
fn assert_consecutive(report: &WatchReport) {
    let mut all: Vec<DateTime<Utc>> = report
        .written
        .iter()
        .chain(&report.skipped)
        .copied()
        .collect();
    all.sort();
    let expected: Vec<DateTime<Utc>> = (0..all.len() as i64)
        .map(|i| start() + Duration::minutes(i))
        .collect();
    assert_eq!(all, expected, "written and skipped snapshot times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_snapshots_equal_the_model_at_each_snapshot_time() {
    let rig = rig(Faults::default(), Warehouse::local().await).await;
    let report = watch_for(&rig, 15, true).await;
    assert_eq!(report.connections, 1, "{report:?}");
    assert_eq!(report.full_messages, 1);
    assert!(report.change_messages >= 78, "{report:?}");
    assert_eq!(report.bad_messages + report.unknown_ops, 0, "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    assert!(report.written.len() >= 14, "{report:?}");
    assert_consecutive(&report);
    assert_snapshots_are_true(&rig, &report.written).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_snapshots_on_s3() {
    let rig = rig(Faults::default(), Warehouse::s3().await).await;
    let report = watch_for(&rig, 5, true).await;
    assert!(report.written.len() >= 4, "{report:?}");
    assert_snapshots_are_true(&rig, &report.written).await;
}

/// Each connection is cut after 20 messages (the full one and 19 ticks: 190 simulated
/// seconds). Snapshots up to the last tick before the cut are written; those between the
/// cut and the next full message are skipped, never written from the stale picture; after
/// the reconnect the snapshots again equal the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_reconnects_resynchronises_and_skips_stale_snapshots() {
    let faults = Faults {
        stream_drop_after: Some(20),
        ..Faults::default()
    };
    let rig = rig(faults, Warehouse::local().await).await;
    let report = watch_for(&rig, 25, false).await;
    assert!(report.connections >= 2, "{report:?}");
    assert_eq!(report.full_messages, report.connections, "{report:?}");
    // First connection: ticks 0 .. 190 s, so minutes 0 to 3 are confirmed and written;
    // minute 4 came after the cut, at least 5 simulated minutes before the reconnect.
    let minute = |m: i64| start() + Duration::minutes(m);
    assert_eq!(
        report.written[..4],
        [minute(0), minute(1), minute(2), minute(3)],
        "{report:?}"
    );
    assert_eq!(report.skipped.first(), Some(&minute(4)), "{report:?}");
    assert!(report.skipped.len() >= 4, "{report:?}");
    assert!(
        report.written.iter().any(|w| *w > minute(8)),
        "snapshots after the reconnect: {report:?}"
    );
    assert_consecutive(&report);
    assert_snapshots_are_true(&rig, &report.written).await;
}

/// Connections cut at random (a tenth of the messages): whatever the pattern, every
/// boundary is written or skipped once, and every snapshot written is true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_drops_never_leave_a_false_snapshot() {
    let faults = Faults {
        stream_drop_fraction: 0.1,
        ..Faults::default()
    };
    let rig = rig(faults, Warehouse::local().await).await;
    let report = watch_for(&rig, 20, false).await;
    assert!(report.connections >= 2, "{report:?}");
    assert!(!report.skipped.is_empty(), "{report:?}");
    assert_consecutive(&report);
    assert_snapshots_are_true(&rig, &report.written).await;
}

/// Bad messages (not JSON, unknown MessageIDs, unknown ops, paths and agents, a list
/// that is no list) are counted and ignored: no panic, no reconnect, true snapshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_event_data_is_counted_and_does_not_disturb_the_picture() {
    let faults = Faults {
        stream_bad_every: Some(2),
        ..Faults::default()
    };
    let rig = rig(faults, Warehouse::local().await).await;
    let report = watch_for(&rig, 10, true).await;
    assert_eq!(report.connections, 1, "{report:?}");
    assert!(report.bad_messages >= 10, "{report:?}");
    assert!(report.unknown_ops >= 5, "{report:?}");
    assert!(report.skipped.is_empty(), "{report:?}");
    assert!(report.written.len() >= 9, "{report:?}");
    assert_snapshots_are_true(&rig, &report.written).await;
}

/// The simulator refuses the stream without `Idempotency-Key` or without a token, and
/// serves it as server-sent events with both, the first event a full message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_refuses_a_stream_without_idempotency_key_or_token() {
    let config = SimConfig {
        now: Some(start()),
        static_token: Some("tok".into()),
        ..SimConfig::default()
    };
    let sim = sobot_sync::sim::start(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator starts");
    let url = format!("{}{WATCH_ENDPOINT}?product=scc", sim.base_url());
    let http = reqwest::Client::new();

    let r = http
        .get(&url)
        .header("Authorization", "tok")
        .send()
        .await
        .expect("answer");
    let body: serde_json::Value = r.json().await.expect("an envelope");
    assert_eq!(body["code"], 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Idempotency-Key")),
        "{body}"
    );

    let r = http
        .get(&url)
        .header("Idempotency-Key", "a9b1c0e2-0000-4000-8000-000000000001")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);

    let mut r = http
        .get(&url)
        .header("Authorization", "tok")
        .header("Idempotency-Key", "a9b1c0e2-0000-4000-8000-000000000002")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream")),
        "{:?}",
        r.headers()
    );
    let mut parser = sobot_sync::engine::watch_metrics::sse::SseParser::new(1 << 24);
    let first = loop {
        let chunk = r.chunk().await.expect("stream").expect("not ended");
        if let Some(sobot_sync::engine::watch_metrics::sse::Parsed::Event(e)) =
            parser.feed(&chunk).into_iter().next()
        {
            break e;
        }
    };
    let msg: serde_json::Value = serde_json::from_str(&first.data).expect("JSON event");
    assert_eq!(msg["MessageID"], "EventAgentsMetricsWatch");
    assert_eq!(msg["creationTime"], start().timestamp_millis());
    let list = msg["agentsMetrics"]["list"].as_array().expect("list");
    assert_eq!(list.len(), 12);
    assert!(
        list.iter()
            .all(|a| a["agentUUID"].as_str().is_some_and(|u| u.starts_with(' '))),
        "ids padded as in the API document"
    );
}

/// The real binary: `watch-metrics` writes snapshots and exits 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_metrics_command_writes_snapshots_and_exits_0_on_sigterm() {
    let config = SimConfig {
        now: Some(start()),
        metrics_tick_ms: TICK_MS,
        ..SimConfig::default()
    };
    let mut env = CliEnv::start_with(config, "2024-03-01").await;
    env.set("SOBOT_SYNC_METRICS_SNAPSHOT_SECS", "60");
    env.sim.run_clock(start(), SPEED);
    let child = env.spawn(&["watch-metrics"]);
    let folder = env.warehouse().join("agent_metrics/dt=2024-03-04");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let files = loop {
        let n = std::fs::read_dir(&folder)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
                    .count()
            })
            .unwrap_or(0);
        if n >= 3 {
            break n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshots within a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(files >= 3);
    let pid = child.id().expect("running");
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -TERM {pid}");
    let out = finish(child).await;
    out.expect_code(0);
    assert!(
        out.stdout.contains("snapshots written"),
        "summary line:\n{}",
        out.all()
    );
}

/// A quiet stream (here: the simulated clock stands still, so no message follows the full
/// one) still gets its snapshot: once the server's clock, estimated as the last
/// `creationTime` plus the real time since, passes the boundary by `QUIET_GRACE`, the
/// silence is taken as "nothing changed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stream_still_gets_its_snapshot_after_the_grace() {
    let rig = rig(Faults::default(), Warehouse::local().await).await;
    let engine = rig.engine(start());
    let stop = CancellationToken::new();
    let began = tokio::time::Instant::now();
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move { watch(&engine, stop).await })
    };
    let reader = rig.engine(start());
    let deadline =
        began + sobot_sync::engine::watch_metrics::QUIET_GRACE + std::time::Duration::from_secs(30);
    loop {
        let files = sobot_sync::io::sink::list_files(&reader.warehouse, "agent_metrics")
            .await
            .expect("listing");
        if !files.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshot from a quiet stream"
        );
        assert!(!task.is_finished(), "watch ended early: {:?}", task.await);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        began.elapsed() >= sobot_sync::engine::watch_metrics::QUIET_GRACE,
        "written before the grace was over"
    );
    stop.cancel();
    let report = tokio::time::timeout(std::time::Duration::from_secs(30), task)
        .await
        .expect("watch stops after cancel")
        .expect("watch task")
        .expect("watch succeeds");
    assert_eq!(report.change_messages, 0, "{report:?}");
    assert_eq!(report.written, [start()], "{report:?}");
    assert_snapshots_are_true(&rig, &report.written).await;
}

/// A token the API refuses stops the command with exit 1, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_watch_metrics_with_exit_1() {
    let mut env = CliEnv::start(start(), "2024-03-01").await;
    env.unset("SOBOT_APP_ID")
        .unset("SOBOT_APP_SECRET")
        .set("SOBOT_TOKEN", "not-a-token");
    let out = env.run(&["watch-metrics"]).await;
    out.expect_code(1);
    assert!(out.stderr.contains("SOBOT_TOKEN"), "{}", out.all());
    assert!(
        !out.all().contains("not-a-token"),
        "the token is never shown"
    );
}

/// A stop while the connection is still being made (the server holds its answer back
/// for a minute) ends `watch` at once, not after the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_connecting_ends_watch_at_once() {
    let faults = Faults {
        slow_every: Some(1),
        slow_ms: 60_000,
        ..Faults::default()
    };
    let rig = rig(faults, Warehouse::local().await).await;
    let engine = rig.engine(start());
    let stop = CancellationToken::new();
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move { watch(&engine, stop).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "watch ended early: {:?}", task.await);
    stop.cancel();
    let report = tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("watch stops within 5 s of the stop")
        .expect("watch task")
        .expect("watch succeeds");
    assert_eq!(report.connections, 0, "{report:?}");
    assert!(report.written.is_empty(), "{report:?}");
}

/// The `filters` of the agent_metrics pipeline reach the stream: with only Ready agents
/// (`agentWorkStatuses = "1"`) the set of agents changes as they take calls, and the
/// simulator sends a new full message each time; the client replaces its picture
/// (writing the snapshots the old one confirmed first), and every snapshot holds
/// exactly the Ready agents of the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_reach_the_stream_and_full_messages_mid_stream_replace_the_picture() {
    let dir = tempfile::tempdir().expect("temporary pipelines folder");
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");
    for entry in std::fs::read_dir(repo).expect("pipelines folder") {
        let path = entry.expect("entry").path();
        let mut text = std::fs::read_to_string(&path).expect("pipeline file");
        if path.file_name().is_some_and(|n| n == "agent_metrics.toml") {
            text.push_str("\n[filters]\nagentWorkStatuses = \"1\"\n");
        }
        std::fs::write(dir.path().join(path.file_name().expect("name")), text)
            .expect("write pipeline");
    }
    let mut rig = rig(Faults::default(), Warehouse::local().await).await;
    rig.set("SOBOT_SYNC_PIPELINES", &dir.path().display().to_string());
    let report = watch_for(&rig, 15, false).await;
    assert_eq!(report.connections, 1, "{report:?}");
    assert!(
        report.full_messages > 1,
        "the Ready set never changed: {report:?}"
    );
    assert!(report.skipped.is_empty(), "{report:?}");
    assert!(report.written.len() >= 5, "{report:?}");
    assert_consecutive(&report);
    assert_snapshots_are_true_where(&rig, &report.written, &|a| a["agentWorkStatus"] == 1).await;
}
