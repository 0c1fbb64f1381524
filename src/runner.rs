//! Runs one pipeline: lock -> plan -> (extract -> convert -> write) per window -> commit.
//!
//! The state is committed after every file, in window order, with a conditional put:
//! the watermark only ever moves past a window whose file is written and whose count
//! matched the API's total. A file holds one window, or in a backfill a run of
//! consecutive windows of one `dt` partition. A failure leaves every earlier window
//! committed and the watermark at the failed window's start.

use crate::api::ApiClient;
use crate::clock::SharedClock;
use crate::convert::RowMeta;
use crate::extract::{self, ExtractError, Extracted};
use crate::pipeline::{Catalog, Kind, Pipeline};
use crate::plan::{self, Grid, Window};
use crate::settings::Settings;
use crate::sink::{self, SinkError, WindowFile};
use crate::state::backfills;
use crate::state::model::{PipelineState, RunRecord, Span};
use crate::state::store::{Lock, StateError, StateStore};
use crate::store::Location;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Instrument;

/// What a run was asked to do.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// From the watermark to `now - lag`, then the lookback windows again.
    Incremental,
    /// The historical range `[from, to)`, tracked apart from the watermark.
    Backfill {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// issue 4 privacy: personal data could not be rewritten, so nothing is written.
    #[error(transparent)]
    Privacy(#[from] crate::privacy::PrivacyError),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("pipeline {pipeline} window {window} failed: {source}")]
    Window {
        pipeline: String,
        window: Window,
        #[source]
        source: WindowError,
    },
    #[error("pipeline {pipeline}: {source}")]
    State {
        pipeline: String,
        #[source]
        source: StateError,
    },
    /// A definition or setting that does not fit the committed state (exit 2).
    #[error("pipeline {pipeline}: {message}")]
    Config { pipeline: String, message: String },
    /// issue 4 (daemon): [`Engine::stop`] was signalled; the windows after the last
    /// commit were abandoned uncommitted and are loaded by the next run.
    #[error(
        "pipeline {pipeline}: stopped for shutdown; windows from {} on are loaded by the next run",
        next.to_rfc3339()
    )]
    Stopped {
        pipeline: String,
        next: DateTime<Utc>,
    },
}

impl RunError {
    pub fn is_config(&self) -> bool {
        matches!(self, RunError::Config { .. })
    }
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            RunError::State {
                source: StateError::Busy { .. },
                ..
            }
        )
    }
}

/// What one pipeline's run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub pipeline: String,
    pub table: String,
    pub windows: u64,
    pub lookback_windows: u64,
    pub rows: u64,
    pub files: u64,
    pub requests: u64,
    pub watermark: Option<DateTime<Utc>>,
    /// Report pipelines only: re-fetches, restatements and `amount` checks (`report::run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::report::run::ReportCounts>,
    /// issue 13: records the API sent that the run passed over, by reason: agent
    /// metrics rows without `agentUUID` (`no_agent_uuid`), talks whose `recordUrl` holds
    /// no recording id (`record_url_without_id`). Each is also logged and counted in
    /// `sobot_sync_records_skipped_total`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub skipped: std::collections::BTreeMap<&'static str, u64>,
}

impl Report {
    /// issue 13: counts `n` records passed over for `reason` (report and metric).
    pub fn skip(&mut self, reason: &'static str, n: u64) {
        if n > 0 {
            *self.skipped.entry(reason).or_insert(0) += n;
            crate::obs::metrics::records_skipped(&self.pipeline, reason, n);
        }
    }
}

/// Everything a run needs, built once per process and shared by every pipeline.
#[derive(Clone)]
pub struct Engine {
    pub settings: Settings,
    pub catalog: Catalog,
    pub client: ApiClient,
    pub warehouse: Location,
    pub state: StateStore,
    pub clock: SharedClock,
    /// issue 4 (daemon): once cancelled, a run commits the window it is finishing and
    /// then stops instead of starting to commit the next one (`daemon`'s shutdown).
    pub stop: tokio_util::sync::CancellationToken,
}

/// A window extracted and waiting, in its group, to be written and committed.
struct WindowDone {
    task: Task,
    rows: u64,
    requests: u64,
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
struct Task {
    window: Window,
    advances: bool,
}

/// Pipeline locks held together by one run, renewed in the background.
pub struct Claim {
    locks: Arc<tokio::sync::Mutex<Vec<Lock>>>,
    /// Set when a renewal failed: another run may have taken over, so stop committing.
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Claim {
    /// Whether a renewal failed, so another process may hold a lock now (issue 4: `compact`).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops renewing and gives every lock up, so the next run need not wait for expiry.
    pub async fn release(self) {
        self.renewer.abort();
        let held: Vec<Lock> = std::mem::take(&mut *self.locks.lock().await);
        for l in held {
            let name = l.pipeline().to_string();
            if let Err(e) = l.release().await {
                tracing::warn!(pipeline = %name, "could not release the lock (it expires by itself): {e}");
            }
        }
    }
}

impl Engine {
    /// The `pipeline` label of this engine's series of `p` (see `obs::pipeline_label`).
    pub fn metric_label(&self, p: &Pipeline) -> String {
        crate::obs::pipeline_label(self.settings.tenant.as_deref(), &p.name)
    }

    pub fn grid(&self, p: &Pipeline) -> Grid {
        Grid::new(self.settings.timezone, p.window_secs)
    }

    /// The state a pipeline starts from when it has none.
    pub fn initial_state(&self, p: &Pipeline) -> PipelineState {
        let start = self.settings.start.unwrap_or(p.initial_start);
        PipelineState::new(
            &p.name,
            p.window_secs,
            self.settings.timezone.name(),
            self.grid(p).floor(start),
        )
    }

    /// A run id unique per invocation: one per process run, shared by its pipelines.
    pub fn new_run_id() -> String {
        format!(
            "{}-{}",
            Utc::now().format("%Y%m%dT%H%M%SZ"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    }

    pub async fn run(&self, p: &Pipeline, mode: Mode) -> Result<Report, RunError> {
        self.run_with_id(p, mode, &Self::new_run_id()).await
    }

    pub async fn run_with_id(
        &self,
        p: &Pipeline,
        mode: Mode,
        run_id: &str,
    ) -> Result<Report, RunError> {
        let claim = self.claim(&[p.name.as_str()], run_id).await?;
        let result = self.run_claimed(p, mode, run_id, &claim).await;
        claim.release().await;
        result
    }

    /// Takes the locks of every named pipeline, in name order, all or none, and keeps
    /// them renewed until [`Claim::release`]. Two processes started on the same pipelines
    /// at the same moment therefore meet on the first name: one gets everything and the
    /// other is refused as busy, instead of each taking some pipelines and both failing.
    pub async fn claim(&self, names: &[&str], run_id: &str) -> Result<Claim, RunError> {
        let mut names = names.to_vec();
        names.sort_unstable();
        names.dedup();
        let mut held = Vec::with_capacity(names.len());
        for name in names {
            let taken = self
                .state
                .acquire_lock(name, &format!("{run_id}/{name}"), self.settings.lock_ttl)
                .await;
            match taken {
                Ok(lock) => held.push(lock),
                Err(source) => {
                    for lock in held {
                        if let Err(e) = lock.release().await {
                            tracing::warn!("could not release a lock (it expires by itself): {e}");
                        }
                    }
                    return Err(RunError::State {
                        pipeline: name.to_string(),
                        source,
                    });
                }
            }
        }
        let locks = Arc::new(tokio::sync::Mutex::new(held));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let locks = locks.clone();
            let lost = lost.clone();
            let every = self.settings.lock_ttl / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let mut guard = locks.lock().await;
                    for l in guard.iter_mut() {
                        if let Err(e) = l.renew().await {
                            tracing::error!(pipeline = %l.pipeline(), "lost the pipeline lock: {e}");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        };
        Ok(Claim {
            locks,
            lost,
            renewer,
        })
    }

    /// Runs a pipeline whose lock `claim` holds.
    pub async fn run_claimed(
        &self,
        p: &Pipeline,
        mode: Mode,
        run_id: &str,
        claim: &Claim,
    ) -> Result<Report, RunError> {
        // issue 4: one `run` span per pipeline run, whichever driver runs it.
        let span = crate::obs::run_span(p, mode, run_id);
        let result = async {
            // issue 3: reference, snapshot and recordings pipelines have their own driver.
            if crate::snapshots::handles(p.kind) {
                return crate::snapshots::run(self, p, mode, run_id, &claim.lost).await;
            }
            self.run_locked(p, mode, run_id, &claim.lost).await
        }
        .instrument(span)
        .await;
        crate::obs::metrics::run_result(p, &self.metric_label(p), &result, self.clock.now()); // issue 4
        result
    }

    pub(crate) async fn run_locked(
        &self,
        p: &Pipeline,
        mode: Mode,
        run_id: &str,
        lost: &AtomicBool,
    ) -> Result<Report, RunError> {
        if p.kind == Kind::Report {
            return crate::report::run::run_locked(self, p, mode, run_id, lost).await;
        }
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
        let parent = match (&p.kind, &p.parent) {
            (Kind::Children, Some(name)) => {
                Some(self.catalog.get(name).ok_or_else(|| RunError::Config {
                    pipeline: p.name.clone(),
                    message: format!("parent pipeline {name:?} is not defined"),
                })?)
            }
            _ => None,
        };

        let limit = now - Duration::seconds(p.lag_secs as i64);
        let (tasks, kind, backfill_idx) = match mode {
            Mode::Incremental => {
                let completed = st.completed.clone();
                let plan = plan::incremental(
                    &grid,
                    st.watermark,
                    now,
                    p.lag_secs,
                    p.lookback_secs,
                    &|w| completed.covers(Span::from(*w)),
                );
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
                let (idx, done) = backfills::open(&mut st, from, to);
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
        };

        let started = Utc::now();
        st.last_run = Some(RunRecord::running(run_id, kind, started));
        version = Some(
            crate::state::rebase::commit(&self.state, &p.name, version, &mut st)
                .await
                .map_err(state_err)?,
        );
        tracing::info!(pipeline = %p.name, run_id, kind, windows = tasks.len(), watermark = %st.watermark.to_rfc3339(), "planned");
        if backfill_idx.is_some() {
            crate::obs::progress::planned(tasks.len() as u64); // issue 4
        }

        let mut report = Report {
            pipeline: p.name.clone(),
            table: p.table.clone(),
            ..Default::default()
        };
        let window_concurrency = self.settings.window_concurrency.max(1);
        // Each window is extracted on a task of its own, so the decoding of windows in
        // flight spreads over the runtime's threads instead of sharing this one.
        // At most `window_concurrency` windows extract at once (one lane each, taken in
        // window order before the window's task starts), but finished windows may wait
        // behind a slower earlier one: with plain ordered buffering, one window of many
        // pages held the other lanes idle. Results still leave in window order, and the
        // finished ones waiting are bounded.
        let lanes = Arc::new(tokio::sync::Semaphore::new(window_concurrency));
        let shared = Arc::new((self.clone(), p.clone(), parent.cloned(), run_id.to_string()));
        let mut results = Box::pin(
            futures::stream::iter(tasks.iter().copied())
                .then(|task| {
                    let (shared, lanes) = (shared.clone(), lanes.clone());
                    let span = crate::obs::window_span(&p.name, kind, &task.window); // issue 4
                    async move {
                        // The semaphore is never closed, so this only waits for a lane.
                        let lane = lanes.acquire_owned().await.ok();
                        let handle = AbortOnDrop(tokio::spawn(
                            async move {
                                let _lane = lane;
                                let (engine, p, parent, run_id) = &*shared;
                                engine
                                    .extract_window(p, parent.as_ref(), task.window, run_id)
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
                        let written = match self.finish_group(&file, g.encoder).await {
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
                        }
                        version = Some(
                            crate::state::rebase::commit(&self.state, &p.name, version, &mut st)
                                .await
                                .map_err(state_err)?,
                        );
                        tracing::debug!(pipeline = %p.name, from = %file.start.to_rfc3339(), to = %file.end.to_rfc3339(), windows = done.len(), "windows committed");
                        crate::obs::committed(
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
                                None => match Group::new(dt, task.window.start, &ex.batch) {
                                    Ok(g) => g,
                                    Err(source) => {
                                        failure = Some(RunError::Window {
                                            pipeline: p.name.clone(),
                                            window: task.window,
                                            source,
                                        });
                                        break;
                                    }
                                },
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
        st.close_run(failure.as_ref().map(|e| e.to_string()));
        report.watermark = Some(st.watermark);
        // Record the outcome even after a failure. Another writer's commit (a shard of a
        // sharded backfill) is merged in; a commit that still fails after that means
        // another run took over, which the failure (if any) already explains.
        let committed = crate::state::rebase::commit(&self.state, &p.name, version, &mut st).await;
        if let Some(f) = failure {
            return Err(f);
        }
        committed.map_err(state_err)?;
        Ok(report)
    }

    /// Finishes a group's file and stores it.
    async fn finish_group(
        &self,
        file: &WindowFile,
        encoder: sink::FileEncoder,
    ) -> Result<Option<sink::Written>, WindowError> {
        let shown = self.warehouse.display(&file.relative_path());
        let encoded = blocking(&shown, move || encoder.finish()).await?;
        let written = sink::write_encoded(&self.warehouse, file, encoded).await?;
        crate::mem::release_free_memory();
        Ok(written)
    }

    /// Extracts and converts one window. Nothing is written or committed here.
    async fn extract_window(
        &self,
        p: &Pipeline,
        parent: Option<&Pipeline>,
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
        let mut extracted = match parent {
            Some(parent) => {
                extract::children_window(&self.client, p, parent, &w, tz, &meta).await?
            }
            None => extract::search_window(&self.client, p, &w, tz, &meta).await?,
        };
        // issue 4 privacy: the one point every search/children window passes before the sink.
        extracted.batch =
            crate::privacy::protect(&p.schema, self.settings.pii_key.as_ref(), extracted.batch)?;
        if extracted.bad_values > 0 {
            tracing::warn!(pipeline = %p.name, window = %w, values = extracted.bad_values, "values that could not be converted are null; see _errors");
        }
        crate::obs::metrics::window_duration(&self.metric_label(p), started.elapsed()); // issue 4
        tracing::debug!(
            rows = extracted.batch.num_rows(),
            requests = extracted.requests,
            "window extracted"
        );
        Ok(extracted)
    }
}

/// Consecutive extracted windows of one `dt` partition, encoded into one file as they
/// arrive.
struct Group {
    dt: NaiveDate,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    encoder: sink::FileEncoder,
    done: Vec<WindowDone>,
}

impl Group {
    fn new(dt: NaiveDate, start: DateTime<Utc>, first: &RecordBatch) -> Result<Self, WindowError> {
        let encoder =
            sink::FileEncoder::new(first.schema()).map_err(|source| SinkError::Encode {
                path: format!("a file of {dt}"),
                source,
            })?;
        Ok(Group {
            dt,
            start,
            end: start,
            encoder,
            done: Vec::new(),
        })
    }

    /// Whether `task` continues this group: same partition, the very next window, and
    /// room left under the memory cap.
    fn takes(&self, dt: NaiveDate, task: &Task) -> bool {
        self.dt == dt
            && task.window.start == self.end
            && self.encoder.buffered_bytes() < GROUP_MAX_BYTES
    }

    /// Encodes a window's rows into the group's file, off the runtime's worker threads.
    async fn push(mut self, task: Task, ex: Extracted) -> Result<Self, WindowError> {
        self.end = task.window.end;
        self.done.push(WindowDone {
            task,
            rows: ex.batch.num_rows() as u64,
            requests: ex.requests,
        });
        let label = format!("the file of {} from {}", self.dt, self.start.to_rfc3339());
        blocking(&label, move || {
            self.encoder.write(&ex.batch)?;
            Ok(self)
        })
        .await
    }
}

/// Runs CPU-bound Parquet work on the blocking pool; `what` names the file in errors.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, parquet::errors::ParquetError> + Send + 'static,
) -> Result<T, WindowError> {
    let encode_err = |source| SinkError::Encode {
        path: what.to_string(),
        source,
    };
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|join| encode_err(parquet::errors::ParquetError::External(Box::new(join))))?
        .map_err(|e| encode_err(e).into())
}

/// Refuses to commit once the lock renewal failed: another run may own the pipeline.
pub(crate) fn lock_lost(p: &Pipeline, lost: &AtomicBool) -> Option<RunError> {
    lost.load(Ordering::SeqCst).then(|| RunError::State {
        pipeline: p.name.clone(),
        source: StateError::Busy {
            pipeline: p.name.clone(),
            holder: "another run (this run's lock expired)".into(),
            expires_at: Utc::now(),
        },
    })
}

/// A spawned window task that is cancelled when the run stops waiting for it (a failed
/// window, a lost lock): windows after a failure must not keep calling the API.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    pub(crate) async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// issue 4: (windows, rows) of a committed group, for metrics and the progress bar.
fn done_counts(done: &[WindowDone]) -> (u64, u64) {
    (done.len() as u64, done.iter().map(|d| d.rows).sum())
}

/// What the committing side receives, in window order.
enum Unit {
    Window(Task, Extracted),
    Failed(Task, WindowError),
}
