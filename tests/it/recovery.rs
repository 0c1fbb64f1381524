//! issue 13, crash recovery: a run killed with SIGKILL leaves its lock behind, and the
//! next run on the same host takes it over at once instead of waiting for the lease;
//! `status` shows the killed run as interrupted; `unlock` releases a lock by hand.
//!
//! Every test runs the real binary against an in-process simulator slowed down so that
//! the kill lands mid-run, and keeps the default lock lease (120 s): a rerun that had
//! to wait for it would hit the command timeout.

use crate::support::cli_proc::{CliEnv, Outcome, assert_no_panic};
use crate::support::truth::{self, ALL};
use chrono::{DateTime, Utc};
use chrono_tz::Asia::Singapore;
use serde_json::Value;
use sobot_sync::io::state::holder::Liveness;
use sobot_sync::io::state::model::{Outcome as RunOutcome, PipelineState};
use sobot_sync::io::state::store::StateStore;
use sobot_sync::io::store::{Location, S3Options};
use sobot_sync::sim::Faults;
use std::time::{Duration, Instant};

const NOW: &str = "2024-01-03T00:00:00+08:00";
const START: &str = "2024-01-02";
/// Where every default pipeline's watermark stands after a complete run at NOW.
const WATERMARK: &str = "2024-01-02T23:00:00+08:00";

fn t(s: &str) -> DateTime<Utc> {
    sobot_sync::core::timeutil::parse_time(s, Singapore).expect("test time")
}

fn state_store(env: &CliEnv) -> StateStore {
    let url = format!("file://{}/_state", env.warehouse().display());
    StateStore::new(Location::parse(&url, &S3Options::default()).expect("state location"))
}

fn slow(env: &CliEnv) {
    env.sim.set_faults(Faults {
        slow_every: Some(1),
        slow_ms: 60,
        ..Faults::default()
    });
}

/// Waits until `pipeline`'s state records a run in progress (so its lock is held and
/// windows are being committed), failing the test after 30 s.
async fn wait_running(state: &StateStore, pipeline: &str) -> PipelineState {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(v)) = state.load::<PipelineState>(pipeline).await
            && v.value
                .last_run
                .as_ref()
                .is_some_and(|r| r.outcome == RunOutcome::Running)
        {
            return v.value;
        }
        assert!(
            Instant::now() < deadline,
            "{pipeline} never recorded a run in progress"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// SIGKILLs `child` and asserts that it died by the signal, not by finishing first.
async fn kill_9(mut child: tokio::process::Child) {
    child.kill().await.expect("SIGKILL the run");
    let status = child.wait().await.expect("reap the run");
    assert_eq!(
        status.code(),
        None,
        "the run finished before it was killed; the test proves nothing ({status})"
    );
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["pipeline"] == name)
        .unwrap_or_else(|| panic!("status has no pipeline {name}: {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_an_immediate_rerun_succeeds_exactly() {
    let env = CliEnv::start(t(NOW), START).await;
    let state = state_store(&env);
    slow(&env);
    let child = env.spawn(&["run", "--now", &env.now_arg()]);
    let pid = child.id().expect("the run has a pid");
    wait_running(&state, "talks").await;
    kill_9(child).await;

    // The lock is still within its lease, and its holder is known to be dead.
    let lock = state
        .lock_view("talks", None)
        .await
        .expect("lock readable")
        .expect("the killed run held the talks lock");
    assert!(!lock.released && lock.expires_at > Utc::now(), "{lock:?}");
    assert_eq!(lock.holder.as_ref().map(|h| h.pid), Some(pid), "{lock:?}");
    assert_eq!(lock.liveness, Liveness::Dead, "{lock:?}");

    // status: the run left "running" shows as interrupted, in JSON and in text.
    let rows = env.status().await;
    let talks = row(&rows, "talks");
    assert_eq!(talks["last_run"]["outcome"], "interrupted", "{talks}");
    let why = talks["interrupted"].as_str().unwrap_or_default();
    assert!(
        why.contains("no longer exists") && why.contains(&format!("pid {pid}")),
        "{talks}"
    );
    for r in &rows {
        assert_ne!(r["last_run"]["outcome"], "running", "{r}");
    }
    let text = env.run(&["status", "--now", &env.now_arg()]).await;
    text.expect_code(0);
    assert!(
        text.stdout.contains("last run: interrupted") && text.stdout.contains("interrupted: "),
        "{}",
        text.all()
    );

    // An immediate rerun takes the dead run's locks over and finishes exactly.
    env.sim.set_faults(Faults::default());
    let began = Instant::now();
    let rerun: Outcome = env.sync().await;
    rerun.expect_code(0);
    assert!(
        !rerun.all().contains("busy"),
        "the rerun met a busy lock\n{}",
        rerun.all()
    );
    assert!(
        began.elapsed() < Duration::from_secs(60),
        "the rerun took {:?}",
        began.elapsed()
    );
    let rows = env.status().await;
    for p in ["talks", "parties", "agent_histories"] {
        let r = row(&rows, p);
        let watermark = r["watermark"]
            .as_str()
            .and_then(|w| DateTime::parse_from_rfc3339(w).ok())
            .map(|w| w.with_timezone(&Utc));
        assert_eq!(watermark, Some(t(WATERMARK)), "{r}");
        assert_eq!(r["last_run"]["outcome"], "success", "{r}");
        assert!(r.get("interrupted").is_none(), "{r}");
    }
    let ds = env.sim.dataset();
    for spec in ALL {
        let table = truth::read_rows(&env.warehouse(), &spec, Singapore);
        assert!(
            table.duplicate_keys().is_empty(),
            "{}: duplicate keys",
            spec.table
        );
        let want = truth::visible_rows(&ds, &spec, t(START), t(WATERMARK), env.now);
        assert!(!want.is_empty(), "{}: no truth to compare", spec.table);
        truth::assert_rows_exact(&table, &want, spec.table);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_with_and_without_force() {
    let env = CliEnv::start(t(NOW), START).await;
    let state = state_store(&env);
    let now = env.now_arg();
    let run_talks = ["run", "--now", now.as_str(), "talks"];

    // Never locked: nothing to do (exit 0); an unknown pipeline is bad usage (exit 2).
    let o = env.run(&["unlock", "talks"]).await;
    o.expect_code(0);
    assert!(o.stdout.contains("never taken"), "{}", o.all());
    let o = env.run(&["unlock", "tlaks"]).await;
    o.expect_code(2);
    assert!(
        o.stderr.contains("unknown pipeline \"tlaks\""),
        "{}",
        o.all()
    );

    // A live holder with a fresh lease: refused without --force, released with it.
    slow(&env);
    let holder = env.spawn(&run_talks);
    let pid = holder.id().expect("the run has a pid");
    wait_running(&state, "talks").await;
    let refused = env.run(&["unlock", "talks"]).await;
    refused.expect_code(1);
    for needle in [
        format!("pid {pid}"),
        "is running".to_string(),
        "--force".to_string(),
    ] {
        assert!(
            refused.stderr.contains(&needle),
            "no {needle:?}\n{}",
            refused.all()
        );
    }
    let view = state.lock_view("talks", None).await.unwrap().unwrap();
    assert!(
        !view.released,
        "a refused unlock released the lock: {view:?}"
    );

    let forced = env.run(&["unlock", "talks", "--force"]).await;
    forced.expect_code(0);
    assert!(
        forced.stdout.contains("released") && forced.stdout.contains(&format!("pid {pid}")),
        "{}",
        forced.all()
    );
    assert!(forced.stdout.contains("forced"), "{}", forced.all());
    let view = state.lock_view("talks", None).await.unwrap().unwrap();
    assert!(view.released, "{view:?}");
    let again = env.run(&["unlock", "talks"]).await;
    again.expect_code(0);
    assert!(again.stdout.contains("not held"), "{}", again.all());
    let mut holder = holder;
    holder.kill().await.expect("stop the first holder");
    holder.wait().await.expect("reap the first holder");

    // A dead holder: released without --force, saying why.
    let second = env.spawn(&run_talks);
    let pid = second.id().expect("the run has a pid");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = state.lock_view("talks", None).await.unwrap().unwrap();
        if !v.released && v.holder.as_ref().is_some_and(|h| h.pid == pid) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second run never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    kill_9(second).await;
    let released = env.run(&["unlock", "talks"]).await;
    released.expect_code(0);
    assert!(
        released.stdout.contains("no longer exists")
            && released.stdout.contains(&format!("pid {pid}")),
        "{}",
        released.all()
    );
    assert_no_panic(&released);
    assert!(
        state
            .lock_view("talks", None)
            .await
            .unwrap()
            .unwrap()
            .released
    );

    // Range locks are named with --range; one never taken is reported as such.
    let o = env.run(&["unlock", "talks", "--range", "compact"]).await;
    o.expect_code(0);
    assert!(o.stdout.contains("range lock compact"), "{}", o.all());
    let o = env.run(&["unlock", "talks", "--range", "../x"]).await;
    o.expect_code(2);
}
