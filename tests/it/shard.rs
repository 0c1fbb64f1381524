//! Sharded backfill (`backfill --shard I/N`, the Kubernetes indexed Job): shards of one
//! range run at the same time, beside the live incremental run, and together load the
//! range exactly once; a range reaching into the live run's lookback is refused.

use crate::support::both::local_and_s3;
use crate::support::cli_proc::CliEnv;
use crate::support::rig::{Rig, Warehouse, pipeline};
use crate::support::table;
use crate::support::truth::{self, TALKS};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Asia::Singapore;
use sobot_sync::engine::run::{Engine, Mode};
use sobot_sync::engine::shard;
use sobot_sync::engine::shard::Shard;
use sobot_sync::io::state::model::{PipelineState, Span};
use sobot_sync::sim::SimConfig;

fn t(s: &str) -> DateTime<Utc> {
    sobot_sync::core::timeutil::parse_time(s, Singapore).expect("test time")
}

async fn state(engine: &Engine, name: &str) -> PipelineState {
    sobot_sync::app::setup::load_state(&engine.state, name)
        .await
        .unwrap_or_else(|e| panic!("state of {name}: {e}"))
        .unwrap_or_else(|| panic!("{name} has state"))
}

/// Three shards of talks and an incremental run of talks at once, then the same for
/// parties: no run is busy or fails, each table holds every key of the backfilled range
/// and of the incremental range exactly once, and the state records both ranges.
async fn three_shards_beside_the_live_run(warehouse: Warehouse) {
    let start = t("2024-03-07T00:00:00+08:00");
    let now = t("2024-03-07T12:00:00+08:00");
    // The simulator a day ahead: every record of a loaded window has ended.
    let sim = SimConfig {
        now: Some(now + Duration::days(1)),
        ..SimConfig::default()
    };
    let rig = Rig::new(sim, warehouse, start).await;
    let ds = rig.sim.dataset();
    let engine = rig.engine(now);
    // Five local days for three shards: 1, 2 and 2 days.
    let (from, to) = (t("2024-03-01"), t("2024-03-06"));
    let wm = t("2024-03-07T11:00:00+08:00");

    for name in ["talks", "parties"] {
        let p = pipeline(&engine, name);
        let shards = (0..3).map(|i| {
            let (engine, p) = (engine.clone(), p.clone());
            tokio::spawn(async move {
                let shard = Shard { index: i, count: 3 };
                shard::run(&engine, &p, from, to, shard).await
            })
        });
        let live = {
            let (engine, p) = (engine.clone(), p.clone());
            tokio::spawn(async move { engine.run(&p, Mode::Incremental).await })
        };
        let (shards, live) = tokio::join!(futures::future::join_all(shards), live);
        let live = live
            .expect("live run task")
            .unwrap_or_else(|e| panic!("{name} live run: {e}"));
        assert_eq!(live.watermark, Some(wm), "{name}");
        let mut ranges = Vec::new();
        for r in shards {
            let r = r
                .expect("shard task")
                .unwrap_or_else(|e| panic!("{name} shard: {e} (busy: {})", e.is_busy()));
            let (a, b) = r.range.expect("every shard has days");
            let report = r.report.expect("a shard with days reports");
            let days = (b - a).num_days();
            assert_eq!(report.windows as i64, days * 24, "{name} shard {}", r.shard);
            assert_eq!(
                report.files as i64, days,
                "{name} shard {}: a file per day",
                r.shard
            );
            ranges.push((a, b));
        }
        assert_eq!(
            ranges,
            vec![
                (from, t("2024-03-02")),
                (t("2024-03-02"), t("2024-03-04")),
                (t("2024-03-04"), to)
            ],
            "{name}: the shards' sub-ranges"
        );

        let st = state(&engine, name).await;
        assert_eq!(st.watermark, wm, "{name}: the live run's watermark stands");
        assert!(
            st.completed.covers(Span {
                start: from,
                end: to
            }),
            "{name}: {:?}",
            st.completed
        );
        assert!(
            st.completed.covers(Span { start, end: wm }),
            "{name}: {:?}",
            st.completed
        );
        let mut records: Vec<_> = st
            .backfills
            .iter()
            .map(|b| (b.from, b.to, b.finished_at.is_some()))
            .collect();
        records.sort();
        let want: Vec<_> = ranges.iter().map(|&(a, b)| (a, b, true)).collect();
        assert_eq!(
            records, want,
            "{name}: one finished backfill record per shard"
        );
    }

    let grid = engine.grid(&pipeline(&engine, "talks"));
    for (name, mut want, live) in [
        (
            "talks",
            truth::talks(&ds, from, to),
            truth::talks(&ds, start, wm),
        ),
        (
            "parties",
            truth::parties(&ds, from, to),
            truth::parties(&ds, start, wm),
        ),
    ] {
        want.recs.extend(live.recs);
        let table = table::read(&engine, name).await;
        truth::assert_exact(&table, &want, &grid);
    }
}

local_and_s3!(
    three_shards_beside_the_live_run_local,
    three_shards_beside_the_live_run_s3 => three_shards_beside_the_live_run,
);

/// The binary: three `backfill --shard I/3` processes at once load the range exactly;
/// `--shards 3` with `JOB_COMPLETION_INDEX` reruns a finished shard as a no-op; a range
/// into the incremental run's lookback, and a bad shard, exit 2 before any work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_processes_load_the_range_and_refuse_the_lookback() {
    let now = t("2024-02-06T12:00:00+08:00");
    let mut env = CliEnv::start(now, "2024-02-05").await;
    let now_arg = env.now_arg();
    let (from, to) = ("2024-02-01", "2024-02-04");
    let children: Vec<_> = (0..3)
        .map(|i| {
            let shard = format!("{i}/3");
            env.spawn(&[
                "backfill", "talks", "--from", from, "--to", to, "--shard", &shard, "--now",
                &now_arg,
            ])
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let o = crate::support::cli_proc::finish(child).await;
        o.expect_code(0);
        assert!(
            o.stdout.contains(&format!("talks shard {i}/3: [")) && o.stdout.contains("24 windows"),
            "shard {i}\n{}",
            o.all()
        );
    }
    let ds = env.sim.dataset();
    let want = truth::visible_rows(&ds, &TALKS, t(from), t(to), env.now);
    let table = truth::read_rows(&env.warehouse(), &TALKS, Singapore);
    truth::assert_rows_exact(&table, &want, "talks after three shard processes");
    let rows = env.status().await;
    let talks = rows
        .iter()
        .find(|r| r["pipeline"] == "talks")
        .expect("status lists talks");
    let backfills = talks["backfills"].as_array().expect("backfills array");
    assert_eq!(backfills.len(), 3, "{backfills:?}");
    assert!(
        backfills.iter().all(|b| b["finished"] == true),
        "{backfills:?}"
    );

    // The indexed Job's form: the index from the environment; finished work is skipped.
    env.set("JOB_COMPLETION_INDEX", "1");
    let o = env
        .run(&[
            "backfill", "talks", "--from", from, "--to", to, "--shards", "3", "--now", &now_arg,
        ])
        .await;
    o.expect_code(0);
    assert!(
        o.stdout.contains("talks shard 1/3: [") && o.stdout.contains(" 0 windows"),
        "{}",
        o.all()
    );
    env.unset("JOB_COMPLETION_INDEX");
    truth::assert_rows_exact(
        &truth::read_rows(&env.warehouse(), &TALKS, Singapore),
        &want,
        "talks after a rerun of a shard",
    );

    // talks looks back 6 hours from its watermark (2024-02-05, no run yet): a range
    // ending after 2024-02-04T18:00 is refused, whatever the shard.
    for (case, args, needles) in [
        (
            "range into the lookback",
            vec![
                "--from",
                "2024-02-04",
                "--to",
                "2024-02-05",
                "--shard",
                "0/3",
            ],
            vec!["talks", "lookback", "2024-02-04T10:00:00+00:00"],
        ),
        (
            "index out of range",
            vec!["--from", from, "--to", to, "--shard", "3/3"],
            vec!["shard index 3"],
        ),
        (
            "--shards without the job index",
            vec!["--from", from, "--to", to, "--shards", "3"],
            vec!["JOB_COMPLETION_INDEX"],
        ),
        (
            "--shard and --shards at once (clap refuses)",
            vec![
                "--from", from, "--to", to, "--shard", "0/2", "--shards", "2",
            ],
            vec!["--shard", "cannot be used with"],
        ),
        (
            "a report pipeline",
            vec!["--from", from, "--to", to, "--shard", "0/2"],
            vec!["search and children"],
        ),
    ] {
        let name = if case == "a report pipeline" {
            "report_agents_inbound"
        } else {
            "talks"
        };
        let mut all = vec!["backfill", name];
        all.extend(args);
        all.extend(["--now", &now_arg]);
        let o = env.run(&all).await;
        assert_eq!(o.code, Some(2), "{case}: expected exit 2\n{}", o.all());
        for n in needles {
            assert!(
                o.stderr.contains(n),
                "{case}: stderr lacks {n:?}\n{}",
                o.all()
            );
        }
    }
    // Nothing was written by the refused commands.
    truth::assert_rows_exact(
        &truth::read_rows(&env.warehouse(), &TALKS, Singapore),
        &want,
        "talks after refused shards",
    );
}

/// A shard needs only its own range's lock: it runs while another process holds the
/// pipeline lock, and is busy (exit 1 class, not 2) while another holds its range lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_takes_its_range_lock_not_the_pipeline_lock() {
    let start = t("2024-03-05T00:00:00+08:00");
    let now = t("2024-03-05T12:00:00+08:00");
    let sim = SimConfig {
        now: Some(now + Duration::days(1)),
        ..SimConfig::default()
    };
    let rig = Rig::new(sim, Warehouse::local().await, start).await;
    let ds = rig.sim.dataset();
    let engine = rig.engine(now);
    let talks = pipeline(&engine, "talks");
    let (from, to) = (t("2024-03-01"), t("2024-03-03"));
    let ttl = std::time::Duration::from_secs(600);

    // Shard 1/2 is 2024-03-02; someone else holds its range lock.
    let other = engine
        .state
        .acquire_range_lock("talks", "20240301T160000Z_20240302T160000Z", "someone", ttl)
        .await
        .expect("range lock");
    let err = shard::run(&engine, &talks, from, to, Shard { index: 1, count: 2 })
        .await
        .expect_err("the range is locked");
    assert!(err.is_busy() && !err.is_config(), "{err}");
    other.release().await.expect("release");

    // The pipeline lock held by a run elsewhere does not stop the shards.
    let pipeline_lock = engine
        .state
        .acquire_lock("talks", "a-live-run", ttl)
        .await
        .expect("pipeline lock");
    for index in 0..2 {
        let r = shard::run(&engine, &talks, from, to, Shard { index, count: 2 })
            .await
            .unwrap_or_else(|e| panic!("shard {index}: {e}"));
        assert_eq!(r.report.expect("report").windows, 24);
    }
    pipeline_lock.release().await.expect("release");
    let table = table::read(&engine, "talks").await;
    truth::assert_exact(&table, &truth::talks(&ds, from, to), &engine.grid(&talks));
}
