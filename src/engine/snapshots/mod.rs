//! Pipelines that are not time-windowed searches (issue 3, parts 5-7):
//!
//! - `reference` ([`reference`]): a small list fetched whole and stored as the table's
//!   single current file on each run (`indicator_plans`).
//! - `snapshot` ([`snapshot`]): a paged live view stored once per interval of
//!   `window_secs` (`agent_metrics`); a rerun in the same interval replaces it.
//! - `recordings` ([`recordings`]): files named by the records of a parent's committed
//!   windows, downloaded into the object store beside a table of what was stored.
//!
//! They share the engine (API client, warehouse, state store, clock) and the committed
//! state model with the windowed pipelines, so `status` and locks work the same; the
//! dispatcher (`engine::run::dispatch`) hands these kinds to [`Snapshots`].

pub mod recordings;
pub mod reference;
pub mod snapshot;

use crate::core::convert::{self, BatchBuilder, RowMeta};
use crate::core::pipeline::{Kind, Pipeline};
use crate::core::plan::Window;
use crate::engine::extract::ExtractError;
use crate::engine::run::{Engine, Mode, Report, RunError, WindowError};
use crate::io::sink::{self, WindowFile};
use crate::io::state::model::PipelineState;
use crate::io::state::store::StateError;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::sync::atomic::AtomicBool;

/// Runs a `reference`, `snapshot` or `recordings` pipeline whose lock the caller holds;
/// `lost` is set when the lock could not be renewed (nothing is committed then).
pub async fn run(
    engine: &Engine,
    p: &Pipeline,
    mode: Mode,
    run_id: &str,
    lost: &AtomicBool,
) -> Result<Report, RunError> {
    match p.kind {
        Kind::Reference | Kind::Snapshot => snapshot::run(engine, p, mode, run_id, lost).await,
        Kind::Recordings => recordings::run(engine, p, mode, run_id, lost).await,
        Kind::Search | Kind::Children | Kind::Report => Err(RunError::Config {
            pipeline: p.name.clone(),
            message: "internal: a windowed search pipeline was handed to the snapshot driver"
                .into(),
        }),
    }
}

/// A pipeline's committed state and its version, or a fresh state starting at `start`;
/// refuses a state cut on another grid, as the runner does (old files would overlap or
/// be replaced by new ones).
pub(crate) async fn load_state(
    engine: &Engine,
    p: &Pipeline,
    start: DateTime<Utc>,
) -> Result<(Option<u64>, PipelineState), RunError> {
    let loaded = engine
        .state
        .load::<PipelineState>(&p.name)
        .await
        .map_err(|source| state_err(p, source))?;
    let (version, st) = match loaded {
        Some(v) => (Some(v.version), v.value),
        None => (
            None,
            PipelineState::new(
                &p.name,
                p.window_secs,
                engine.settings.timezone.name(),
                start,
            ),
        ),
    };
    if st.window_secs != p.window_secs || st.timezone != engine.settings.timezone.name() {
        return Err(RunError::Config {
            pipeline: p.name.clone(),
            message: format!(
                "its state was cut on {}-second intervals in {}, but the definition and settings now say {}-second intervals in {}; old files would overlap new ones. Restore window_secs / SOBOT_TIMEZONE, or load into a new warehouse and SOBOT_SYNC_STATE",
                st.window_secs,
                st.timezone,
                p.window_secs,
                engine.settings.timezone.name()
            ),
        });
    }
    Ok((version, st))
}

pub(crate) fn state_err(p: &Pipeline, source: StateError) -> RunError {
    RunError::State {
        pipeline: p.name.clone(),
        source,
    }
}

/// Closes `st.last_run` with the outcome and commits it, after a failure too (so
/// `status` shows the error); the failure, if any, is what the caller gets back.
pub(crate) async fn finish(
    engine: &Engine,
    p: &Pipeline,
    version: Option<u64>,
    mut st: PipelineState,
    mut report: Report,
    failure: Option<RunError>,
) -> Result<Report, RunError> {
    if let Some(r) = st.last_run.as_mut() {
        r.windows = report.windows;
        r.rows = report.rows;
        r.files = report.files;
    }
    st.record_requests(engine.api_usage()); // issue 15
    st.close_run(failure.as_ref().map(ToString::to_string));
    report.watermark = Some(st.watermark);
    let committed = engine.state.commit(&p.name, version, &st).await;
    if let Some(f) = failure {
        return Err(f);
    }
    committed.map_err(|source| state_err(p, source))?;
    Ok(report)
}

pub(crate) use crate::engine::run::lock_lost;

/// Converts JSON records (built here, not read from a page) into one sorted batch of
/// the pipeline's table: records go through the same coercion as API pages, so the
/// column rules (`_extra`, `_errors`, trimming) are the same.
pub(crate) fn to_batch(
    engine: &Engine,
    p: &Pipeline,
    records: &[Map<String, Value>],
    w: &Window,
    run_id: &str,
) -> Result<RecordBatch, ExtractError> {
    let tz = engine.settings.timezone;
    let mut builder = BatchBuilder::new(&p.schema, tz, records.len());
    for rec in records {
        let text = Value::Object(rec.clone()).to_string();
        let raw =
            crate::core::record::parse_record(&text).map_err(|detail| ExtractError::Shape {
                endpoint: p.endpoint.clone(),
                page: 0,
                detail,
            })?;
        builder.push(&raw);
    }
    if builder.bad_values > 0 {
        tracing::warn!(pipeline = %p.name, values = builder.bad_values, "values that could not be converted are null; see _errors");
    }
    let meta = RowMeta {
        run_id: run_id.to_string(),
        extracted_at_ms: Utc::now().timestamp_millis(),
        window_start_ms: w.start.timestamp_millis(),
        window_end_ms: w.end.timestamp_millis(),
    };
    let batch = builder.finish(&meta)?;
    Ok(convert::assemble(&p.schema, &[batch])?)
}

/// Writes one interval's (or window's) rows as its file; `None` when there are none.
pub(crate) async fn write(
    engine: &Engine,
    p: &Pipeline,
    w: &Window,
    batch: &RecordBatch,
) -> Result<(WindowFile, Option<sink::Written>), WindowError> {
    let file = WindowFile {
        table: p.table.clone(),
        dt: engine.grid(p).dt(w),
        start: w.start,
        end: w.end,
    };
    // issue 4 privacy: every reference, snapshot and recordings file passes here.
    let batch =
        &crate::core::privacy::protect(&p.schema, engine.settings.pii_key.as_ref(), batch.clone())?;
    let written = sink::write_window(&engine.warehouse, &file, batch).await?;
    Ok((file, written))
}

/// The page's list of records under any of the names the API uses.
pub(crate) fn list_of(obj: &Map<String, Value>) -> Option<&Vec<Value>> {
    ["list", "pageData", "records", "rows"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_array))
}

/// A count from a number or a numeric string.
pub(crate) fn count_of(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Runs `reference`, `snapshot` and `recordings` pipelines.
pub struct Snapshots;

impl crate::engine::run::Driver for Snapshots {
    async fn run(
        &self,
        engine: &Engine,
        p: &Pipeline,
        mode: Mode,
        run_id: &str,
        lost: &std::sync::atomic::AtomicBool,
    ) -> Result<Report, RunError> {
        run(engine, p, mode, run_id, lost).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_lists_are_read_liberally() {
        assert_eq!(count_of(Some(&Value::from(" 12 "))), Some(12));
        assert_eq!(count_of(Some(&Value::from(3))), Some(3));
        assert_eq!(count_of(Some(&Value::from(-3))), None);
        assert_eq!(count_of(None), None);
        let o: Map<String, Value> =
            serde_json::from_str(r#"{"pageData": [{"a": 1}]}"#).unwrap_or_default();
        assert_eq!(list_of(&o).map(Vec::len), Some(1));
    }
}
