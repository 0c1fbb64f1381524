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

use super::definition::ReportDef;
use super::period::{Period, PeriodError};
use super::reconcile::{Comparison, Tolerance, Verdict, amount_vs_rows};
use super::{request, response, settle, table};
use crate::api::ApiClient;
use crate::convert::{self, BatchBuilder, RowMeta};
use crate::extract::{COMPLETENESS_ATTEMPTS, ExtractError};
use crate::pipeline::Pipeline;
use crate::plan::Window;
use crate::runner::{Engine, Mode, Report, RunError, WindowError};
use crate::sink::{self, WindowFile};
use crate::state::backfills;
use crate::state::model::{PipelineState, RunRecord, Span};
use crate::timeutil;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use tracing::Instrument; // issue 4

/// What a report run adds to the run report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportCounts {
    /// Provisional windows fetched again.
    pub refetched_windows: u64,
    /// Periods whose totals changed on a re-fetch (each logged with old and new totals).
    pub restated_periods: u64,
    /// Indicators whose `amount` differed from their rows beyond the tolerance.
    pub amount_mismatches: u64,
    /// Rows whose `result_date` could not be read (null period, `_errors`).
    pub unreadable_periods: u64,
}

impl std::fmt::Display for ReportCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} provisional windows re-fetched, {} periods restated, {} amount mismatches, {} unreadable result_date",
            self.refetched_windows,
            self.restated_periods,
            self.amount_mismatches,
            self.unreadable_periods
        )
    }
}

/// What the report's files are cut by; a change with state is refused like a change of
/// `window_secs` (old files would overlap or disagree with new ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ReportMeta {
    date_type: String,
    week_start: String,
}

/// The committed state of a report pipeline: the common state (watermark, ledger,
/// backfills, last run; what `status` reads) plus [`ReportMeta`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReportState {
    #[serde(flatten)]
    base: PipelineState,
    #[serde(default)]
    report: Option<ReportMeta>,
}

fn meta_of(def: &ReportDef) -> ReportMeta {
    ReportMeta {
        date_type: def.spec.date_type.as_str().to_string(),
        week_start: format!("{:?}", def.spec.week_start).to_lowercase(),
    }
}

fn window(p: &Period) -> Window {
    Window {
        start: p.start,
        end: p.end,
    }
}

/// A window of this run and why it is fetched.
#[derive(Debug, Clone, Copy)]
struct Task {
    window: Window,
    /// A new window at the watermark: moves it.
    advances: bool,
    /// A provisional window fetched again.
    refetch: bool,
}

/// One fetched window, converted.
struct Fetched {
    batch: RecordBatch,
    requests: u64,
    amount_mismatches: u64,
    unreadable_periods: u64,
    bad_values: usize,
}

fn config(p: &Pipeline, message: String) -> RunError {
    RunError::Config {
        pipeline: p.name.clone(),
        message,
    }
}

/// Runs a report pipeline whose lock the caller holds (`runner` dispatches here).
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
    tracing::info!(pipeline = %p.name, run_id, kind, windows = tasks.len(), provisional = refetches, watermark = %st.base.watermark.to_rfc3339(), "planned");
    if backfill_idx.is_some() {
        crate::obs::progress::planned(tasks.len() as u64); // issue 4: the backfill's bar
    }

    let mut report = Report {
        pipeline: p.name.clone(),
        table: p.table.clone(),
        ..Default::default()
    };
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
            .instrument(crate::obs::window_span(&p.name, kind, &task.window))
            .await;
        if r.is_ok() {
            crate::obs::metrics::window_duration(&engine.metric_label(p), started.elapsed());
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
        let written = match sink::write_window(&engine.warehouse, &file, &fetched.batch).await {
            Ok(wr) => wr,
            Err(e) => {
                failure = Some(fail(e.into()));
                break;
            }
        };
        if let Some(lost) = crate::runner::lock_lost(p, lost) {
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
            crate::obs::progress::advanced(1, fetched.batch.num_rows() as u64);
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
async fn log_restatements(
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

/// A report row and its period, as parsed from `result_date`.
type ParsedRow = (Map<String, Value>, Result<Period, PeriodError>);

/// The rows of one complete pass over a window's pages, with their parsed periods.
struct Pass {
    rows: Vec<ParsedRow>,
    amount: Option<Map<String, Value>>,
    total: u64,
    requests: u64,
    problem: Option<String>,
}

impl Pass {
    fn fetched(&self) -> u64 {
        self.rows.len() as u64
    }
}

/// A row's id: the family's id field (empty with `dimensions = 1`, whose rows are one
/// per period). `None` when it has no usable id.
fn row_id(def: &ReportDef, row: &Map<String, Value>) -> Option<String> {
    let id_field = super::spec::dimension_fields(def.spec.family)
        .first()
        .map_or("", |(f, _)| *f);
    match row.get(id_field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ if def.spec.dimensions == 1 => Some(String::new()),
        _ => None,
    }
}

/// A row's key: its period start and its id. `None` when it has no usable key.
fn row_key(
    def: &ReportDef,
    row: &Map<String, Value>,
    period: &Result<Period, PeriodError>,
) -> Option<(i64, String)> {
    let p = period.as_ref().ok()?;
    Some((p.start.timestamp_millis(), row_id(def, row)?))
}

/// The rows received, in the order of the answer, with their periods resolved together
/// (issue 13); and a problem if two of them have the same key.
fn resolve(
    def: &ReportDef,
    received: BTreeMap<u64, Map<String, Value>>,
) -> (Vec<ParsedRow>, Option<String>) {
    let rows: Vec<Map<String, Value>> = received.into_values().collect();
    let periods = table::row_periods(&rows, &def.period_grid(), |r| {
        row_id(def, r).unwrap_or_default()
    });
    let mut seen: HashMap<(i64, String), usize> = HashMap::new();
    let mut problem = None;
    for (i, (row, period)) in rows.iter().zip(&periods).enumerate() {
        if let Some(k) = row_key(def, row, period)
            && let Some(first) = seen.insert(k.clone(), i)
            && problem.is_none()
        {
            problem = Some(format!(
                "rows {first} and {i} of the answer have the same key (period_start {}, id {:?}): the pages changed while paging",
                DateTime::from_timestamp_millis(k.0)
                    .map_or_else(|| k.0.to_string(), |t| t.to_rfc3339()),
                k.1
            ));
        }
    }
    (rows.into_iter().zip(periods).collect(), problem)
}

/// One pass over the pages of a window's query.
async fn pass(
    client: &ApiClient,
    p: &Pipeline,
    def: &ReportDef,
    w: &Window,
) -> Result<Pass, ExtractError> {
    let shape = |page: u64, detail: String| ExtractError::Shape {
        endpoint: p.endpoint.clone(),
        page: u32::try_from(page).unwrap_or(u32::MAX),
        detail,
    };
    let mut out = Pass {
        rows: Vec::new(),
        amount: None,
        total: 0,
        requests: 0,
        problem: None,
    };
    // Rows by their place in the answer: a page read again replaces, never adds.
    let mut received: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
    let mut total: Option<u64> = None;
    let mut size = u64::from(def.spec.page_size.max(1));
    let mut page_num: u64 = 1;
    let mut max_requests: u64 = 64;
    loop {
        let page_no = u32::try_from(page_num).unwrap_or(u32::MAX);
        let mut body = request::page_body(&def.spec, def.tz, w.start, w.end, page_no)
            .map_err(|e| shape(page_num, e.to_string()))?;
        request::apply_filters(&mut body, &p.filters); // issue 13: `[filters]`
        if let Value::Object(m) = &mut body {
            m.insert("pageSize".into(), size.into());
        }
        let data = client
            .post(&p.endpoint, &body)
            .await
            .map_err(|source| ExtractError::Api {
                page: page_no,
                source,
            })?;
        out.requests += 1;
        let page = response::read_page(data).map_err(|e| shape(page_num, e.to_string()))?;
        match total {
            None => {
                total = Some(page.total);
                out.total = page.total;
                max_requests = 2 * (page.total / size + 1) + 32;
            }
            Some(t) if t != page.total => {
                out.problem = Some(format!(
                    "total changed from {t} to {} while paging",
                    page.total
                ));
                break;
            }
            Some(_) => {}
        }
        if out.amount.is_none() {
            out.amount = page.amount;
        }
        // The server's page size, when it says it capped ours.
        let eff = match page.page_size {
            Some(s) if s > 0 && s < size => s,
            _ => size,
        };
        size = eff;
        let n = page.rows.len() as u64;
        let page_start = (page_num - 1) * eff;
        for (i, row) in (0u64..).zip(page.rows) {
            received.insert(page_start + i, row);
        }
        if received.len() as u64 >= out.total || n == 0 {
            break;
        }
        if out.requests >= max_requests {
            out.problem = Some(format!("gave up after {} pages", out.requests));
            break;
        }
        // Next page: at or before the position after the last row received, so a short
        // page is re-read from where it stopped instead of skipped.
        let offset = page_start + n;
        let mut q = size;
        loop {
            let s = (offset / q) * q;
            if s > page_start {
                page_num = offset / q + 1;
                size = q;
                break;
            }
            if q == 1 {
                out.problem = Some("paging made no progress".into());
                break;
            }
            q -= 1;
        }
        if out.problem.is_some() {
            break;
        }
    }
    let (rows, duplicate) = resolve(def, received);
    out.rows = rows;
    if out.problem.is_none() && out.fetched() == out.total {
        out.problem = duplicate;
    }
    Ok(out)
}

/// Fetches one window completely and converts it (see the module documentation).
async fn fetch_window(
    client: &ApiClient,
    p: &Pipeline,
    def: &ReportDef,
    w: &Window,
    meta: &RowMeta,
    tolerance: Tolerance,
) -> Result<Fetched, ExtractError> {
    let mut requests = 0;
    let mut last = String::new();
    let mut complete = None;
    for attempt in 1..=COMPLETENESS_ATTEMPTS {
        let pass = pass(client, p, def, w).await?;
        requests += pass.requests;
        if pass.problem.is_none() && pass.fetched() == pass.total {
            complete = Some(pass);
            break;
        }
        last = format!(
            "fetched {} rows (counted by their place in the answer) but the API's total is {}{}",
            pass.fetched(),
            pass.total,
            pass.problem
                .as_ref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        );
        tracing::warn!(pipeline = %p.name, window = %w, attempt, "report incomplete, fetching the window again: {last}");
        if attempt == COMPLETENESS_ATTEMPTS {
            return Err(ExtractError::Incomplete {
                attempts: attempt,
                fetched: pass.fetched(),
                total: pass.total,
                detail: pass.problem.map(|x| format!(" ({x})")).unwrap_or_default(),
            });
        }
    }
    let Some(pass) = complete else {
        return Err(ExtractError::Incomplete {
            attempts: COMPLETENESS_ATTEMPTS,
            fetched: 0,
            total: 0,
            detail: last,
        });
    };

    let all: Vec<Map<String, Value>> = pass.rows.iter().map(|(r, _)| r.clone()).collect();
    let amount_mismatches = match &pass.amount {
        Some(amount) => {
            let comparisons = amount_vs_rows(amount, &all, &def.spec.indicators);
            log_amount(p, w, &comparisons, &tolerance)
        }
        None => {
            tracing::debug!(pipeline = %p.name, window = %w, "the report sent no amount: nothing to reconcile");
            0
        }
    };

    let kept: Vec<&ParsedRow> = pass
        .rows
        .iter()
        .filter(|(_, period)| match period {
            Ok(pp) => request::wanted(pp, w.start, w.end),
            Err(_) => true,
        })
        .collect();
    let mut bad = BTreeMap::new();
    let texts: Vec<String> = kept
        .iter()
        .enumerate()
        .map(|(i, (row, period))| {
            if let Err(e) = period {
                bad.insert(i, e.clone());
            }
            table::with_period(row, period.as_ref().ok())
        })
        .collect();
    let mut builder = BatchBuilder::new(&p.schema, def.tz, texts.len());
    for (i, text) in texts.iter().enumerate() {
        let record = crate::record::parse_record(text).map_err(|detail| ExtractError::Shape {
            endpoint: p.endpoint.clone(),
            page: 0,
            detail: format!("row {i}: {detail}"),
        })?;
        builder.push(&record);
    }
    let bad_values = builder.bad_values;
    let batch = builder.finish(meta)?;
    let batch = table::add_period_errors(&batch, &bad)?;
    if !bad.is_empty() {
        let first = bad
            .values()
            .next()
            .map(|e| e.to_string())
            .unwrap_or_default();
        tracing::warn!(pipeline = %p.name, window = %w, rows = bad.len(), "rows whose result_date cannot be read are kept with a null period (see _errors): {first}");
    }
    let batch = convert::assemble(&p.schema, &[batch])?;
    Ok(Fetched {
        batch,
        requests,
        amount_mismatches,
        unreadable_periods: bad.len() as u64,
        bad_values,
    })
}

/// Logs `amount` comparisons beyond the tolerance; returns how many there were.
fn log_amount(p: &Pipeline, w: &Window, comparisons: &[Comparison], tolerance: &Tolerance) -> u64 {
    let mut n = 0;
    for c in comparisons {
        match tolerance.verdict(c) {
            Verdict::Mismatch => {
                n += 1;
                tracing::warn!(
                    pipeline = %p.name,
                    window = %w,
                    indicator = %c.subject,
                    amount = c.expected.unwrap_or_default(),
                    rows_sum = c.actual.unwrap_or_default(),
                    tolerance = %tolerance,
                    "the report's amount differs from the sum of its rows"
                );
            }
            Verdict::Unknown => {
                tracing::debug!(pipeline = %p.name, window = %w, indicator = %c.subject, note = c.note.as_deref().unwrap_or(""), "amount not comparable");
            }
            Verdict::Equal | Verdict::WithinTolerance => {}
        }
    }
    n
}

/// What `status` shows for a report pipeline (`null`-free: absent for other kinds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettleRow {
    /// The report's period (`half_hour`, `hour`, `day`, `week`, `month`).
    pub date_type: String,
    pub settle_secs: u64,
    /// Every loaded period before this instant is final: it will not be fetched again.
    /// `None` before the first run.
    pub final_until: Option<DateTime<Utc>>,
    /// Loaded periods that may still change and are fetched again on every run.
    pub provisional: Option<Span>,
}

/// The settle status of a report pipeline, or `None` for other kinds.
pub fn settle_row(
    p: &Pipeline,
    st: Option<&PipelineState>,
    now: DateTime<Utc>,
) -> Option<SettleRow> {
    let def = p.report.as_deref()?;
    let grid = def.window_grid();
    let settle_secs = def.spec.settle_secs;
    let (final_until, provisional) = match st {
        None => (None, None),
        Some(st) => {
            let f = settle::final_until(&grid, settle_secs, now).min(st.watermark);
            let prov = settle::refetch_range(&grid, settle_secs, now, st.watermark)
                .map(|(start, end)| Span { start, end });
            (Some(f), prov)
        }
    };
    Some(SettleRow {
        date_type: def.spec.date_type.as_str().to_string(),
        settle_secs,
        final_until,
        provisional,
    })
}

/// The `status` line of a report pipeline.
pub fn render_settle(r: &SettleRow) -> String {
    let fin = r
        .final_until
        .map_or("never run".to_string(), |t| t.to_rfc3339());
    let prov = r.provisional.map_or("none".to_string(), |s| {
        format!("{} .. {}", s.start.to_rfc3339(), s.end.to_rfc3339())
    });
    format!(
        "  {} periods final until {fin}; provisional (re-fetched each run, settle {}s): {prov}\n",
        r.date_type, r.settle_secs
    )
}
