//! End-to-end runs against the simulator, local files and S3. OWNER: e2e helper.
//!
//! Each test builds engines in-process exactly as the binary does (settings from an
//! environment map, `cli::engine`, a fixed clock), runs them against a seeded simulator,
//! reads the warehouse back with the parquet crate and compares it with the simulator's
//! ground truth (`Dataset`).

use crate::support::both::local_and_s3;
use crate::support::rig::{Rig, Warehouse, pipeline};
use crate::support::table::{self, Table};
use crate::support::truth::{self, Truth};
use chrono::{DateTime, Duration, Utc};
use sobot_sync::cli;
use sobot_sync::runner::{Engine, Mode, RunError};
use sobot_sync::sim::{Dataset, Dialect, Faults, SimConfig};
use sobot_sync::state::model::Span;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("test time {s:?}: {e}"))
}

/// A simulator whose clock is a day past the engine's: every record of every loaded
/// window has ended and is visible, so the ground truth is exactly what a run must load.
fn sim_ahead(now: DateTime<Utc>) -> SimConfig {
    SimConfig {
        now: Some(now + Duration::days(1)),
        ..SimConfig::default()
    }
}

/// The committed watermark of a pipeline.
async fn watermark(engine: &Engine, name: &str) -> DateTime<Utc> {
    cli::load_state(&engine.state, name)
        .await
        .unwrap_or_else(|e| panic!("state of {name}: {e}"))
        .unwrap_or_else(|| panic!("{name} has state"))
        .watermark
}

/// Reads a table and asserts it is exactly `truth`.
async fn assert_table(engine: &Engine, truth: &Truth) -> Table {
    let p = pipeline(engine, truth.table);
    let table = table::read(engine, &p.table).await;
    truth::assert_exact(&table, truth, &engine.grid(&p));
    table
}

/// All three tables over `[from, to)`, asserting every watermark is `to`.
async fn assert_all_exact(engine: &Engine, ds: &Dataset, from: DateTime<Utc>, to: DateTime<Utc>) {
    for name in ["talks", "parties", "agent_histories"] {
        assert_eq!(watermark(engine, name).await, to, "{name} watermark");
    }
    assert_table(engine, &truth::talks(ds, from, to)).await;
    assert_table(engine, &truth::parties(ds, from, to)).await;
    assert_table(engine, &truth::agent_histories(ds, from, to)).await;
}

/// Scenario 1: two simulated days of every pipeline, loaded exactly, from a simulator
/// speaking `dialect` (issue 13: every pipeline, reports and snapshots included, must
/// succeed in both).
async fn two_days_exact(warehouse: Warehouse, dialect: Dialect) {
    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-03T01:00:00+08:00");
    let config = SimConfig {
        dialect,
        ..sim_ahead(now)
    };
    let rig = Rig::new(config, warehouse, start).await;
    let engine = rig.engine(now);
    let reports = cli::run_pipelines(&engine, &[])
        .await
        .expect("run succeeds");
    // The windowed pipelines (snapshot pipelines run too, tested in snapshots_e2e).
    let windowed = reports
        .iter()
        .filter(|r| TABLES.contains(&r.table.as_str()));
    assert_eq!(windowed.count(), 3);
    // Talks (lag 30 min) and agent histories (lag 1 h) both stop at local midnight.
    let end = t("2024-03-03T00:00:00+08:00");
    assert_all_exact(&engine, &rig.sim.dataset(), start, end).await;
}

local_and_s3!(
    two_days_exact_local,
    two_days_exact_s3 => |warehouse| two_days_exact(warehouse, Dialect::Enveloped),
);

local_and_s3!(
    two_days_exact_literal_dialect_local,
    two_days_exact_literal_dialect_s3 => |warehouse| two_days_exact(warehouse, Dialect::Literal),
);

const TABLES: [&str; 3] = ["talks", "parties", "agent_histories"];

/// The ground truth of table `name` for records whose time is in `[from, to)`.
fn truth_of(name: &str, ds: &Dataset, from: DateTime<Utc>, to: DateTime<Utc>) -> Truth {
    match name {
        "talks" => truth::talks(ds, from, to),
        "parties" => truth::parties(ds, from, to),
        "agent_histories" => truth::agent_histories(ds, from, to),
        other => panic!("no ground truth for {other}"),
    }
}

/// Every table as text without the per-run columns.
async fn snapshots(engine: &Engine) -> Vec<std::collections::BTreeMap<String, Vec<String>>> {
    let mut out = Vec::new();
    for name in TABLES {
        out.push(table::read(engine, name).await.snapshot());
    }
    out
}

/// Every fault the simulator has, at rates that fire dozens of times in a day.
fn all_faults(late_secs: i64) -> Faults {
    Faults {
        rate_limit_every: Some(29),
        retry_after_secs: 0,
        server_error_every: Some(31),
        envelope_error_every: Some(37),
        truncate_every: Some(41),
        // Longer than SOBOT_REQUEST_TIMEOUT_SECS=1: these requests time out.
        slow_every: Some(211),
        slow_ms: 1_500,
        token_ttl_secs: Some(2),
        late_fraction: 0.2,
        late_secs,
        broken_from: None,
        broken_to: None,
        shifting_page_size: true,
        // A server cap above the pace these runs reach: its 429s ask for a whole second.
        max_rps: Some(1000),
        // issue 5: the agent metrics stream's switches (no polled pipeline meets them).
        stream_drop_after: Some(50),
        stream_drop_fraction: 0.01,
        stream_bad_every: Some(7),
        // issue 13: a wrong shape is not transient (one retry, then the run fails), so it
        // cannot be among faults a run must come through; tests/it/wire.rs covers it.
        wrong_shape_every: None,
        wrong_shape_path: None,
        // issue 13: an endpoint broken for good cannot end in identical tables.
        broken_endpoints: Vec::new(),
        broken_endpoint_status: None,
        // issue 13: changes what the metrics snapshot holds (tested in `media`).
        metrics_no_uuid_every: None,
        record_url_without_id_every: None,
    }
}

/// Scenario 2: with every fault on, the tables end up identical to a fault-free load.
///
/// Both loads run at `now1` and then at `now2`. The faulty simulator shows records as of
/// `now1` in the first run (so late records are missing), and all of them in the second,
/// whose lookback must pick the late ones up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_gives_the_fault_free_tables() {
    every_fault_gives_the_fault_free_tables_in(Dialect::Enveloped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_gives_the_fault_free_tables_literal_dialect() {
    every_fault_gives_the_fault_free_tables_in(Dialect::Literal).await;
}

async fn every_fault_gives_the_fault_free_tables_in(dialect: Dialect) {
    let start = t("2024-03-02T00:00:00+08:00");
    let now1 = t("2024-03-03T01:00:00+08:00");
    let now2 = now1 + Duration::hours(3);
    let late_secs = 2 * 3600;

    let reference = {
        let config = SimConfig {
            dialect,
            ..sim_ahead(now2)
        };
        let rig = Rig::new(config, Warehouse::local().await, start).await;
        for now in [now1, now2] {
            cli::run_pipelines(&rig.engine(now), &[])
                .await
                .expect("fault-free run");
        }
        let engine = rig.engine(now2);
        // The reference itself is exact (talks stop at 03:00, histories at 03:00 too).
        assert_all_exact(
            &engine,
            &rig.sim.dataset(),
            start,
            t("2024-03-03T03:00:00+08:00"),
        )
        .await;
        snapshots(&engine).await
    };

    let config = SimConfig {
        now: Some(now1),
        // Smaller than the pipelines' page_size of 200: the server caps pages.
        max_page_size: 50,
        faults: all_faults(late_secs),
        dialect,
        ..SimConfig::default()
    };
    let mut rig = Rig::new(config, Warehouse::local().await, start).await;
    rig.set("SOBOT_REQUEST_TIMEOUT_SECS", "1");
    cli::run_pipelines(&rig.engine(now1), &[])
        .await
        .expect("run at now1 survives every fault");
    let first = table::read(&rig.engine(now1), "talks").await;
    let truth_now1 = truth::talks(&rig.sim.dataset(), start, t("2024-03-03T00:00:00+08:00"));
    assert!(
        first.rows() < truth_now1.recs.len(),
        "late records are missing at now1 ({} of {} talks)",
        first.rows(),
        truth_now1.recs.len()
    );
    rig.sim.set_now(Some(now2 + Duration::days(1)));
    cli::run_pipelines(&rig.engine(now2), &[])
        .await
        .expect("run at now2 survives every fault");

    let stats = rig.sim.stats();
    for fault in ["429", "500", "502", "503"] {
        assert!(
            stats
                .by_endpoint_status
                .iter()
                .any(|(k, n)| k.ends_with(fault) && *n > 0),
            "the simulator answered {fault} at least once: {:?}",
            stats.by_endpoint_status
        );
    }
    assert!(
        stats.token_requests > 1,
        "short-lived tokens were refreshed"
    );

    let faulty = snapshots(&rig.engine(now2)).await;
    for (name, (want, got)) in TABLES.iter().zip(reference.iter().zip(faulty.iter())) {
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{name}: the same files"
        );
        for (path, rows) in want {
            let got_rows = got.get(path).cloned().unwrap_or_default();
            let first_diff = rows.iter().zip(&got_rows).find(|(a, b)| a != b);
            assert!(
                got_rows == *rows,
                "{path}: the same rows ({} vs {}); first difference:\n{first_diff:#?}",
                rows.len(),
                got_rows.len()
            );
        }
    }
}

/// Asserts a table holds, exactly once, the records of `truth` the simulator shows at
/// `now` and no others: present when it ended `late_secs` before `now`, absent only when
/// it may be late (ended less than `late_secs` before `now`). Returns how many are absent.
fn assert_visible_exactly(
    table: &Table,
    truth: &Truth,
    now: DateTime<Utc>,
    late_secs: i64,
) -> usize {
    let counts = table.key_counts(truth.key);
    assert!(
        counts.values().all(|n| *n == 1),
        "{}: a key twice",
        truth.table
    );
    let all = truth.keys();
    let extra: Vec<_> = counts
        .keys()
        .filter(|k| !all.contains(*k))
        .take(5)
        .collect();
    assert!(
        extra.is_empty(),
        "{}: keys not in the truth {extra:?}",
        truth.table
    );
    let surely_visible = now.timestamp_millis() - late_secs * 1000;
    let mut absent = 0;
    for r in &truth.recs {
        let present = counts.contains_key(&r.key);
        if r.ends_ms <= surely_visible {
            assert!(
                present,
                "{}: {} ended long before now, yet is missing",
                truth.table, r.key
            );
        }
        absent += usize::from(!present);
    }
    let present = truth.filter(|r| counts.contains_key(&r.key));
    truth::assert_values(table, &present, chrono_tz::Asia::Singapore);
    absent
}

/// Scenario 3: late records. A run at now1 lacks them; a run at now2, when they are
/// visible and their windows are still inside the lookback, has them, once; a rerun
/// replaces files and adds none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_records_are_caught_by_the_lookback() {
    let start = t("2024-03-02T12:00:00+08:00");
    let now1 = t("2024-03-03T01:00:00+08:00");
    let now2 = now1 + Duration::hours(3);
    let late_secs = 2 * 3600;
    let config = SimConfig {
        now: Some(now1),
        faults: Faults {
            late_fraction: 0.2,
            late_secs,
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let rig = Rig::new(config, Warehouse::local().await, start).await;
    let ds = rig.sim.dataset();

    let engine = rig.engine(now1);
    cli::run_pipelines(&engine, &[]).await.expect("run at now1");
    let wm1 = t("2024-03-03T00:00:00+08:00");
    let mut files_at_now1 = Vec::new();
    for name in TABLES {
        assert_eq!(watermark(&engine, name).await, wm1, "{name}");
        let table = table::read(&engine, name).await;
        let absent =
            assert_visible_exactly(&table, &truth_of(name, &ds, start, wm1), now1, late_secs);
        assert!(absent > 0, "{name}: some records are late at now1");
        files_at_now1.push(
            table
                .files
                .iter()
                .map(|f| f.path.clone())
                .collect::<Vec<_>>(),
        );
    }

    rig.sim.set_now(Some(now2));
    let engine = rig.engine(now2);
    let reports = cli::run_pipelines(&engine, &[]).await.expect("run at now2");
    assert!(
        reports
            .iter()
            .filter(|r| TABLES.contains(&r.table.as_str()))
            .all(|r| r.lookback_windows > 0),
        "{reports:?}"
    );
    let wm2 = t("2024-03-03T03:00:00+08:00");
    let mut before = Vec::new();
    for (name, old_files) in TABLES.iter().zip(&files_at_now1) {
        assert_eq!(watermark(&engine, name).await, wm2, "{name}");
        let table = table::read(&engine, name).await;
        // Everything loaded at now1 is now complete, late records included, once.
        let p = pipeline(&engine, name);
        let old = truth_of(name, &ds, start, wm1);
        let old_table = Table {
            name: table.name.clone(),
            files: table
                .files
                .iter()
                .filter(|f| old_files.contains(&f.path))
                .map(|f| table::FileRows {
                    path: f.path.clone(),
                    batch: f.batch.clone(),
                })
                .collect(),
        };
        truth::assert_exact(&old_table, &old, &engine.grid(&p));
        // The newer windows hold what is visible at now2.
        assert_visible_exactly(&table, &truth_of(name, &ds, start, wm2), now2, late_secs);
        table.assert_layout(truth_of(name, &ds, start, wm2).time_col, rig.tz);
        before.push(table.snapshot());
    }

    // Rerun at the same instant: every lookback window again, the same files and rows.
    let reports = cli::run_pipelines(&engine, &[])
        .await
        .expect("rerun at now2");
    assert!(
        reports
            .iter()
            .filter(|r| TABLES.contains(&r.table.as_str()))
            .all(|r| r.lookback_windows > 0 && r.windows == r.lookback_windows)
    );
    assert_eq!(
        snapshots(&engine).await,
        before,
        "a rerun replaces, never adds"
    );
}

/// Talks' files restricted to windows inside `[from, to)`.
fn files_within(table: &Table, from: DateTime<Utc>, to: DateTime<Utc>) -> Table {
    let from_name = from.format("%Y%m%dT%H%M%SZ").to_string();
    let to_name = to.format("%Y%m%dT%H%M%SZ").to_string();
    Table {
        name: table.name.clone(),
        files: table
            .files
            .iter()
            .filter(|f| {
                let name = f.path.rsplit('/').next().unwrap_or_default();
                let (s, e) = name
                    .trim_end_matches(".parquet")
                    .split_once('_')
                    .unwrap_or_default();
                s >= from_name.as_str() && e <= to_name.as_str()
            })
            .map(|f| table::FileRows {
                path: f.path.clone(),
                batch: f.batch.clone(),
            })
            .collect(),
    }
}

/// The talks search requests a range needs: one page per window, or more past 200 calls.
fn talk_pages(ds: &Dataset, engine: &Engine, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    let p = pipeline(engine, "talks");
    engine
        .grid(&p)
        .windows(from, to)
        .iter()
        .map(|w| {
            let n = ds.talks(w.start, w.end).len() as u64;
            n.div_ceil(u64::from(p.page_size)).max(1)
        })
        .sum()
}

fn maincdrs_ok(rig: &Rig) -> u64 {
    rig.sim
        .stats()
        .by_endpoint_status
        .get("maincdrs 200")
        .copied()
        .unwrap_or(0)
}

fn span(start: DateTime<Utc>, end: DateTime<Utc>) -> Span {
    Span { start, end }
}

/// Scenario 4: backfills load exactly, leave the watermark alone, show up and close in
/// `status`; a broken window stops one, which then resumes past its done windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_fills_the_gap_and_resumes() {
    let start = t("2024-03-02T00:00:00+08:00");
    let now = t("2024-03-02T06:00:00+08:00");
    let mut rig = Rig::new(sim_ahead(now), Warehouse::local().await, start).await;
    // A broken window fails after a couple of quick retries, not after minutes.
    rig.set("SOBOT_MAX_RETRIES", "2");
    let ds = rig.sim.dataset();
    let engine = rig.engine(now);
    let talks = pipeline(&engine, "talks");
    let wm = t("2024-03-02T05:00:00+08:00");

    engine
        .run(&talks, Mode::Incremental)
        .await
        .expect("incremental run");
    assert_eq!(watermark(&engine, "talks").await, wm);

    // A backfill reaching past now - lag is refused as configuration, before any work.
    let err = engine
        .run(&talks, Mode::Backfill { from: wm, to: now })
        .await
        .expect_err("a backfill into the lag");
    assert!(err.is_config(), "{err}");

    // A backfill before the incremental start, leaving a gap up to it.
    let (b1_from, b1_to) = (
        t("2024-03-01T00:00:00+08:00"),
        t("2024-03-01T12:00:00+08:00"),
    );
    let report = engine
        .run(
            &talks,
            Mode::Backfill {
                from: b1_from,
                to: b1_to,
            },
        )
        .await
        .expect("first backfill");
    assert_eq!(report.windows, 12);
    assert_eq!(
        watermark(&engine, "talks").await,
        wm,
        "a backfill leaves the watermark"
    );
    let table = table::read(&engine, "talks").await;
    let grid = engine.grid(&talks);
    let loaded = truth::talks(&ds, b1_from, b1_to);
    let mut both = truth::talks(&ds, start, wm);
    both.recs.extend(loaded.recs.iter().cloned());
    truth::assert_exact(&table, &both, &grid);

    let status = sobot_sync::status::collect(&engine.catalog, &engine.state, now)
        .await
        .expect("status");
    let row = status
        .iter()
        .find(|r| r.pipeline == "talks")
        .expect("talks status");
    assert_eq!(
        row.gaps,
        vec![span(b1_to, start)],
        "the gap before the incremental start"
    );
    assert!(row.backfills.iter().all(|b| b.finished));

    // A second backfill over the gap meets a window that never answers.
    let broken = (
        t("2024-03-01T15:00:00+08:00"),
        t("2024-03-01T16:00:00+08:00"),
    );
    rig.sim.set_faults(Faults {
        broken_from: Some(broken.0),
        broken_to: Some(broken.1),
        ..Faults::default()
    });
    let err = engine
        .run(
            &talks,
            Mode::Backfill {
                from: b1_to,
                to: start,
            },
        )
        .await
        .expect_err("the broken window fails the backfill");
    match &err {
        RunError::Window {
            pipeline, window, ..
        } => {
            assert_eq!(pipeline, "talks");
            assert_eq!((window.start, window.end), broken);
        }
        other => panic!("expected a window error, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("[2024-03-01T07:00:00Z, 2024-03-01T08:00:00Z)"),
        "{err}"
    );
    let st = cli::load_state(&engine.state, "talks")
        .await
        .expect("state")
        .expect("some");
    assert_eq!(st.watermark, wm);
    let open = st
        .backfills
        .iter()
        .find(|b| b.is_open())
        .expect("an open backfill");
    assert_eq!(
        open.done.0,
        vec![span(b1_to, broken.0)],
        "done up to the broken window"
    );

    // Cleared: the same backfill resumes at the broken window, asking for nothing before it.
    rig.sim.set_faults(Faults::default());
    let before = maincdrs_ok(&rig);
    let report = engine
        .run(
            &talks,
            Mode::Backfill {
                from: b1_to,
                to: start,
            },
        )
        .await
        .expect("resumed backfill");
    assert_eq!(report.windows, 9, "15:00..24:00 only");
    let asked = maincdrs_ok(&rig) - before;
    assert_eq!(
        asked,
        talk_pages(&ds, &engine, broken.0, start),
        "requests of the resumed windows only"
    );
    assert_eq!(asked, report.requests);

    assert_eq!(
        watermark(&engine, "talks").await,
        wm,
        "backfills leave the watermark"
    );
    let table = table::read(&engine, "talks").await;
    truth::assert_exact(&table, &truth::talks(&ds, b1_from, wm), &grid);
    let status = sobot_sync::status::collect(&engine.catalog, &engine.state, now)
        .await
        .expect("status");
    let row = status
        .iter()
        .find(|r| r.pipeline == "talks")
        .expect("talks status");
    assert!(row.gaps.is_empty(), "gaps closed: {:?}", row.gaps);
    assert!(
        row.backfills.iter().all(|b| b.finished),
        "{:?}",
        row.backfills
    );
}

/// Scenario 5: a window that never answers stops an incremental run there: the error
/// names pipeline and window, everything before it is committed with its files, nothing
/// after it; once it answers, the next run completes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_window_stops_incremental_runs_there() {
    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-01T12:00:00+08:00");
    let broken = (
        t("2024-03-01T05:00:00+08:00"),
        t("2024-03-01T06:00:00+08:00"),
    );
    let config = SimConfig {
        faults: Faults {
            broken_from: Some(broken.0),
            broken_to: Some(broken.1),
            ..Faults::default()
        },
        ..sim_ahead(now)
    };
    let mut rig = Rig::new(config, Warehouse::local().await, start).await;
    rig.set("SOBOT_MAX_RETRIES", "2");
    let ds = rig.sim.dataset();
    let engine = rig.engine(now);
    for name in ["talks", "parties"] {
        let p = pipeline(&engine, name);
        let err = engine
            .run(&p, Mode::Incremental)
            .await
            .expect_err("the broken window fails the run");
        match &err {
            RunError::Window {
                pipeline, window, ..
            } => {
                assert_eq!(pipeline, name);
                assert_eq!((window.start, window.end), broken);
            }
            other => panic!("{name}: expected a window error, got {other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(name) && text.contains("[2024-02-29T21:00:00Z, 2024-02-29T22:00:00Z)"),
            "{text}"
        );
        let st = cli::load_state(&engine.state, name)
            .await
            .expect("state")
            .expect("some");
        assert_eq!(
            st.watermark, broken.0,
            "{name}: watermark at the broken window"
        );
        assert_eq!(
            st.completed.0,
            vec![span(start, broken.0)],
            "{name}: nothing after it"
        );
        assert!(
            cli::last_failed(&st),
            "{name}: the run is recorded as failed"
        );
        // Windows before it are in place; the broken one has no file.
        let table = table::read(&engine, name).await;
        let grid = engine.grid(&p);
        truth::assert_exact(
            &files_within(&table, start, broken.0),
            &truth_of(name, &ds, start, broken.0),
            &grid,
        );
        assert!(files_within(&table, broken.0, broken.1).files.is_empty());
    }

    rig.sim.set_faults(Faults::default());
    let end = t("2024-03-01T11:00:00+08:00");
    for name in ["talks", "parties"] {
        let p = pipeline(&engine, name);
        engine
            .run(&p, Mode::Incremental)
            .await
            .expect("run after the fault clears");
        assert_eq!(watermark(&engine, name).await, end);
        let table = table::read(&engine, name).await;
        truth::assert_exact(&table, &truth_of(name, &ds, start, end), &engine.grid(&p));
    }
}

/// Loads `[start, start + days)` of a New York simulator in New York time and checks it.
/// Returns the rig too: it owns the warehouse directory.
async fn dst_exact(start: DateTime<Utc>, end: DateTime<Utc>, dialect: Dialect) -> (Rig, Engine) {
    let now = end + Duration::hours(1);
    let config = SimConfig {
        timezone: chrono_tz::America::New_York,
        calls_per_hour: 20.0,
        dialect,
        ..sim_ahead(now)
    };
    let rig = Rig::new(config, Warehouse::local().await, start).await;
    let engine = rig.engine(now);
    cli::run_pipelines(&engine, &[])
        .await
        .expect("run over the DST change");
    assert_all_exact(&engine, &rig.sim.dataset(), start, end).await;
    (rig, engine)
}

/// Hours of the agent-history files of one `dt` (every hour has status intervals).
async fn window_hours(engine: &Engine, dt: &str) -> Vec<i64> {
    let table = table::read(engine, "agent_histories").await;
    let windows = table.assert_layout("start_time", chrono_tz::America::New_York);
    table
        .files
        .iter()
        .zip(&windows)
        .filter(|(f, _)| f.path.contains(&format!("/dt={dt}/")))
        .map(|(_, (s, e))| (*e - *s).num_hours())
        .collect()
}

/// Scenario 6a: spring forward in New York: exact, and the short day has 23 windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_spring_forward_new_york() {
    let (_rig, engine) = dst_exact(
        t("2024-03-09T00:00:00-05:00"),
        t("2024-03-12T00:00:00-04:00"),
        Dialect::Enveloped,
    )
    .await;
    assert_eq!(window_hours(&engine, "2024-03-10").await, vec![1; 23]);
    assert_eq!(window_hours(&engine, "2024-03-11").await, vec![1; 24]);
}

/// Scenario 6b: fall back: exact, and the long day's repeated hour is one two-hour window.
/// Every pipeline runs, so the day's report periods are read too: in the literal dialect
/// (issue 13) their labels repeat and one reads "01:00 01:00".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_fall_back_new_york() {
    dst_fall_back_new_york_in(Dialect::Enveloped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_fall_back_new_york_literal_dialect() {
    dst_fall_back_new_york_in(Dialect::Literal).await;
}

async fn dst_fall_back_new_york_in(dialect: Dialect) {
    let (_rig, engine) = dst_exact(
        t("2024-11-02T00:00:00-04:00"),
        t("2024-11-05T00:00:00-05:00"),
        dialect,
    )
    .await;
    let hours = window_hours(&engine, "2024-11-03").await;
    assert_eq!(hours.len(), 24, "{hours:?}");
    assert_eq!(hours.iter().sum::<i64>(), 25);
    assert_eq!(
        hours[1], 2,
        "01:00-02:00 local holds both 01:00 hours: {hours:?}"
    );
    let table = table::read(&engine, "agent_histories").await;
    assert!(
        table.files.iter().any(|f| f
            .path
            .ends_with("dt=2024-11-03/20241103T050000Z_20241103T070000Z.parquet")),
        "the two-hour window's file"
    );
}

/// Scenario 7: two engines run one pipeline on one warehouse at once: one is refused as
/// busy, or they run one after the other; either way the table is exact.
async fn two_engines_at_once(warehouse: Warehouse) {
    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-01T12:00:00+08:00");
    let rig = Rig::new(sim_ahead(now), warehouse, start).await;
    let (a, b) = (rig.engine(now), rig.engine(now));
    let p = pipeline(&a, "talks");
    let (ra, rb) = tokio::join!(a.run(&p, Mode::Incremental), b.run(&p, Mode::Incremental));
    match (&ra, &rb) {
        (Ok(_), Ok(_)) => {}
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => assert!(e.is_busy(), "the loser is busy: {e}"),
        (Err(x), Err(y)) => panic!("both runs failed: {x}; {y}"),
    }
    let end = t("2024-03-01T11:00:00+08:00");
    let st = cli::load_state(&a.state, "talks")
        .await
        .expect("state loads")
        .expect("some");
    assert_eq!(st.watermark, end);
    assert_eq!(st.completed.0, vec![span(start, end)]);
    assert!(!cli::last_failed(&st));
    let table = table::read(&a, "talks").await;
    truth::assert_exact(
        &table,
        &truth::talks(&rig.sim.dataset(), start, end),
        &a.grid(&p),
    );
}

local_and_s3!(two_engines_at_once_local, two_engines_at_once_s3 => two_engines_at_once);

/// The engine's zone need not be the simulator's: the `timezoneid` header makes the API
/// answer (and read) local strings in SOBOT_TIMEZONE, and `dt` follows that zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_zone_differs_from_the_simulators() {
    let start = t("2024-03-01T00:00:00Z");
    let end = t("2024-03-02T00:00:00Z");
    let now = end + Duration::hours(1);
    let mut rig = Rig::new(sim_ahead(now), Warehouse::local().await, start).await;
    rig.set("SOBOT_TIMEZONE", "UTC");
    let engine = rig.engine(now);
    let p = pipeline(&engine, "agent_histories");
    engine.run(&p, Mode::Incremental).await.expect("run in UTC");
    assert_eq!(watermark(&engine, "agent_histories").await, end);
    let table = table::read(&engine, "agent_histories").await;
    truth::assert_exact(
        &table,
        &truth::agent_histories(&rig.sim.dataset(), start, end),
        &engine.grid(&p),
    );
    assert!(
        table
            .files
            .iter()
            .all(|f| f.path.contains("/dt=2024-03-01/"))
    );
}

/// A backfill writes one file per day for talks and their parties; backfilling part of
/// a day again replaces exactly those windows' rows inside the day's file (their
/// `_run_id` changes, the others' does not) and nothing is duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_writes_a_file_per_day_and_a_rerun_replaces_inside_it() {
    let start = t("2024-03-03T00:00:00+08:00");
    let now = t("2024-03-03T06:00:00+08:00");
    let rig = Rig::new(sim_ahead(now), Warehouse::local().await, start).await;
    let ds = rig.sim.dataset();
    let engine = rig.engine(now);
    let (from, to) = (t("2024-03-01T00:00:00+08:00"), start);
    for name in ["talks", "parties"] {
        let report = engine
            .run(&pipeline(&engine, name), Mode::Backfill { from, to })
            .await
            .unwrap_or_else(|e| panic!("backfill {name}: {e}"));
        assert_eq!(
            (report.windows, report.files),
            (48, 2),
            "{name}: {report:?}"
        );
    }
    let first_talks = assert_table(&engine, &truth::talks(&ds, from, to)).await;
    assert_table(&engine, &truth::parties(&ds, from, to)).await;
    assert_eq!(first_talks.files.len(), 2);

    let (again_from, again_to) = (
        t("2024-03-02T05:00:00+08:00"),
        t("2024-03-02T08:00:00+08:00"),
    );
    for name in ["talks", "parties"] {
        let report = engine
            .run(
                &pipeline(&engine, name),
                Mode::Backfill {
                    from: again_from,
                    to: again_to,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("second backfill {name}: {e}"));
        assert_eq!(report.windows, 3, "{name}");
    }
    let talks = assert_table(&engine, &truth::talks(&ds, from, to)).await;
    assert_table(&engine, &truth::parties(&ds, from, to)).await;
    let paths = |t: &Table| t.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    assert_eq!(paths(&talks), paths(&first_talks), "the same two day files");

    // Rows of the rerun windows carry the second run's id, all others the first's.
    let run_ids = |t: &Table| -> Vec<(i64, String)> {
        t.files
            .iter()
            .flat_map(|f| {
                let ws = table::col_ms(&f.batch, "_window_start");
                let ids = table::col_str(&f.batch, "_run_id");
                ws.into_iter()
                    .zip(ids)
                    .map(|(w, id)| (w.expect("window"), id.expect("run id")))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let before = run_ids(&first_talks);
    let after = run_ids(&talks);
    assert_eq!(before.len(), after.len());
    let inside = |w: i64| w >= again_from.timestamp_millis() && w < again_to.timestamp_millis();
    let mut rerun_rows = 0;
    for ((w0, id0), (w1, id1)) in before.iter().zip(&after) {
        assert_eq!(w0, w1, "rows stay in order");
        if inside(*w1) {
            assert_ne!(id0, id1, "a rerun window's row was not replaced");
            rerun_rows += 1;
        } else {
            assert_eq!(id0, id1, "a row outside the rerun windows was rewritten");
        }
    }
    assert!(rerun_rows > 0, "the rerun windows hold rows");
}
