//! Runs one report pipeline: plan windows, fetch each completely, reconcile its `amount`,
//! write one file per window, commit. Restatement: windows whose periods are not yet
//! final are fetched again on every run and their files replaced.
//!
//! # Windows
//!
//! A window is one local day for half-hour, hour and day reports, and the period itself
//! for week and month reports ([`ReportDef::window_grid`]); its file is
//! `<table>/dt=<local date of its start>/<start>_<end>.parquet`. A window is first loaded
//! once `end + lag_secs <= now` and moves the watermark. From then on it is
//! *provisional* until `end + settle_secs <= now` (`report::settle`): every `run`
//! fetches the provisional windows again, before the new ones, and replaces their files.
//!
//! # One window
//!
//! The request covers exactly the window on the period grid (`report::request`), paged
//! by `currPage`/`pageSize` until the rows received reach the API's `total`. Rows are
//! counted as sent (issue 13): each by its place in the answer (`(currPage - 1) *
//! pageSize` + its index in the page), so a page read again replaces the rows it held,
//! and two rows with the same local labels (the two passes of a DST fall-back hour) are
//! two rows. The count must equal `total`, which must not change while paging. Then the
//! rows' periods are resolved together (`PeriodGrid::resolve_rows`, which tells the two
//! passes apart) and every key (`period_start` + the family's id; `dimensions = 1` has
//! no id) must be unique: a key sent twice means the pages moved under us. Otherwise the
//! window is fetched again, and after [`extract::COMPLETENESS_ATTEMPTS`] passes it fails
//! with the counts, as `extract` does for search windows.
//!
//! A row whose `result_date` cannot be read is kept with null period columns and an
//! `_errors` entry. It has no key, so it cannot be de-duplicated (it counts toward the
//! total like the keyless records of a search), and it cannot be placed against the
//! window's edges: it stays in the window that fetched it. Rows whose period lies outside
//! the window are counted and dropped.
//!
//! # `amount`
//!
//! Each fetch checks the report's `amount` against the sum of all its rows for every
//! additive indicator (`report::reconcile::amount_vs_rows`), with
//! `SOBOT_SYNC_RECONCILE_TOLERANCE`. A difference is logged as a warning and counted in
//! the run report, and the rows are still written: the rows are the API's data as
//! served, the `amount` is only the API's own summary of them, and failing the window
//! would stop the pipeline on every run until the API changed its answer.

pub use super::counts::ReportCounts;

use super::fetch::fetch_window;
use crate::core::convert::RowMeta;
use crate::core::pipeline::Pipeline;
use crate::core::plan::Window;
use crate::core::report::definition::ReportDef;
use crate::core::report::period::Period;
use crate::core::report::{settle, table};
use crate::core::timeutil;
use crate::engine::run::{Driver, Engine, Mode, Planned, Report, RunError, WindowError};
use crate::io::sink::{self, WindowFile};
use crate::io::state::backfills;
use crate::io::state::model::{PipelineState, RunRecord, Span};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use tracing::Instrument; // issue 4

/// What the report's files are cut by; a change with state is refused like a change of
/// `window_secs` (old files would overlap or disagree with new ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ReportMeta {
    pub(super) date_type: String,
    pub(super) week_start: String,
}

/// The committed state of a report pipeline: the common state (watermark, ledger,
/// backfills, last run; what `status` reads) plus [`ReportMeta`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ReportState {
    #[serde(flatten)]
    pub(super) base: PipelineState,
    #[serde(default)]
    pub(super) report: Option<ReportMeta>,
}

pub(super) fn meta_of(def: &ReportDef) -> ReportMeta {
    ReportMeta {
        date_type: def.spec.date_type.as_str().to_string(),
        week_start: format!("{:?}", def.spec.week_start).to_lowercase(),
    }
}

pub(super) fn window(p: &Period) -> Window {
    Window {
        start: p.start,
        end: p.end,
    }
}

/// A window of this run and why it is fetched.
#[derive(Debug, Clone, Copy)]
pub(super) struct Task {
    pub(super) window: Window,
    /// A new window at the watermark: moves it.
    pub(super) advances: bool,
    /// A provisional window fetched again.
    pub(super) refetch: bool,
}

pub(super) fn config(p: &Pipeline, message: String) -> RunError {
    RunError::Config {
        pipeline: p.name.clone(),
        message,
    }
}

/// Runs a report pipeline whose lock the caller holds (`engine::run::dispatch` hands it here).
pub async fn run_locked(
    engine: &Engine,
    p: &Pipeline,
    mode: Mode,
    run_id: &str,
    lost: &AtomicBool,
) -> Result<Report, RunError> {
    let def = p
        .report
        .as_deref()
        .ok_or_else(|| config(p, "kind = \"report\" without a [report] table".into()))?;
    let state_err = |source| RunError::State {
        pipeline: p.name.clone(),
        source,
    };
    let tz = engine.settings.timezone;
    let grid = def.window_grid();
    let now = engine.clock.now();
    let tolerance = engine.settings.reconcile_tolerance;
    let loaded = engine
        .state
        .load::<ReportState>(&p.name)
        .await
        .map_err(state_err)?;
    let (mut version, mut st) = match loaded {
        Some(v) => (Some(v.version), v.value),
        None => {
            let start = engine.settings.start.unwrap_or(p.initial_start);
            let base = PipelineState::new(
                &p.name,
                p.window_secs,
                tz.name(),
                grid.period_of(start).start,
            );
            (None, ReportState { base, report: None })
        }
    };
    let meta = meta_of(def);
    if st.base.timezone != tz.name() || st.report.as_ref().is_some_and(|m| *m != meta) {
        let was = st.report.as_ref().map_or_else(
            || "?".to_string(),
            |m| format!("{} ({} weeks)", m.date_type, m.week_start),
        );
        return Err(config(
            p,
            format!(
                "its state was loaded as {was} periods in {}, but the definition and settings now say {} ({} weeks) in {}; old files would disagree with new ones. Restore report.date_type / report.week_starts / SOBOT_TIMEZONE, or load into a new table and state",
                st.base.timezone,
                meta.date_type,
                meta.week_start,
                tz.name()
            ),
        ));
    }
    st.report = Some(meta);
    let settle_secs = def.spec.settle_secs;
    let lag = Duration::seconds(i64::try_from(p.lag_secs).unwrap_or(i64::MAX / 2));
    let due = |w: &Period| w.end + lag <= now;

    let (tasks, kind, backfill_idx) = match mode {
        Mode::Incremental => {
            let mut tasks = Vec::new();
            if let Some((a, b)) = settle::refetch_range(&grid, settle_secs, now, st.base.watermark)
            {
                for w in grid.periods(a, b) {
                    if st.base.completed.covers(Span::from(window(&w))) {
                        tasks.push(Task {
                            window: window(&w),
                            advances: false,
                            refetch: true,
                        });
                    }
                }
            }
            let mut w = grid.period_of(st.base.watermark);
            while due(&w) {
                tasks.push(Task {
                    window: window(&w),
                    advances: true,
                    refetch: false,
                });
                w = grid.period_of(w.end);
            }
            (tasks, "run", None)
        }
        Mode::Backfill { from, to } => {
            if from >= to {
                return Err(config(
                    p,
                    format!("backfill range is empty: --from {from} is not before --to {to}"),
                ));
            }
            let from = grid.period_of(from).start;
            let last = grid.period_of(to - Duration::milliseconds(1));
            let to = last.end;
            if !due(&last) {
                return Err(config(
                    p,
                    format!(
                        "backfill --to {} is later than now minus the pipeline's lag; use run for recent data",
                        to.to_rfc3339()
                    ),
                ));
            }
            let (idx, done) = backfills::open(&mut st.base, from, to);
            let tasks = grid
                .periods(from, to)
                .filter(|w| !done.covers(Span::from(window(w))))
                .map(|w| Task {
                    window: window(&w),
                    advances: false,
                    refetch: false,
                })
                .collect();
            (tasks, "backfill", Some(idx))
        }
    };

    st.base.last_run = Some(RunRecord::running(run_id, kind, Utc::now()));
    version = Some(
        engine
            .state
            .commit(&p.name, version, &st)
            .await
            .map_err(state_err)?,
    );
    let refetches = tasks.iter().filter(|t| t.refetch).count();
    let mut report = Reports.planned(
        p,
        run_id,
        Planned {
            kind,
            windows: tasks.len(),
            watermark: st.base.watermark,
            provisional: Some(refetches as u64),
            backfill: backfill_idx.is_some(),
        },
    );
    let mut counts = ReportCounts::default();
    let extracted_at = Utc::now().timestamp_millis();
    let mut results = futures::stream::iter(tasks.iter().copied().map(|task| async move {
        let meta = RowMeta {
            run_id: run_id.to_string(),
            extracted_at_ms: extracted_at,
            window_start_ms: task.window.start.timestamp_millis(),
            window_end_ms: task.window.end.timestamp_millis(),
        };
        // issue 4: a `window` span and the window duration histogram.
        let started = std::time::Instant::now();
        let r = fetch_window(&engine.client, p, def, &task.window, &meta, tolerance)
            .instrument(crate::engine::observe::window_span(
                &p.name,
                kind,
                &task.window,
            ))
            .await;
        if r.is_ok() {
            crate::io::obs::metrics::window_duration(&engine.metric_label(p), started.elapsed());
        }
        (task, r)
    }))
    .buffered(engine.settings.window_concurrency.max(1));

    let mut failure: Option<RunError> = None;
    while let Some((task, result)) = results.next().await {
        let w = task.window;
        // Shutdown (`daemon`): stop between commits; this window is loaded by the next run.
        if engine.stop.is_cancelled() {
            failure = Some(RunError::Stopped {
                pipeline: p.name.clone(),
                next: w.start,
            });
            break;
        }
        let fail = |source: WindowError| RunError::Window {
            pipeline: p.name.clone(),
            window: w,
            source,
        };
        let fetched = match result {
            Ok(f) => f,
            Err(e) => {
                failure = Some(fail(e.into()));
                break;
            }
        };
        let file = WindowFile {
            table: p.table.clone(),
            dt: timeutil::local_date(tz, w.start),
            start: w.start,
            end: w.end,
        };
        let restated = log_restatements(engine, p, def, &file, &fetched.batch).await;
        // issue 15: a re-fetched period whose rows did not change is not rewritten.
        let written = match sink::write_window_unless_unchanged(
            &engine.warehouse,
            &file,
            &fetched.batch,
            task.refetch,
        )
        .await
        {
            Ok(wr) => wr,
            Err(e) => {
                failure = Some(fail(e.into()));
                break;
            }
        };
        if let Some(lost) = crate::engine::run::lock_lost(p, lost) {
            failure = Some(lost);
            break;
        }
        st.base.completed.add(Span::from(w));
        if task.advances && w.start == st.base.watermark {
            st.base.watermark = w.end;
        }
        if let Some(i) = backfill_idx {
            backfills::done(&mut st.base, i, w);
        }
        report.windows += 1;
        report.lookback_windows += u64::from(task.refetch);
        report.rows += fetched.batch.num_rows() as u64;
        report.requests += fetched.requests;
        report.files += u64::from(written.is_some());
        counts.refetched_windows += u64::from(task.refetch);
        counts.restated_periods += restated;
        counts.amount_mismatches += fetched.amount_mismatches;
        counts.unreadable_periods += fetched.unreadable_periods;
        if fetched.bad_values > 0 {
            tracing::warn!(pipeline = %p.name, window = %w, values = fetched.bad_values, "values that could not be converted are null; see _errors");
        }
        if let Some(r) = st.base.last_run.as_mut() {
            r.windows = report.windows;
            r.rows = report.rows;
            r.files = report.files;
        }
        version = Some(
            engine
                .state
                .commit(&p.name, version, &st)
                .await
                .map_err(state_err)?,
        );
        if backfill_idx.is_some() {
            crate::io::obs::progress::advanced(1, fetched.batch.num_rows() as u64);
        }
    }
    drop(results);

    if let Some(i) = backfill_idx {
        let b = &mut st.base.backfills[i];
        if failure.is_none()
            && grid
                .periods(b.from, b.to)
                .all(|w| b.done.covers(Span::from(window(&w))))
        {
            b.finished_at = Some(Utc::now());
        }
    }
    st.base.trim_backfills();
    st.base.record_requests(engine.api_usage()); // issue 15
    st.base.close_run(failure.as_ref().map(|e| e.to_string()));
    report.watermark = Some(st.base.watermark);
    if counts.restated_periods > 0 || counts.amount_mismatches > 0 {
        tracing::warn!(pipeline = %p.name, "{counts}");
    }
    report.report = Some(counts);
    let committed = engine.state.commit(&p.name, version, &st).await;
    if let Some(f) = failure {
        return Err(f);
    }
    committed.map_err(state_err)?;
    Ok(report)
}

/// Compares the file a window is about to replace with its new rows, period by period,
/// and logs every period whose totals changed (old and new value of each indicator that
/// differs). Returns the number of changed periods. Reading the old file is best effort:
/// a file that cannot be read is logged and the write goes ahead.
pub(super) async fn log_restatements(
    engine: &Engine,
    p: &Pipeline,
    def: &ReportDef,
    file: &WindowFile,
    batch: &RecordBatch,
) -> u64 {
    let mut names: Vec<&str> = vec![table::PERIOD_START];
    names.extend(
        def.spec
            .indicators
            .iter()
            .filter(|i| i.is_additive())
            .map(|i| i.name.as_str()),
    );
    let old = match super::warehouse::read_columns(&engine.warehouse, &file.relative_path(), &names)
        .await
    {
        Ok(Some(batches)) => batches,
        Ok(None) => return 0,
        Err(e) => {
            tracing::warn!(pipeline = %p.name, "cannot read the stored window to compare totals: {e}");
            return 0;
        }
    };
    let mut before = BTreeMap::new();
    for b in &old {
        for (period, sums) in table::period_totals(&def.spec, b) {
            let e: &mut BTreeMap<String, f64> = before.entry(period).or_default();
            for (k, v) in sums {
                *e.entry(k).or_default() += v;
            }
        }
    }
    let after = table::period_totals(&def.spec, batch);
    let changes = table::changes(&before, &after);
    for c in &changes {
        let period = DateTime::from_timestamp_millis(c.period_start_ms)
            .map_or_else(|| c.period_start_ms.to_string(), |t| t.to_rfc3339());
        let shown: Vec<String> = c
            .indicators
            .iter()
            .map(|(name, old, new)| format!("{name}: {old} -> {new}"))
            .collect();
        tracing::warn!(pipeline = %p.name, table = %p.table, period = %period, changes = %shown.join(", "), "report period restated: totals changed since the last fetch");
    }
    changes.len() as u64
}

/// Runs `report` pipelines.
pub struct Reports;

impl Driver for Reports {
    async fn run(
        &self,
        engine: &Engine,
        p: &Pipeline,
        mode: Mode,
        run_id: &str,
        lost: &std::sync::atomic::AtomicBool,
    ) -> Result<Report, RunError> {
        run_locked(engine, p, mode, run_id, lost).await
    }
}
