//! End-to-end runs against the simulator, local files and S3. OWNER: e2e helper.
//!
//! Each test builds engines in-process exactly as the binary does (settings from an
//! environment map, `sobot_sync::app::setup::engine`, a fixed clock), runs them against a seeded simulator,
//! reads the warehouse back with the parquet crate and compares it with the simulator's
//! ground truth (`Dataset`).

use crate::support::both::local_and_s3;
use crate::support::rig::{Rig, Warehouse, pipeline};
use crate::support::table::{self, Table};
use crate::support::truth::{self, Truth};
use chrono::{DateTime, Duration, Utc};
use sobot_sync::engine::run::{Engine, Mode, RunError};
use sobot_sync::io::state::model::Span;
use sobot_sync::sim::{Dataset, Dialect, Faults, SimConfig};

mod budget; // issue 15
mod children; // issue 15 parts 1 and 2
mod faults;
mod gaps;
mod unchanged; // issue 15 part 3
mod zones;

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
    sobot_sync::app::setup::load_state(&engine.state, name)
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
    let reports = sobot_sync::app::run::run_pipelines(&engine, &[])
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

fn span(start: DateTime<Utc>, end: DateTime<Utc>) -> Span {
    Span { start, end }
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
    let st = sobot_sync::app::setup::load_state(&a.state, "talks")
        .await
        .expect("state loads")
        .expect("some");
    assert_eq!(st.watermark, end);
    assert_eq!(st.completed.0, vec![span(start, end)]);
    assert!(!sobot_sync::app::status::last_failed(&st));
    let table = table::read(&a, "talks").await;
    truth::assert_exact(
        &table,
        &truth::talks(&rig.sim.dataset(), start, end),
        &a.grid(&p),
    );
}

local_and_s3!(two_engines_at_once_local, two_engines_at_once_s3 => two_engines_at_once);
