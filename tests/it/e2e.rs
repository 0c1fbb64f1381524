//! End-to-end runs against the simulator, local files and S3. OWNER: e2e helper.
//!
//! Each test builds engines in-process exactly as the binary does (settings from an
//! environment map, `cli::engine`, a fixed clock), runs them against a seeded simulator,
//! reads the warehouse back with the parquet crate and compares it with the simulator's
//! ground truth (`Dataset`).

use crate::support::rig::{Rig, Warehouse, pipeline};
use crate::support::table::{self, Table};
use crate::support::truth::{self, Truth};
use chrono::{DateTime, Duration, Utc};
use sobot_sync::cli;
use sobot_sync::runner::Engine;
use sobot_sync::sim::{Dataset, SimConfig};

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

/// Scenario 1: two simulated days of every pipeline, loaded exactly.
async fn two_days_exact(warehouse: Warehouse) {
    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-03T01:00:00+08:00");
    let rig = Rig::new(sim_ahead(now), warehouse, start).await;
    let engine = rig.engine(now);
    let reports = cli::run_pipelines(&engine, &[])
        .await
        .expect("run succeeds");
    assert_eq!(reports.len(), 3);
    // Talks (lag 30 min) and agent histories (lag 1 h) both stop at local midnight.
    let end = t("2024-03-03T00:00:00+08:00");
    assert_all_exact(&engine, &rig.sim.dataset(), start, end).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_days_exact_local() {
    two_days_exact(Warehouse::local().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_days_exact_s3() {
    two_days_exact(Warehouse::s3().await).await;
}
