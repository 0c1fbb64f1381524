//! issue 15 part 3: a lookback window whose rows are already stored writes nothing (no
//! rewrite on disk, no PUT on S3) and still commits; one whose rows changed (late
//! records) is rewritten with them.

use super::{TABLES, t, truth_of, watermark};
use crate::support::both::local_and_s3;
use crate::support::rig::{Rig, Warehouse, pipeline};
use crate::support::table;
use crate::support::truth;
use chrono::Duration;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use sobot_sync::engine::run::Engine;
use sobot_sync::io::state::model::Outcome;
use sobot_sync::sim::{Faults, SimConfig};
use std::collections::BTreeMap;

/// Every Parquet file of the warehouse: its path, with its size, modification time, ETag
/// (on a local store the ETag names the inode, so a rename-replaced file changes it) and
/// bytes.
type Stored = BTreeMap<String, (u64, String, Option<String>, bytes::Bytes)>;

async fn stored(engine: &Engine) -> Stored {
    let loc = &engine.warehouse;
    let metas: Vec<_> = loc
        .store()
        .list(None)
        .try_collect()
        .await
        .expect("list the warehouse");
    let mut out = Stored::new();
    for m in metas
        .into_iter()
        .filter(|m| m.location.extension() == Some("parquet"))
    {
        let bytes = loc
            .store()
            .get(&m.location)
            .await
            .expect("get a file")
            .bytes()
            .await
            .expect("read a file");
        out.insert(
            m.location.to_string(),
            (m.size, m.last_modified.to_rfc3339(), m.e_tag, bytes),
        );
    }
    out
}

/// Runs the windowed pipelines only, so the files and PUTs counted are theirs.
async fn run_tables(
    engine: &Engine,
) -> Result<Vec<sobot_sync::engine::run::Report>, sobot_sync::core::error::CommandError> {
    sobot_sync::app::run::run_pipelines(engine, &TABLES.map(String::from)).await
}

/// The paths whose file was written between `before` and `after` (new or replaced).
fn rewritten(before: &Stored, after: &Stored) -> Vec<String> {
    after
        .iter()
        .filter(|(path, now)| before.get(*path) != Some(*now))
        .map(|(path, _)| path.clone())
        .collect()
}

/// A rerun whose lookback windows fetch exactly the stored rows writes no file, and
/// commits its run and ledger.
async fn unchanged_lookback_writes_nothing(warehouse: Warehouse) {
    let start = t("2024-03-02T12:00:00+08:00");
    let now = t("2024-03-03T01:00:00+08:00");
    let rig = Rig::new(super::sim_ahead(now), warehouse, start).await;
    let engine = rig.engine(now);
    run_tables(&engine).await.expect("first run");
    let before = stored(&engine).await;
    assert!(!before.is_empty());
    let puts_before = rig.warehouse.parquet_puts();
    let mut first_runs = BTreeMap::new();
    for name in TABLES {
        let st = sobot_sync::app::setup::load_state(&engine.state, name)
            .await
            .expect("state")
            .expect("state exists");
        first_runs.insert(name, st.last_run.expect("a last run").run_id);
    }
    // Past the lag a moment later: no window is new, every lookback window is rerun.
    let reports = run_tables(&engine).await.expect("second run");
    for r in reports
        .iter()
        .filter(|r| TABLES.contains(&r.table.as_str()))
    {
        assert!(r.lookback_windows > 0, "{r:?}");
        assert_eq!(r.windows, r.lookback_windows, "{r:?}");
        assert_eq!(r.files, 0, "nothing written: {r:?}");
    }
    assert_eq!(
        rewritten(&before, &stored(&engine).await),
        Vec::<String>::new(),
        "no file rewritten"
    );
    assert_eq!(
        rig.warehouse.parquet_puts(),
        puts_before,
        "no PUT of a file"
    );
    for name in TABLES {
        let st = sobot_sync::app::setup::load_state(&engine.state, name)
            .await
            .expect("state")
            .expect("state exists");
        let run = st.last_run.expect("the second run is recorded");
        assert_ne!(
            run.run_id, first_runs[name],
            "{name}: the second run committed"
        );
        assert_eq!(run.outcome, Outcome::Success, "{name}");
        assert!(run.windows > 0, "{name}: its windows were committed");
        assert_eq!(run.files, 0, "{name}");
        let p = pipeline(&engine, name);
        let lookback_start = st.watermark - Duration::seconds(p.lookback_secs as i64);
        assert!(
            st.completed.covers(sobot_sync::io::state::model::Span {
                start: lookback_start.max(start),
                end: st.watermark,
            }),
            "{name}: the ledger covers the lookback"
        );
    }
    // The rows are still exactly the truth.
    let ds = rig.sim.dataset();
    let wm = watermark(&engine, "talks").await;
    let p = pipeline(&engine, "talks");
    truth::assert_exact(
        &table::read(&engine, "talks").await,
        &truth_of("talks", &ds, start, wm),
        &engine.grid(&p),
    );
}

local_and_s3!(
    unchanged_lookback_writes_nothing_local,
    unchanged_lookback_writes_nothing_s3 => unchanged_lookback_writes_nothing,
);

/// Late records make some lookback windows change: exactly those files are rewritten
/// (one PUT each on S3), with the late rows, and the others are left alone.
async fn changed_lookback_is_rewritten(warehouse: Warehouse) {
    let start = t("2024-03-02T12:00:00+08:00");
    let now1 = t("2024-03-03T01:00:00+08:00");
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
    let rig = Rig::new(config, warehouse, start).await;
    let engine = rig.engine(now1);
    run_tables(&engine).await.expect("run at now1");
    let before = stored(&engine).await;
    let puts_before = rig.warehouse.parquet_puts();
    // The simulator moves on, so the late records of the loaded windows are visible; the
    // engine's clock does not, so only lookback windows run.
    rig.sim.set_now(Some(now1 + Duration::hours(3)));
    let reports = run_tables(&engine).await.expect("lookback run");
    let after = stored(&engine).await;
    let changed = rewritten(&before, &after);
    let files: u64 = reports
        .iter()
        .filter(|r| TABLES.contains(&r.table.as_str()))
        .map(|r| r.files)
        .sum();
    assert!(!changed.is_empty(), "late records changed some windows");
    let lookback: u64 = reports
        .iter()
        .filter(|r| TABLES.contains(&r.table.as_str()))
        .map(|r| r.lookback_windows)
        .sum();
    assert!(
        (changed.len() as u64) < lookback,
        "lookback windows without late records were left alone: {changed:?}"
    );
    assert_eq!(changed.len() as u64, files, "{changed:?} {reports:?}");
    if let (Some(b), Some(a)) = (puts_before, rig.warehouse.parquet_puts()) {
        assert_eq!(a - b, changed.len() as u64, "one PUT per changed file");
    }
    // Every loaded window now holds its late rows too, exactly once.
    let ds = rig.sim.dataset();
    for name in TABLES {
        let wm = watermark(&engine, name).await;
        let p = pipeline(&engine, name);
        truth::assert_exact(
            &table::read(&engine, name).await,
            &truth_of(name, &ds, start, wm),
            &engine.grid(&p),
        );
    }
}

local_and_s3!(
    changed_lookback_is_rewritten_local,
    changed_lookback_is_rewritten_s3 => changed_lookback_is_rewritten,
);

/// A report's provisional period re-fetched with the same rows is not rewritten either.
async fn unchanged_report_refetch_writes_nothing(warehouse: Warehouse) {
    let start = t("2024-03-02T12:00:00+08:00");
    let now = t("2024-03-03T01:00:00+08:00");
    let rig = Rig::new(super::sim_ahead(now), warehouse, start).await;
    let engine = rig.engine(now);
    let names = ["report_agents_outbound".to_string()];
    sobot_sync::app::run::run_pipelines(&engine, &names)
        .await
        .expect("first run");
    let before = stored(&engine).await;
    assert!(!before.is_empty());
    let puts_before = rig.warehouse.parquet_puts();
    let reports = sobot_sync::app::run::run_pipelines(&engine, &names)
        .await
        .expect("second run");
    let r = &reports[0];
    assert!(
        r.lookback_windows > 0,
        "the provisional period is re-fetched: {r:?}"
    );
    assert_eq!(r.files, 0, "nothing written: {r:?}");
    assert_eq!(
        rewritten(&before, &stored(&engine).await),
        Vec::<String>::new()
    );
    assert_eq!(
        rig.warehouse.parquet_puts(),
        puts_before,
        "no PUT of a file"
    );
}

local_and_s3!(
    unchanged_report_refetch_writes_nothing_local,
    unchanged_report_refetch_writes_nothing_s3 => unchanged_report_refetch_writes_nothing,
);
