//! The sobot-sync binary: exit codes, crash safety, concurrent runs. OWNER: cli-test helper.
//!
//! Every test runs the real binary (clean environment, temporary working directory)
//! against a simulator started in-process, then judges it by what a user sees: the exit
//! code, the messages, `status --json`, and the Parquet files compared with the
//! simulator's ground truth.

use crate::support::cli_proc::{CliEnv, Outcome, REPO, assert_no_panic, finish, stray_files};
use crate::support::truth::{self, ALL, Spec, TALKS};
use chrono::{DateTime, Utc};
use chrono_tz::Asia::Singapore;
use serde_json::Value;
use sobot_sync::sim::{Faults, SimConfig};
use sobot_sync::state::model::PipelineState;
use sobot_sync::state::store::StateStore;
use sobot_sync::store::{Location, S3Options};
use std::path::Path;

/// The simulated present of most tests, and the first local day they load.
const NOW: &str = "2024-01-03T00:00:00+08:00";
const START: &str = "2024-01-02";
/// Where every default pipeline's watermark stands after a run at NOW: talks and parties
/// wait 30 minutes and agent histories an hour, on hourly windows.
const WATERMARK: &str = "2024-01-02T23:00:00+08:00";

fn t(s: &str) -> DateTime<Utc> {
    sobot_sync::timeutil::parse_time(s, Singapore).expect("test time")
}

fn pipeline<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["pipeline"] == name)
        .unwrap_or_else(|| panic!("status has no pipeline {name}: {rows:?}"))
}

fn watermark(rows: &[Value], name: &str) -> DateTime<Utc> {
    let w = pipeline(rows, name)["watermark"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: watermark is not a string"));
    DateTime::parse_from_rfc3339(w)
        .unwrap_or_else(|e| panic!("{name}: watermark {w:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// Every table of the warehouse equals the simulator's records in `[from, to)`.
fn assert_warehouse_exact(env: &CliEnv, from: DateTime<Utc>, to: DateTime<Utc>) {
    let ds = env.sim.dataset();
    for spec in ALL {
        let table = truth::read_rows(&env.warehouse(), &spec, Singapore);
        let want = truth::visible_rows(&ds, &spec, from, to, env.now);
        truth::assert_rows_exact(&table, &want, spec.table);
    }
}

/// The state store as the binary opens it (`<warehouse>/_state`).
fn state_store(env: &CliEnv) -> StateStore {
    let url = format!("file://{}/_state", env.warehouse().display());
    StateStore::new(Location::parse(&url, &S3Options::default()).expect("state location"))
}

/// Files (not folders) anywhere under `dir`.
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.expect("directory entry").path())
        .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
        .sum()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let path = entry.expect("entry").path();
        if let Some(name) = path.file_name() {
            if path.is_dir() {
                copy_dir(&path, &to.join(name));
            } else {
                std::fs::copy(&path, to.join(name)).expect("copy file");
            }
        }
    }
}

/// Repository pipeline definitions copied to `dir`, with `file`'s text changed by `edit`.
fn broken_pipelines(dir: &Path, file: &str, edit: impl Fn(&str) -> String) {
    copy_dir(&Path::new(REPO).join("pipelines"), dir);
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).expect("read definition");
    let changed = edit(&text);
    assert_ne!(changed, text, "the edit of {file} changed nothing");
    std::fs::write(&path, changed).expect("write definition");
}

#[track_caller]
fn assert_config_error(o: &Outcome, case: &str, needles: &[&str]) {
    assert_eq!(o.code, Some(2), "{case}: expected exit 2\n{}", o.all());
    assert_no_panic(o);
    for n in needles {
        assert!(
            o.stderr.contains(n),
            "{case}: stderr does not name {n:?}\n{}",
            o.all()
        );
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_then_status_is_exact() {
    let env = CliEnv::start(t(NOW), START).await;
    let o = env.sync().await;
    o.expect_code(0);
    for p in ["talks", "parties", "agent_histories"] {
        assert!(
            o.stdout.contains(&format!("{p}: ")),
            "no report for {p}\n{}",
            o.all()
        );
    }

    let all = env.status().await;
    // The windowed pipelines; the snapshot ones are tested in snapshots_e2e.
    let rows: Vec<Value> = all
        .iter()
        .filter(|r| {
            ["talks", "parties", "agent_histories"].contains(&r["pipeline"].as_str().unwrap_or(""))
        })
        .cloned()
        .collect();
    assert_eq!(rows.len(), 3, "one object per pipeline: {all:?}");
    for r in &rows {
        let name = r["pipeline"].as_str().expect("pipeline is a string");
        assert_eq!(watermark(&rows, name), t(WATERMARK), "{name}");
        assert_eq!(
            r["lag_secs"].as_i64(),
            Some((t(NOW) - t(WATERMARK)).num_seconds()),
            "{name}: {r}"
        );
        assert_eq!(r["gaps"], Value::Array(vec![]), "{name}: {r}");
        assert_eq!(r["last_run"]["outcome"], "success", "{name}: {r}");
        assert!(
            r["last_run"]["rows"].as_u64().unwrap_or(0) > 0,
            "{name}: {r}"
        );
    }
    assert_warehouse_exact(&env, t(START), t(WATERMARK));

    // A second run at the same instant re-reads only the lookback and changes nothing.
    env.sync().await.expect_code(0);
    assert_warehouse_exact(&env, t(START), t(WATERMARK));
    let again = env.status().await;
    for p in ["talks", "parties", "agent_histories"] {
        assert_eq!(watermark(&again, p), t(WATERMARK), "{p}");
    }
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
async fn broken_window_fails_then_recovers() {
    let mut env = CliEnv::start(t(NOW), START).await;
    // Fail fast: the broken window answers 500 forever.
    env.set("SOBOT_MAX_RETRIES", "1");
    let (bf, bt) = (
        t("2024-01-02T10:00:00+08:00"),
        t("2024-01-02T11:00:00+08:00"),
    );
    env.sim.set_faults(Faults {
        broken_from: Some(bf),
        broken_to: Some(bt),
        ..Faults::default()
    });
    let o = env.sync().await;
    o.expect_code(1);
    // Agent histories are searched by local minute with an inclusive end, so the window
    // before the broken one already asks for its first minute and fails too.
    let stops = [
        ("talks", bf, "[2024-01-02T02:00:00Z, 2024-01-02T03:00:00Z)"),
        (
            "parties",
            bf,
            "[2024-01-02T02:00:00Z, 2024-01-02T03:00:00Z)",
        ),
        (
            "agent_histories",
            bf - chrono::Duration::hours(1),
            "[2024-01-02T01:00:00Z, 2024-01-02T02:00:00Z)",
        ),
    ];
    for (p, _, window) in stops {
        assert!(
            o.stderr.contains(&format!("pipeline {p} window {window}")),
            "stderr does not name {p} and the window\n{}",
            o.all()
        );
    }

    let rows = env.status().await;
    for (p, stop, window) in stops {
        assert_eq!(watermark(&rows, p), stop, "{p} stops at the failed window");
        let run = &pipeline(&rows, p)["last_run"];
        assert_eq!(run["outcome"], "failed", "{p}: {run}");
        assert!(
            run["error"].as_str().is_some_and(|e| e.contains(window)),
            "{p}: {run}"
        );
    }
    // Everything before the broken window is already there and exact.
    let ds = env.sim.dataset();
    let talks = truth::read_rows(&env.warehouse(), &TALKS, Singapore);
    let before = truth::visible_rows(&ds, &TALKS, t(START), bf, env.now);
    let have = talks.by_key();
    assert!(
        before.iter().all(|(k, v)| have.get(k) == Some(v)),
        "talks before the broken window are incomplete"
    );

    env.sim.set_faults(Faults::default());
    env.sync().await.expect_code(0);
    let rows = env.status().await;
    for p in ["talks", "parties", "agent_histories"] {
        assert_eq!(watermark(&rows, p), t(WATERMARK), "{p}");
        assert_eq!(pipeline(&rows, p)["last_run"]["outcome"], "success");
        assert_eq!(pipeline(&rows, p)["gaps"], Value::Array(vec![]));
    }
    assert_warehouse_exact(&env, t(START), t(WATERMARK));
}

/// After a SIGKILL: every visible Parquet file is whole, keys are unique, the state
/// loads, and every window below a committed watermark is on disk and exact.
async fn assert_consistent_after_crash(env: &CliEnv, marks: &mut [(Spec, DateTime<Utc>); 3]) {
    let ds = env.sim.dataset();
    let state = state_store(env);
    for (spec, last) in marks.iter_mut() {
        let table = truth::read_rows(&env.warehouse(), spec, Singapore);
        assert!(
            table.duplicate_keys().is_empty(),
            "{}: duplicate keys after a crash",
            spec.table
        );
        let loaded = state
            .load::<PipelineState>(spec.table)
            .await
            .unwrap_or_else(|e| panic!("{}: state does not load after a crash: {e}", spec.table));
        let Some(st) = loaded.map(|v| v.value) else {
            continue;
        };
        assert!(
            st.watermark >= *last,
            "{}: watermark went back from {} to {}",
            spec.table,
            *last,
            st.watermark
        );
        *last = st.watermark;
        eprintln!(
            "  {}: watermark {}, {} rows on disk",
            spec.table,
            st.watermark,
            table.rows.len()
        );
        let committed = truth::visible_rows(&ds, spec, t(START), st.watermark, env.now);
        let have = table.by_key();
        let missing: Vec<&String> = committed
            .iter()
            .filter(|(k, v)| have.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        assert!(
            missing.is_empty(),
            "{}: {} committed rows (below watermark {}) missing or wrong after a crash, e.g. {:?}",
            spec.table,
            missing.len(),
            st.watermark,
            &missing[..missing.len().min(3)]
        );
    }
    env.status().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_moment_leaves_whole_files_and_loadable_state() {
    let start = "2024-01-01";
    let mut env = CliEnv::start(t(NOW), start).await;
    // A crashed run's lock outlives it by its TTL; keep that short so the next run may go.
    let ttl = 1;
    env.set("SOBOT_SYNC_LOCK_TTL_SECS", &ttl.to_string());
    env.sim.set_faults(Faults {
        slow_every: Some(1),
        slow_ms: 20,
        ..Faults::default()
    });
    let mut kills_ms: Vec<u64> = vec![150, 400, 900, 1800];
    kills_ms.extend((0..3).map(|_| rand::random_range(100..2500)));
    eprintln!("killing after {kills_ms:?} ms");
    let mut marks = [
        (truth::TALKS, t(start)),
        (truth::PARTIES, t(start)),
        (truth::AGENT_HISTORIES, t(start)),
    ];
    for ms in kills_ms {
        let mut child = env.spawn(&["run", "--now", &env.now_arg()]);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        child.kill().await.expect("SIGKILL the run");
        let status = child.wait().await.expect("reap the run");
        // A run that finished before the kill has nothing left to interrupt.
        eprintln!("after {ms} ms: {status}");
        assert_consistent_after_crash(&env, &mut marks).await;
        // Let the dead run's lock expire (it is renewed every TTL/3 while alive).
        tokio::time::sleep(std::time::Duration::from_millis(ttl * 1000 + 200)).await;
    }
    // The last run keeps the default TTL: a busy machine must not cost it its lock.
    env.unset("SOBOT_SYNC_LOCK_TTL_SECS");
    env.sim.set_faults(Faults::default());
    env.sync().await.expect_code(0);
    let rows = env.status().await;
    for p in ["talks", "parties", "agent_histories"] {
        assert_eq!(watermark(&rows, p), t(WATERMARK), "{p}");
    }
    assert_warehouse_exact(&env, t(start), t(WATERMARK));
    let strays = stray_files(&env.warehouse());
    eprintln!(
        "{} staging leftovers after the crashes: {strays:?}",
        strays.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_one_is_busy() {
    let env = CliEnv::start(t(NOW), START).await;
    env.sim.set_faults(Faults {
        slow_every: Some(1),
        slow_ms: 15,
        ..Faults::default()
    });
    let args = ["run", "--now", &env.now_arg()];
    let a = env.spawn(&args);
    let b = env.spawn(&args);
    let (a, b) = tokio::join!(finish(a), finish(b));
    assert_no_panic(&a);
    assert_no_panic(&b);
    eprintln!("exit codes {:?} and {:?}", a.code, b.code);
    match (a.code, b.code) {
        (Some(0), Some(0)) => eprintln!("the two runs did not overlap"),
        (Some(0), Some(1)) | (Some(1), Some(0)) => {
            let loser = if a.code == Some(1) { &a } else { &b };
            assert!(
                loser.stderr.contains("busy"),
                "the refused run does not say busy\n{}",
                loser.all()
            );
        }
        _ => panic!(
            "expected one run to finish and the other to be refused as busy\nA:\n{}\nB:\n{}",
            a.all(),
            b.all()
        ),
    }
    env.sim.set_faults(Faults::default());
    let rows = env.status().await;
    for p in ["talks", "parties", "agent_histories"] {
        assert_eq!(watermark(&rows, p), t(WATERMARK), "{p}");
    }
    assert_warehouse_exact(&env, t(START), t(WATERMARK));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_loads_its_range_and_refuses_the_future() {
    let start = "2024-02-04";
    let mut env = CliEnv::start(t("2024-02-05T00:00:00+08:00"), start).await;
    let args = [
        "backfill",
        "talks",
        "--from",
        "2024-02-01",
        "--to",
        "2024-02-03",
    ];
    let ds = env.sim.dataset();
    let want = truth::visible_rows(&ds, &TALKS, t("2024-02-01"), t("2024-02-03"), env.now);

    // A backfill killed half-way leaves whole files, and resumes where it stopped.
    env.set("SOBOT_SYNC_LOCK_TTL_SECS", "1");
    env.sim.set_faults(Faults {
        slow_every: Some(1),
        slow_ms: 30,
        ..Faults::default()
    });
    let mut child = env.spawn(&args);
    // Kill it once it has recorded its range (a fixed pause could kill it before it
    // started on a loaded machine), or after 10 s at most.
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let rows = env.status().await;
        if pipeline(&rows, "talks")["backfills"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
        {
            break;
        }
    }
    child.kill().await.expect("SIGKILL the backfill");
    let killed = child
        .wait()
        .await
        .expect("reap the backfill")
        .code()
        .is_none();
    let partial = truth::read_rows(&env.warehouse(), &TALKS, Singapore);
    assert!(partial.duplicate_keys().is_empty());
    let have = partial.by_key();
    assert!(
        have.iter().all(|(k, v)| want.get(k) == Some(v)),
        "a killed backfill wrote rows that are not the truth"
    );
    let mut resumed = false;
    if killed {
        let rows = env.status().await;
        let open = &pipeline(&rows, "talks")["backfills"];
        assert_eq!(open[0]["finished"], false, "{open}");
        resumed = open[0]["done"].as_array().is_some_and(|d| !d.is_empty());
        eprintln!("backfill killed with {} of {} rows", have.len(), want.len());
    }
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    env.unset("SOBOT_SYNC_LOCK_TTL_SECS");
    env.sim.set_faults(Faults::default());

    // Without --now the real clock decides what "too recent" is; 2024 is long past.
    let o = env.run(&args).await;
    o.expect_code(0);
    if resumed {
        // 48 hourly windows in all; the committed ones are not extracted again.
        let windows: u64 = o
            .stdout
            .split_once("talks: ")
            .and_then(|(_, r)| r.split_once(' '))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("no window count in the report\n{}", o.all()));
        assert!(windows < 48, "the backfill started over\n{}", o.all());
    }
    truth::assert_rows_exact(
        &truth::read_rows(&env.warehouse(), &TALKS, Singapore),
        &want,
        "talks after backfill",
    );
    let rows = env.status().await;
    assert_eq!(
        watermark(&rows, "talks"),
        t(start),
        "a backfill never moves the incremental watermark"
    );
    let backfills = &pipeline(&rows, "talks")["backfills"];
    assert_eq!(backfills[0]["finished"], true, "{backfills}");

    // Again: idempotent.
    env.run(&args).await.expect_code(0);
    truth::assert_rows_exact(
        &truth::read_rows(&env.warehouse(), &TALKS, Singapore),
        &want,
        "talks after a second backfill",
    );

    let now = env.now_arg();
    for (case, from, to, flag) in [
        (
            "--to later than now - lag",
            "2024-02-04",
            "2024-02-06",
            "--to",
        ),
        ("--from after --to", "2024-02-03", "2024-02-01", "--from"),
    ] {
        let o = env
            .run(&[
                "backfill", "talks", "--from", from, "--to", to, "--now", &now,
            ])
            .await;
        assert_config_error(&o, case, &["talks", flag]);
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

/// `demo` loads every table, `recordings` included although its shipped definition is
/// off (and stays off: `status` says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_loads_recordings_too() {
    let env = CliEnv::start(t(NOW), START).await;
    let shipped = std::fs::read_to_string(Path::new(REPO).join("pipelines/recordings.toml"))
        .expect("read recordings.toml");
    assert!(shipped.contains("enabled = false"), "off by default");
    let o = env.run(&["demo"]).await;
    o.expect_code(0);
    let line = o
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some("recordings"))
        .unwrap_or_else(|| panic!("no recordings row in the demo's table\n{}", o.all()));
    let rows: u64 = line
        .split_whitespace()
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(rows > 100, "{line}");
    let mp3s = std::fs::read_dir(env.warehouse().join("recordings"))
        .expect("recordings folder")
        .filter_map(Result::ok)
        .flat_map(|dt| std::fs::read_dir(dt.path()).into_iter().flatten())
        .filter_map(Result::ok)
        .filter(|f| f.path().extension().is_some_and(|e| e == "mp3"))
        .count() as u64;
    assert_eq!(mp3s, rows, "one stored MP3 per row");
    // The definition the demo read is still off for everything else.
    let status = env.status().await;
    assert_eq!(
        pipeline(&status, "recordings")["enabled"],
        Value::Bool(false)
    );
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
