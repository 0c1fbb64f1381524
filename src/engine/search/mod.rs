//! The search and children driver: plan -> (extract -> convert -> write) per window ->
//! commit, windows extracted on parallel lanes and committed in window order.
//!
//! A file holds one window, or in a backfill a run of consecutive windows of one `dt`
//! partition ([`group`]).
//!
//! The state is committed after every file, in window order, with a conditional put:
//! the watermark only ever moves past a window whose file is written and whose count
//! matched the API's total. A failure leaves every earlier window committed and the
//! watermark at the failed window's start.

use crate::core::convert::RowMeta;
use crate::core::pipeline::{Kind, Pipeline};
use crate::core::plan::{self, Grid, Window};
use crate::engine::abort::AbortOnDrop;
use crate::engine::extract::{self, ExtractError, Extracted};
use crate::engine::run::{Driver, Engine, Mode, Planned, Report, RunError, WindowError, lock_lost};
use crate::io::sink::{self, WindowFile};
use crate::io::state::backfills;
use crate::io::state::model::{PipelineState, RunRecord, Span, Waiting};
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tracing::Instrument;

mod group;

use group::{Group, Unit, blocking, done_counts};

/// Runs `search` and `children` pipelines.
pub struct Windows;

impl Driver for Windows {
    async fn run(
        &self,
        engine: &Engine,
        p: &Pipeline,
        mode: Mode,
        run_id: &str,
        lost: &AtomicBool,
    ) -> Result<Report, RunError> {
        engine.run_windows(p, mode, run_id, lost).await
    }
}

/// A window extracted and waiting, in its group, to be written and committed.
struct WindowDone {
    task: Task,
    rows: u64,
    requests: u64,
    /// issue 15, children: the window's parent digest, committed with it.
    parents: Option<String>,
}

/// A backfill writes consecutive windows of one `dt` partition as one file, up to this
/// much encoded data held in memory: a day of hourly windows is one file instead of 24,
/// which readers prefer and which costs far less to encode, while memory stays bounded
/// however long the range is.
const GROUP_MAX_BYTES: usize = 16 << 20;

/// Finished windows that may wait, per lane, for an earlier window still extracting.
/// They hold decoded rows, so this bounds memory; 3 kept both lanes busy in the
/// benchmark where windows range from one page to several.
const WINDOWS_WAITING_PER_LANE: usize = 3;

/// A task of a run: a window and whether it moves the watermark.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Task {
    pub(crate) window: Window,
    pub(crate) advances: bool,
}

/// The windows a run of `p` loads, in order, whether each moves the watermark, the run's
/// kind, and the backfill ledger entry it opens in `st`. The driver and `--dry-run`'s
/// estimate (`engine::estimate`) share it, so an estimate plans exactly what a run would
/// (and refuses what a run refuses).
// `RunError` is what every driver returns; a planning error happens once per run at most,
// so these helpers return it as their callers do rather than boxed.
#[allow(clippy::result_large_err)]
pub(crate) fn plan_tasks(
    p: &Pipeline,
    grid: &Grid,
    st: &mut PipelineState,
    mode: Mode,
    now: DateTime<Utc>,
) -> Result<(Vec<Task>, &'static str, Option<usize>), RunError> {
    let limit = now - Duration::seconds(p.lag_secs as i64);
    Ok(match mode {
        Mode::Incremental => {
            let completed = st.completed.clone();
            let plan =
                plan::incremental(grid, st.watermark, now, p.lag_secs, p.lookback_secs, &|w| {
                    completed.covers(Span::from(*w))
                });
            let mut tasks: Vec<Task> = plan
                .new
                .iter()
                .map(|&window| Task {
                    window,
                    advances: true,
                })
                .collect();
            tasks.extend(plan.lookback.iter().map(|&window| Task {
                window,
                advances: false,
            }));
            (tasks, "run", None)
        }
        Mode::Backfill { from, to } => {
            if from >= to {
                return Err(RunError::Config {
                    pipeline: p.name.clone(),
                    message: format!(
                        "backfill range is empty: --from {from} is not before --to {to}"
                    ),
                });
            }
            let from = grid.floor(from);
            let to = grid.ceil(to);
            if to > limit {
                return Err(RunError::Config {
                    pipeline: p.name.clone(),
                    message: format!(
                        "backfill --to {} is later than now minus the pipeline's lag ({}); use run for recent data",
                        to.to_rfc3339(),
                        limit.to_rfc3339()
                    ),
                });
            }
            let (idx, done) = backfills::open(st, from, to);
            let tasks = grid
                .windows(from, to)
                .into_iter()
                .filter(|w| !done.covers(Span::from(*w)))
                .map(|window| Task {
                    window,
                    advances: false,
                })
                .collect();
            (tasks, "backfill", Some(idx))
        }
    })
}

/// issue 15: splits a child run's tasks into those whose windows the parent has committed
/// and the rest, which wait for a later run. A backfill needs its whole range committed
/// by the parent, as `recordings` does: it is refused otherwise, naming the first window.
#[allow(clippy::result_large_err)]
fn gate(
    p: &Pipeline,
    parent: &Pipeline,
    parent_state: Option<&PipelineState>,
    tasks: Vec<Task>,
    backfill: bool,
) -> Result<(Vec<Task>, Option<Waiting>), RunError> {
    let covered = |w: &Window| parent_state.is_some_and(|s| s.completed.covers(Span::from(*w)));
    if backfill {
        if let Some(t) = tasks.iter().find(|t| !covered(&t.window)) {
            return Err(RunError::Config {
                pipeline: p.name.clone(),
                message: format!(
                    "{parent} has not loaded window {w}; children are read for the parents {parent} committed, so backfill {parent} over the range first",
                    parent = parent.name,
                    w = t.window
                ),
            });
        }
        return Ok((tasks, None));
    }
    let mut ready = Vec::with_capacity(tasks.len());
    let mut held: Vec<Window> = Vec::new();
    let mut blocked = false;
    for t in tasks {
        // Windows that move the watermark run in order: after the first one held back,
        // the rest wait too.
        let ok = covered(&t.window) && !(t.advances && blocked);
        if ok {
            ready.push(t);
        } else {
            blocked |= t.advances;
            held.push(t.window);
        }
    }
    let waiting = held.iter().map(|w| w.start).min().map(|from| Waiting {
        parent: parent.name.clone(),
        windows: held.len() as u64,
        from,
    });
    Ok((ready, waiting))
}

impl Engine {
    /// The parent of a `children` pipeline (`None` for other kinds); an undefined parent
    /// is a definition error.
    #[allow(clippy::result_large_err)]
    pub(crate) fn parent_of(&self, p: &Pipeline) -> Result<Option<&Pipeline>, RunError> {
        Ok(match (&p.kind, &p.parent) {
            (Kind::Children, Some(name)) => {
                Some(self.catalog.get(name).ok_or_else(|| RunError::Config {
                    pipeline: p.name.clone(),
                    message: format!("parent pipeline {name:?} is not defined"),
                })?)
            }
            _ => None,
        })
    }
}

impl Engine {
    /// The search and children driver: plans the windows, extracts them on lanes, and
    /// writes and commits them in window order.
    pub(crate) async fn run_windows(
        &self,
        p: &Pipeline,
        mode: Mode,
        run_id: &str,
        lost: &AtomicBool,
    ) -> Result<Report, RunError> {
        let state_err = |source| RunError::State {
            pipeline: p.name.clone(),
            source,
        };
        let grid = self.grid(p);
        let now = self.clock.now();
        let loaded = self
            .state
            .load::<PipelineState>(&p.name)
            .await
            .map_err(state_err)?;
        let (mut version, mut st) = match loaded {
            Some(v) => (Some(v.version), v.value),
            None => (None, self.initial_state(p)),
        };
        if st.window_secs != p.window_secs || st.timezone != self.settings.timezone.name() {
            return Err(RunError::Config {
                pipeline: p.name.clone(),
                message: format!(
                    "its state was cut on {}-second windows in {}, but the definition and settings now say {}-second windows in {}; old files would overlap new ones. Restore window_secs / SOBOT_TIMEZONE, or load into a new warehouse and SOBOT_SYNC_STATE",
                    st.window_secs,
                    st.timezone,
                    p.window_secs,
                    self.settings.timezone.name()
                ),
            });
        }
        let parent = self.parent_of(p)?;
        let (tasks, kind, backfill_idx) = plan_tasks(p, &grid, &mut st, mode, now)?;
        // issue 15: a child window runs once its parent has committed it, from the rows
        // the parent committed.
        let (tasks, waiting, children) = match parent {
            Some(parent) => {
                let parent_state = self
                    .state
                    .load::<PipelineState>(&parent.name)
                    .await
                    .map_err(state_err)?
                    .map(|v| v.value);
                let (ready, waiting) = gate(
                    p,
                    parent,
                    parent_state.as_ref(),
                    tasks,
                    backfill_idx.is_some(),
                )?;
                let digests = backfill_idx.is_none().then_some(&st.parents);
                let run =
                    crate::engine::children::ChildRun::new(p, parent, self.grid(parent), digests)
                        .map_err(|message| RunError::Config {
                        pipeline: p.name.clone(),
                        message,
                    })?;
                (ready, waiting, Some(Arc::new(run)))
            }
            None => (tasks, None, None),
        };
        if let Some(w) = &waiting {
            tracing::info!(pipeline = %p.name, parent = %w.parent, windows = w.windows, from = %w.from.to_rfc3339(), "windows wait for the parent to commit them");
        }
        let horizon =
            st.watermark - Duration::seconds(p.lookback_secs as i64 + p.window_secs as i64);

        let started = Utc::now();
        st.last_run = Some(RunRecord::running(run_id, kind, started));
        if let Some(r) = st.last_run.as_mut() {
            r.waiting = waiting.clone();
        }
        version = Some(
            crate::io::state::rebase::commit(&self.state, &p.name, version, &mut st)
                .await
                .map_err(state_err)?,
        );
        let mut report = Windows.planned(
            p,
            run_id,
            Planned {
                kind,
                windows: tasks.len(),
                watermark: st.watermark,
                provisional: None,
                backfill: backfill_idx.is_some(),
            },
        );
        let window_concurrency = self.settings.window_concurrency.max(1);
        // Each window is extracted on a task of its own, so the decoding of windows in
        // flight spreads over the runtime's threads instead of sharing this one.
        // At most `window_concurrency` windows extract at once (one lane each, taken in
        // window order before the window's task starts), but finished windows may wait
        // behind a slower earlier one: with plain ordered buffering, one window of many
        // pages held the other lanes idle. Results still leave in window order, and the
        // finished ones waiting are bounded.
        let lanes = Arc::new(tokio::sync::Semaphore::new(window_concurrency));
        report.waiting = waiting;
        let shared = Arc::new((self.clone(), p.clone(), children, run_id.to_string()));
        let mut results = Box::pin(
            futures::stream::iter(tasks.iter().copied())
                .then(|task| {
                    let (shared, lanes) = (shared.clone(), lanes.clone());
                    let span = crate::engine::observe::window_span(&p.name, kind, &task.window); // issue 4
                    async move {
                        // The semaphore is never closed, so this only waits for a lane.
                        let lane = lanes.acquire_owned().await.ok();
                        let handle = AbortOnDrop(tokio::spawn(
                            async move {
                                let _lane = lane;
                                let (engine, p, children, run_id) = &*shared;
                                engine
                                    .extract_window(p, children.as_deref(), task.window, run_id)
                                    .await
                            }
                            .instrument(span),
                        ));
                        (task, handle)
                    }
                })
                .map(|(task, handle)| async move {
                    let result = match handle.join().await {
                        Ok(r) => r,
                        Err(join) => {
                            Err(WindowError::Extract(ExtractError::Task(join.to_string())))
                        }
                    };
                    (task, result)
                })
                .buffered(window_concurrency * (1 + WINDOWS_WAITING_PER_LANE)),
        );
        // Only a backfill groups windows into wider files: an incremental run writes few
        // windows, and its lookback windows would otherwise rewrite a wider file each run.
        let grouping = backfill_idx.is_some();

        // Encoding, writing and committing run in a future of their own beside the one
        // driving the extraction: a `buffered` stream only makes progress while it is
        // polled, so encoding or writing in the same loop would stop every window in
        // flight for each file (an encode, a put) and each commit (a listing, a
        // conditional create). Extracted windows queue here, in order.
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Unit>(window_concurrency + 4);
        let failure = {
            let producer = async move {
                while let Some((task, result)) = results.next().await {
                    let unit = match result {
                        Ok(ex) => Unit::Window(task, ex),
                        Err(e) => Unit::Failed(task, e),
                    };
                    let stop = matches!(unit, Unit::Failed(..));
                    if done_tx.send(unit).await.is_err() || stop {
                        return;
                    }
                }
            };
            let consumer = async {
                let mut open: Option<Group> = None;
                let mut failure: Option<RunError> = None;
                loop {
                    let next = done_rx.recv().await;
                    // A group is complete when the next window cannot join it, when a
                    // window failed (the ones before it are good), or at the end.
                    let joins = match (&next, &open) {
                        (Some(Unit::Window(task, _)), Some(g)) => {
                            grouping && g.takes(grid.dt(&task.window), task)
                        }
                        _ => false,
                    };
                    if !joins && let Some(g) = open.take() {
                        let first = g.done[0].task.window;
                        let file = WindowFile {
                            table: p.table.clone(),
                            dt: g.dt,
                            start: g.start,
                            end: g.end,
                        };
                        let done = g.done;
                        // issue 15: a lookback window alone in its file may find its rows
                        // already stored; then nothing is written, and its ledger entry is
                        // committed all the same.
                        let lookback = done.len() == 1 && !done[0].task.advances && !grouping;
                        let written = match self.finish_group(&file, g.encoder, lookback).await {
                            Ok(w) => w,
                            Err(source) => {
                                failure = Some(RunError::Window {
                                    pipeline: p.name.clone(),
                                    window: first,
                                    source,
                                });
                                break;
                            }
                        };
                        if let Some(lost) = lock_lost(p, lost) {
                            failure = Some(lost);
                            break;
                        }
                        for done in &done {
                            let (task, w) = (done.task, done.task.window);
                            st.completed.add(Span::from(w));
                            if task.advances && w.start == st.watermark {
                                st.watermark = w.end;
                            }
                            if let Some(i) = backfill_idx {
                                backfills::done(&mut st, i, w);
                            }
                            if let Some(digest) = &done.parents {
                                st.record_parents(w, digest.clone(), horizon);
                            }
                            report.windows += 1;
                            if !task.advances && backfill_idx.is_none() {
                                report.lookback_windows += 1;
                            }
                            report.rows += done.rows;
                            report.requests += done.requests;
                        }
                        report.files += u64::from(written.is_some());
                        if let Some(r) = st.last_run.as_mut() {
                            r.windows = report.windows;
                            r.rows = report.rows;
                            r.files = report.files;
                            r.api_requests = self.api_usage(); // issue 15
                        }
                        version = Some(
                            crate::io::state::rebase::commit(
                                &self.state,
                                &p.name,
                                version,
                                &mut st,
                            )
                            .await
                            .map_err(state_err)?,
                        );
                        tracing::debug!(pipeline = %p.name, from = %file.start.to_rfc3339(), to = %file.end.to_rfc3339(), windows = done.len(), "windows committed");
                        crate::engine::observe::committed(
                            p,
                            &self.metric_label(p),
                            &done_counts(&done),
                            written.is_some(),
                            st.watermark,
                            self.clock.now(),
                            backfill_idx.is_some(),
                        ); // issue 4
                        // issue 4 (daemon): shutdown stops here, between commits.
                        if self.stop.is_cancelled() && next.is_some() {
                            failure = Some(RunError::Stopped {
                                pipeline: p.name.clone(),
                                next: file.end,
                            });
                            break;
                        }
                    }
                    match next {
                        None => break,
                        Some(Unit::Failed(task, source)) => {
                            failure = Some(RunError::Window {
                                pipeline: p.name.clone(),
                                window: task.window,
                                source,
                            });
                            break;
                        }
                        Some(Unit::Window(task, ex)) => {
                            let dt = grid.dt(&task.window);
                            let group = match open.take() {
                                Some(g) => g,
                                None => {
                                    match Group::new(dt, task.window.start, &ex.batch, !grouping) {
                                        Ok(g) => g,
                                        Err(source) => {
                                            failure = Some(RunError::Window {
                                                pipeline: p.name.clone(),
                                                window: task.window,
                                                source,
                                            });
                                            break;
                                        }
                                    }
                                }
                            };
                            match group.push(task, ex).await {
                                Ok(g) => open = Some(g),
                                Err(source) => {
                                    failure = Some(RunError::Window {
                                        pipeline: p.name.clone(),
                                        window: task.window,
                                        source,
                                    });
                                    break;
                                }
                            }
                        }
                    }
                }
                Ok::<_, RunError>(failure)
            };
            futures::pin_mut!(producer, consumer);
            // The consumer stopping first (a failed window, a lost lock) drops the
            // producer and with it the windows still in flight.
            match futures::future::select(consumer, producer).await {
                futures::future::Either::Left((outcome, _)) => outcome?,
                futures::future::Either::Right(((), consumer)) => consumer.await?,
            }
        };

        match backfill_idx {
            Some(i) => backfills::close(&mut st, i, &grid, failure.is_none()),
            None => st.trim_backfills(),
        }
        st.record_requests(self.api_usage()); // issue 15
        st.close_run(failure.as_ref().map(|e| e.to_string()));
        report.watermark = Some(st.watermark);
        // Record the outcome even after a failure. Another writer's commit (a shard of a
        // sharded backfill) is merged in; a commit that still fails after that means
        // another run took over, which the failure (if any) already explains.
        let committed =
            crate::io::state::rebase::commit(&self.state, &p.name, version, &mut st).await;
        if let Some(f) = failure {
            return Err(f);
        }
        committed.map_err(state_err)?;
        Ok(report)
    }

    /// Finishes a group's file and stores it. With `skip_unchanged`, a file whose rows
    /// are already stored under its span's name (same content hash) is not written, and
    /// `None` is returned as for a file with nothing to write.
    async fn finish_group(
        &self,
        file: &WindowFile,
        encoder: sink::FileEncoder,
        skip_unchanged: bool,
    ) -> Result<Option<sink::Written>, WindowError> {
        if skip_unchanged
            && let Some(hash) = encoder.content_hash()
            && sink::unchanged::unchanged(&self.warehouse, file, &hash).await?
        {
            tracing::debug!(path = %self.warehouse.display(&file.relative_path()), "rows unchanged; nothing written");
            return Ok(None);
        }
        let shown = self.warehouse.display(&file.relative_path());
        let encoded = blocking(&shown, move || encoder.finish()).await?;
        let written = sink::write_encoded(&self.warehouse, file, encoded).await?;
        crate::io::mem::release_free_memory();
        Ok(written)
    }

    /// Extracts and converts one window. Nothing is written or committed here.
    async fn extract_window(
        &self,
        p: &Pipeline,
        children: Option<&crate::engine::children::ChildRun>,
        w: Window,
        run_id: &str,
    ) -> Result<Extracted, WindowError> {
        let started = std::time::Instant::now(); // issue 4
        let tz = self.settings.timezone;
        let meta = RowMeta {
            run_id: run_id.to_string(),
            extracted_at_ms: Utc::now().timestamp_millis(),
            window_start_ms: w.start.timestamp_millis(),
            window_end_ms: w.end.timestamp_millis(),
        };
        let extracted = match children {
            // Protected inside, before the window's stored rows join the fetched ones.
            Some(run) => self.children_window(p, run, &w, &meta).await?,
            None => {
                let mut e = extract::search_window(&self.client, p, &w, tz, &meta).await?;
                // issue 4 privacy: the one point every search window passes before the sink.
                e.batch = crate::core::privacy::protect(
                    &p.schema,
                    self.settings.pii_key.as_ref(),
                    e.batch,
                )?;
                e
            }
        };
        if extracted.bad_values > 0 {
            tracing::warn!(pipeline = %p.name, window = %w, values = extracted.bad_values, "values that could not be converted are null; see _errors");
        }
        crate::io::obs::metrics::window_duration(&self.metric_label(p), started.elapsed()); // issue 4
        tracing::debug!(
            rows = extracted.batch.num_rows(),
            requests = extracted.requests,
            "window extracted"
        );
        Ok(extracted)
    }
}
