//! `sobot-sync daemon` (issue 4 part 1), the real binary as a child process against an
//! in-process simulator: runs on schedule, never two runs of a pipeline at once (in one
//! process and across two), SIGTERM mid-window, and the restart completing exactly.
//!
//! Schedules are every second, and every run uses `--now`, so the data due is fixed:
//! the first run catches up from `SOBOT_SYNC_START`, later ones re-read the lookback.
//! The daemon's log lines (`run started`, `run finished`, `tick skipped`) carry their
//! time, which is how overlap across processes is judged.

use crate::support::cli_proc::{CliEnv, REPO, assert_no_panic, stray_files};
use crate::support::truth::{self, ALL};
use chrono::{DateTime, Utc};
use chrono_tz::Asia::Singapore;
use sobot_sync::io::state::model::PipelineState;
use sobot_sync::io::state::store::StateStore;
use sobot_sync::io::store::{Location, S3Options};
use sobot_sync::sim::Faults;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

const NOW: &str = "2024-01-03T00:00:00+08:00";
/// Where talks, parties and agent histories stand after a run at NOW (hourly windows,
/// 30 min and 1 h lag).
const WATERMARK: &str = "2024-01-02T23:00:00+08:00";
const PIPELINES: [&str; 3] = ["talks", "parties", "agent_histories"];

fn t(s: &str) -> DateTime<Utc> {
    sobot_sync::core::timeutil::parse_time(s, Singapore).expect("test time")
}

/// The three windowed pipelines as shipped, but due every second.
fn every_second_pipelines(dir: &Path) {
    std::fs::create_dir_all(dir).expect("pipelines folder");
    for p in PIPELINES {
        let text = std::fs::read_to_string(Path::new(REPO).join(format!("pipelines/{p}.toml")))
            .expect("shipped definition");
        let fast: String = text
            .lines()
            .map(|l| {
                if l.starts_with("schedule") {
                    "schedule = \"* * * * * *\""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(fast, text, "{p} has a schedule line");
        std::fs::write(dir.join(format!("{p}.toml")), fast).expect("write definition");
    }
}

/// An environment whose pipelines folder holds the every-second copies.
async fn env_with_fast_schedules(start: &str) -> CliEnv {
    let mut env = CliEnv::start(t(NOW), start).await;
    let dir = env.path().join("pipelines");
    every_second_pipelines(&dir);
    let dir = dir.display().to_string();
    env.set("SOBOT_SYNC_PIPELINES", &dir);
    env
}

fn state_store(env: &CliEnv) -> StateStore {
    let url = format!("file://{}/_state", env.warehouse().display());
    StateStore::new(Location::parse(&url, &S3Options::default()).expect("state location"))
}

async fn watermarks(env: &CliEnv) -> BTreeMap<&'static str, Option<DateTime<Utc>>> {
    let state = state_store(env);
    let mut out = BTreeMap::new();
    for p in PIPELINES {
        let st = state
            .load::<PipelineState>(p)
            .await
            .unwrap_or_else(|e| panic!("{p}: state does not load: {e}"));
        out.insert(p, st.map(|v| v.value.watermark));
    }
    out
}

/// One daemon process with its log collected line by line as it is written.
struct Daemon {
    child: tokio::process::Child,
    log: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Daemon {
    fn start(env: &CliEnv, label: &'static str) -> Daemon {
        let now = env.now_arg();
        let mut cmd = env.command(&["daemon", "--now", &now]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn sobot-sync daemon");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("[{label}] {line}");
                    log.lock().expect("log lock").push(line);
                }
            })
        };
        Daemon { child, log, reader }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    fn sigterm(&self) {
        let pid = self.child.id().expect("the daemon is running");
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM {pid} failed");
    }

    /// Waits for the exit after a signal; its code, its whole log and how long it took.
    async fn exit(mut self, within: Duration) -> (Option<i32>, Vec<String>, Duration) {
        let began = Instant::now();
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the daemon did not exit within {within:?}"))
            .expect("wait for the daemon");
        let took = began.elapsed();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        let lines = self.lines();
        let all = lines.join("\n");
        assert_no_panic(&crate::support::cli_proc::Outcome {
            code: status.code(),
            stdout: String::new(),
            stderr: all,
        });
        (status.code(), lines, took)
    }
}

/// Faults off, a new daemon until every pipeline finished two runs (the catch-up and a
/// later one), then SIGTERM: it must exit 0.
async fn restart_until_two_runs_finish(env: &CliEnv, label: &'static str) {
    env.sim.set_faults(Faults::default());
    let d = Daemon::start(env, label);
    wait_for(
        "every pipeline caught up and a later run finished",
        Duration::from_secs(120),
        async || {
            let ev = events(&d.lines());
            PIPELINES.iter().all(|p| count(&ev, p, "finished") >= 2)
        },
    )
    .await;
    d.sigterm();
    let (code, lines, _) = d.exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "{label} daemon:\n{}", lines.join("\n"));
}

/// A daemon log event: when, what, and for which pipeline.
#[derive(Debug, Clone)]
struct Event {
    at: DateTime<Utc>,
    what: &'static str,
    pipeline: String,
    /// `windows - lookback_windows` of a finished run: windows that moved the watermark.
    new_windows: u64,
}

const KINDS: [(&str, &str); 5] = [
    ("run started", "started"),
    ("run finished", "finished"),
    ("run stopped", "stopped"),
    ("run failed", "failed"),
    ("tick skipped", "skipped"),
];

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=");
    line.split_whitespace()
        .find_map(|tok| tok.strip_prefix(key.as_str()))
        .map(|v| v.trim_matches('"'))
}

fn events(lines: &[String]) -> Vec<Event> {
    lines
        .iter()
        .filter_map(|line| {
            let (_, what) = KINDS.iter().find(|(needle, _)| line.contains(needle))?;
            let at = line.split_whitespace().next()?;
            let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
            let pipeline = field(line, "pipeline")?.to_string();
            let n = |k: &str| field(line, k).and_then(|v| v.parse::<u64>().ok());
            let new_windows = match (n("windows"), n("lookback_windows")) {
                (Some(w), Some(l)) => w - l,
                _ => 0,
            };
            Some(Event {
                at,
                what,
                pipeline,
                new_windows,
            })
        })
        .collect()
}

fn count(events: &[Event], pipeline: &str, what: &str) -> usize {
    events
        .iter()
        .filter(|e| e.pipeline == pipeline && e.what == what)
        .count()
}

/// The runs of `pipeline` in one process's log as `[started, ended]`; panics when a run
/// starts before the previous one ended.
fn runs(events: &[Event], pipeline: &str) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    let mut open: Option<DateTime<Utc>> = None;
    for e in events.iter().filter(|e| e.pipeline == pipeline) {
        match e.what {
            "started" => {
                assert!(
                    open.is_none(),
                    "{pipeline}: a run started at {} while the previous one was still going",
                    e.at
                );
                open = Some(e.at);
            }
            "finished" | "stopped" | "failed" => {
                let started = open
                    .take()
                    .unwrap_or_else(|| panic!("{pipeline}: a run ended at {} unstarted", e.at));
                out.push((started, e.at));
            }
            _ => {}
        }
    }
    assert!(open.is_none(), "{pipeline}: a run never ended");
    out
}

/// Polls until `done` holds for the log, or fails after `limit`.
async fn wait_for(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let began = Instant::now();
    while !done().await {
        assert!(began.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every table equals the simulator's truth in `[from, WATERMARK)`, keys unique.
fn assert_warehouse_exact(env: &CliEnv, from: DateTime<Utc>) {
    let ds = env.sim.dataset();
    for spec in ALL {
        let table = truth::read_rows(&env.warehouse(), &spec, Singapore);
        let want = truth::visible_rows(&ds, &spec, from, t(WATERMARK), env.now);
        truth::assert_rows_exact(&table, &want, spec.table);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_runs_on_schedule_skips_overlapping_ticks_and_exits_0_on_sigterm() {
    let env = env_with_fast_schedules("2024-01-02").await;
    // Slow answers: the catch-up run outlasts several one-second ticks.
    env.sim.set_faults(Faults {
        slow_every: Some(1),
        slow_ms: 25,
        ..Faults::default()
    });
    let d = Daemon::start(&env, "daemon");
    wait_for(
        "three finished runs of every pipeline",
        Duration::from_secs(120),
        async || {
            let ev = events(&d.lines());
            PIPELINES.iter().all(|p| count(&ev, p, "finished") >= 3)
        },
    )
    .await;
    d.sigterm();
    let (code, lines, _) = d.exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "a clean shutdown exits 0");
    let ev = events(&lines);
    let mut skipped = 0;
    for p in PIPELINES {
        let rs = runs(&ev, p);
        assert!(rs.len() >= 3, "{p}: runs {rs:?}");
        // On schedule: after the catch-up, a run starts at each tick the previous run
        // left free, so consecutive runs start at most a few seconds apart.
        for pair in rs.windows(2) {
            let gap = pair[1].0 - pair[0].1;
            assert!(
                gap < chrono::Duration::seconds(5),
                "{p}: {gap} between a run's end and the next start; ticks are every second"
            );
        }
        skipped += count(&ev, p, "skipped");
        assert_eq!(
            count(&ev, p, "failed"),
            0,
            "{p} failed:\n{}",
            lines.join("\n")
        );
        // Every window moved the watermark once, in whichever run.
        let new: u64 = ev
            .iter()
            .filter(|e| e.pipeline == p && e.what == "finished")
            .map(|e| e.new_windows)
            .sum();
        assert_eq!(new, 23, "{p}: windows that moved the watermark");
    }
    assert!(
        skipped > 0,
        "a run outlasting its tick must make the daemon skip ticks:\n{}",
        lines.join("\n")
    );
    for (p, w) in watermarks(&env).await {
        assert_eq!(w, Some(t(WATERMARK)), "{p}");
    }
    assert_warehouse_exact(&env, t("2024-01-02"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_window_leaves_state_consistent_and_the_restart_completes_exactly() {
    let start = "2024-01-01";
    let mut env = env_with_fast_schedules(start).await;
    env.set("SOBOT_SYNC_SHUTDOWN_GRACE_SECS", "10");
    env.sim.set_faults(Faults {
        slow_every: Some(1),
        slow_ms: 40,
        ..Faults::default()
    });
    let d = Daemon::start(&env, "first");
    // Signal once some windows are committed but the catch-up is far from done.
    wait_for(
        "a first committed window",
        Duration::from_secs(60),
        async || {
            watermarks(&env)
                .await
                .values()
                .any(|w| w.is_some_and(|w| w > t(start)))
        },
    )
    .await;
    d.sigterm();
    let (code, lines, took) = d.exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "exit after SIGTERM:\n{}", lines.join("\n"));
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}, more than the 10 s grace period"
    );
    let ev = events(&lines);
    let stopped: usize = PIPELINES.iter().map(|p| count(&ev, p, "stopped")).sum();
    assert!(
        stopped > 0,
        "SIGTERM came mid catch-up, so some run must report it stopped:\n{}",
        lines.join("\n")
    );
    assert!(
        !lines.iter().any(|l| l.contains("abandon")),
        "runs stop between windows well within the grace period"
    );

    // Consistent: whole files, unique keys, every row below each watermark exact, the
    // run recorded as ended, nothing staged left behind, and every lock released.
    let ds = env.sim.dataset();
    let state = state_store(&env);
    let marks = watermarks(&env).await;
    assert!(
        marks.values().any(|w| *w != Some(t(WATERMARK))),
        "the shutdown came after the catch-up: {marks:?}"
    );
    for spec in ALL {
        let table = truth::read_rows(&env.warehouse(), &spec, Singapore);
        assert!(
            table.duplicate_keys().is_empty(),
            "{}: duplicates",
            spec.table
        );
        let Some(st) = state
            .load::<PipelineState>(spec.table)
            .await
            .expect("state loads")
            .map(|v| v.value)
        else {
            continue;
        };
        let run = st.last_run.as_ref().expect("a run is recorded");
        assert_ne!(
            run.outcome,
            sobot_sync::io::state::model::Outcome::Running,
            "{}: the stopped run is not closed: {run:?}",
            spec.table
        );
        let committed = truth::visible_rows(&ds, &spec, t(start), st.watermark, env.now);
        let have = table.by_key();
        let wrong = committed
            .iter()
            .filter(|(k, v)| have.get(*k) != Some(*v))
            .count();
        assert_eq!(
            wrong, 0,
            "{}: committed rows below {} missing or wrong",
            spec.table, st.watermark
        );
        assert!(
            st.completed.covers(sobot_sync::io::state::model::Span {
                start: t(start),
                end: st.watermark
            }),
            "{}: the ledger does not cover up to the watermark: {:?}",
            spec.table,
            st.completed
        );
        let lock = state
            .acquire_lock(spec.table, "test-probe", Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{}: lock not released at shutdown: {e}", spec.table));
        lock.release().await.expect("release the probe lock");
    }
    let strays = stray_files(&env.warehouse());
    assert!(strays.is_empty(), "staging leftovers: {strays:?}");

    // The next start completes exactly.
    restart_until_two_runs_finish(&env, "second").await;
    for (p, w) in watermarks(&env).await {
        assert_eq!(w, Some(t(WATERMARK)), "{p}");
    }
    for p in PIPELINES {
        let st = state
            .load::<PipelineState>(p)
            .await
            .expect("state loads")
            .expect("state exists")
            .value;
        assert!(st.completed.gaps(t(WATERMARK)).is_empty(), "{p}: gaps");
    }
    assert_warehouse_exact(&env, t(start));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_warehouse_never_overlap_and_miss_nothing() {
    let env = env_with_fast_schedules("2024-01-02").await;
    env.sim.set_faults(Faults {
        slow_every: Some(1),
        slow_ms: 15,
        ..Faults::default()
    });
    let a = Daemon::start(&env, "a");
    let b = Daemon::start(&env, "b");
    wait_for(
        "three finished runs of every pipeline across both daemons",
        Duration::from_secs(120),
        async || {
            let mut lines = a.lines();
            lines.extend(b.lines());
            let ev = events(&lines);
            PIPELINES.iter().all(|p| count(&ev, p, "finished") >= 3)
        },
    )
    .await;
    a.sigterm();
    b.sigterm();
    let (ca, la, _) = a.exit(Duration::from_secs(30)).await;
    let (cb, lb, _) = b.exit(Duration::from_secs(30)).await;
    assert_eq!((ca, cb), (Some(0), Some(0)), "both exit 0 after SIGTERM");
    let (ea, eb) = (events(&la), events(&lb));
    let mut busy = 0;
    for p in PIPELINES {
        // Across the two processes, no run of a pipeline overlaps another.
        let mut all = runs(&ea, p);
        all.extend(runs(&eb, p));
        all.sort();
        for pair in all.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "{p}: runs {:?} and {:?} overlap",
                pair[0],
                pair[1]
            );
        }
        busy += [&la, &lb]
            .iter()
            .flat_map(|l| l.iter())
            .filter(|l| {
                l.contains("tick skipped") && l.contains("busy") && field(l, "pipeline") == Some(p)
            })
            .count();
        // Each window moved the watermark exactly once, by one daemon or the other.
        let new: u64 = ea
            .iter()
            .chain(eb.iter())
            .filter(|e| e.pipeline == p && e.what == "finished")
            .map(|e| e.new_windows)
            .sum();
        assert_eq!(new, 23, "{p}: windows that moved the watermark");
        let st = state_store(&env)
            .load::<PipelineState>(p)
            .await
            .expect("state loads")
            .expect("state exists")
            .value;
        assert_eq!(st.watermark, t(WATERMARK), "{p}");
        assert_eq!(
            st.completed.0,
            vec![sobot_sync::io::state::model::Span {
                start: t("2024-01-02"),
                end: t(WATERMARK)
            }],
            "{p}: the ledger is one span, no gap"
        );
    }
    assert!(
        busy > 0,
        "ticking every second, one daemon must have found the other's lock"
    );
    assert_warehouse_exact(&env, t("2024-01-02"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_schedule_exits_2_naming_pipeline_and_key() {
    let mut env = CliEnv::start(t(NOW), "2024-01-02").await;
    let dir = env.path().join("pipelines");
    every_second_pipelines(&dir);
    let path = dir.join("talks.toml");
    let text = std::fs::read_to_string(&path).expect("definition");
    std::fs::write(
        &path,
        text.replace("schedule = \"* * * * * *\"", "schedule = \"0 61 * * * *\""),
    )
    .expect("write definition");
    let dir = dir.display().to_string();
    env.set("SOBOT_SYNC_PIPELINES", &dir);
    let o = env.run(&["daemon"]).await;
    o.expect_code(2);
    for needle in ["talks", "schedule", "0 61 * * * *"] {
        assert!(o.stderr.contains(needle), "names {needle:?}\n{}", o.all());
    }
    std::fs::write(&path, text).expect("restore the definition");
    let o = env.run(&["daemon", "nosuch"]).await;
    o.expect_code(2);
    assert!(o.stderr.contains("nosuch"), "{}", o.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_outlasting_the_grace_period_are_abandoned_uncommitted_and_unlocked() {
    let start = "2024-01-02";
    let mut env = env_with_fast_schedules(start).await;
    env.set("SOBOT_SYNC_SHUTDOWN_GRACE_SECS", "2");
    // Every answer (the token's too) takes 4 s: no window can finish within the grace.
    env.sim.set_faults(Faults {
        slow_every: Some(1),
        slow_ms: 4000,
        ..Faults::default()
    });
    let d = Daemon::start(&env, "slow");
    wait_for(
        "every pipeline's run started",
        Duration::from_secs(30),
        async || {
            let ev = events(&d.lines());
            PIPELINES.iter().all(|p| count(&ev, p, "started") == 1)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.sigterm();
    let (code, lines, took) = d.exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "exit after SIGTERM:\n{}", lines.join("\n"));
    assert!(
        took < Duration::from_millis(3500),
        "took {took:?} to exit with a 2 s grace period"
    );
    let abandoned = lines.iter().filter(|l| l.contains("run abandoned")).count();
    assert_eq!(abandoned, 3, "each run is abandoned:\n{}", lines.join("\n"));
    // Nothing committed, nothing half written, and no lock left to wait for.
    let state = state_store(&env);
    for p in PIPELINES {
        let st = state
            .load::<PipelineState>(p)
            .await
            .expect("state loads")
            .map(|v| v.value);
        if let Some(st) = st {
            assert_eq!(st.watermark, t(start), "{p}: no window was committed");
            let run = st.last_run.as_ref().expect("the run is recorded");
            assert_eq!(
                run.outcome,
                sobot_sync::io::state::model::Outcome::Failed,
                "{p}: {run:?}"
            );
            assert!(
                run.error.as_ref().is_some_and(|e| e.contains("abandoned")),
                "{p}: {run:?}"
            );
        }
        let lock = state
            .acquire_lock(p, "test-probe", Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{p}: lock not released at shutdown: {e}"));
        lock.release().await.expect("release the probe lock");
    }
    let strays = stray_files(&env.warehouse());
    assert!(strays.is_empty(), "staging leftovers: {strays:?}");

    restart_until_two_runs_finish(&env, "again").await;
    assert_warehouse_exact(&env, t(start));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_grace_period_exits_2_naming_the_setting() {
    let mut env = env_with_fast_schedules("2024-01-02").await;
    env.set("SOBOT_SYNC_SHUTDOWN_GRACE_SECS", "soon");
    let o = env.run(&["daemon"]).await;
    o.expect_code(2);
    for needle in ["SOBOT_SYNC_SHUTDOWN_GRACE_SECS", "soon"] {
        assert!(o.stderr.contains(needle), "names {needle:?}\n{}", o.all());
    }
}

/// Several tenants: the daemon runs every pipeline of each tenant (each against its own
/// simulator, in its own zone), and one `/healthz` reports them all as `tenant/pipeline`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_with_two_tenants_runs_both_and_serves_their_health() {
    let mut env = env_with_fast_schedules("2024-01-02").await;
    let globex = sobot_sync::sim::start(
        sobot_sync::sim::SimConfig {
            seed: 7,
            app_id: "globex-app".into(),
            app_secret: "globex-secret".into(),
            company_id: "globex-company".into(),
            timezone: chrono_tz::America::New_York,
            now: Some(t(NOW)),
            ..sobot_sync::sim::SimConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .expect("globex simulator starts");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    env.set("SOBOT_TENANTS", "acme,globex")
        .set("SOBOT_TENANT_GLOBEX_BASE_URL", &globex.base_url())
        .set("SOBOT_TENANT_GLOBEX_APP_ID", "globex-app")
        .set("SOBOT_TENANT_GLOBEX_APP_SECRET", "globex-secret")
        .set("SOBOT_TENANT_GLOBEX_TIMEZONE", "America/New_York")
        .set("SOBOT_SYNC_HTTP_ADDR", &addr);
    let d = Daemon::start(&env, "tenants");
    let http = reqwest::Client::new();
    let mut last = serde_json::Value::Null;
    let every_pipeline_ran = |h: &serde_json::Value| {
        ["acme", "globex"].iter().all(|tenant| {
            PIPELINES.iter().all(|p| {
                h["pipelines"].as_array().is_some_and(|ps| {
                    ps.iter().any(|x| {
                        x["pipeline"] == format!("{tenant}/{p}") && !x["watermark"].is_null()
                    })
                })
            })
        })
    };
    let began = Instant::now();
    // Generous: two tenants' first catch-up in a debug build shares the machine with the
    // rest of the suite.
    while began.elapsed() < Duration::from_secs(300) {
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await
            && let Ok(h) = r.json::<serde_json::Value>().await
        {
            last = h;
            if every_pipeline_ran(&last) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        every_pipeline_ran(&last),
        "every pipeline of both tenants ran: {last:#}"
    );
    // Series are per tenant too. A window's metrics are recorded just after its state is
    // committed, so /healthz can show a watermark a moment before /metrics counts its rows:
    // read until every tenant's series is there (or the time is up, and the asserts say so).
    let has_series = |metrics: &str| {
        ["acme", "globex"].iter().all(|tenant| {
            metrics.contains(&format!(
                "sobot_sync_rows_written_total{{tenant=\"{tenant}\",pipeline=\"talks\""
            ))
        })
    };
    let mut metrics = String::new();
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(30) {
        metrics = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        if has_series(&metrics) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for tenant in ["acme", "globex"] {
        let series =
            format!("sobot_sync_rows_written_total{{tenant=\"{tenant}\",pipeline=\"talks\"");
        assert!(metrics.contains(&series), "{series} in\n{metrics}");
        // Each tenant's API traffic is its own series, not a sum over tenants.
        let label = format!("tenant=\"{tenant}\"");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("sobot_sync_api_requests_total{") && l.contains(&label)),
            "API requests of {tenant} in\n{metrics}"
        );
    }
    d.sigterm();
    let (code, lines, _) = d.exit(Duration::from_secs(60)).await;
    assert_eq!(code, Some(0), "{}", lines.join("\n"));
    let has = |prefix: &str| {
        std::fs::read_dir(env.warehouse().join(prefix))
            .map(|d| d.count() > 0)
            .unwrap_or(false)
    };
    for tenant in ["acme", "globex"] {
        for table in PIPELINES {
            assert!(
                has(&format!("{table}/tenant={tenant}")),
                "{table} of {tenant} written"
            );
        }
    }
    assert!(!has("talks/dt=2024-01-02"), "no untenanted partitions");
}
