//! Runs of the binary judged by what a user sees: `status` after a run, a broken window
//! and its recovery, SIGKILL at any moment, two runs at once, backfill and the demo.

use super::*;

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
    // issue 15: parties reads the calls talks committed, so it stops at talks' watermark
    // without an error of its own; its windows after it wait for talks.
    let stops = [
        ("talks", bf, "[2024-01-02T02:00:00Z, 2024-01-02T03:00:00Z)"),
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
    assert_eq!(
        watermark(&rows, "parties"),
        bf,
        "parties stops where talks did"
    );
    let run = &pipeline(&rows, "parties")["last_run"];
    assert_eq!(run["outcome"], "success", "{run}");
    assert_eq!(run["waiting"]["parent"], "talks", "{run}");
    assert!(
        o.stdout.contains("wait for talks to commit them"),
        "the summary says parties waits\n{}",
        o.all()
    );
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
