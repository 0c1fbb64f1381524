//! The run contract every driver shares: what a run is asked ([`Mode`]), what it reports
//! ([`Report`]), how it fails ([`RunError`]), what it runs with ([`Engine`]) and the shape
//! of a driver ([`Driver`]). [`claim`] takes the pipelines' locks and [`dispatch`] hands a
//! pipeline to the driver of its kind: `engine::search` (search and children windows),
//! `engine::report` and `engine::snapshots` (reference, snapshot, recordings).
//!
//! The state is committed after every file, in window order, with a conditional put:
//! the watermark only ever moves past a window whose file is written and whose count
//! matched the API's total. A failure leaves every earlier window committed and the
//! watermark at the failed window's start.

pub mod claim;
pub mod dispatch;

use crate::core::clock::SharedClock;
use crate::core::pipeline::{Catalog, Pipeline};
use crate::core::plan::{Grid, Window};
use crate::engine::extract::ExtractError;
use crate::engine::settings::EngineSettings;
use crate::io::api::ApiClient;
use crate::io::sink::SinkError;
use crate::io::state::model::PipelineState;
use crate::io::state::store::{StateError, StateStore};
use crate::io::store::Location;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, Ordering};

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
    Privacy(#[from] crate::core::privacy::PrivacyError),
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
    /// issue 15: every HTTP attempt of the run by endpoint (token requests, pages,
    /// child requests, downloads), and how many were retries. `requests` above counts
    /// the answers the driver used; this is what the run cost the tenant's budget.
    pub api_requests: crate::io::api::ApiUsage,
    /// Report pipelines only: re-fetches, restatements and `amount` checks (`report::run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::engine::report::counts::ReportCounts>,
    /// issue 13: records the API sent that the run passed over, by reason: agent
    /// metrics rows without `agentUUID` (`no_agent_uuid`), talks whose `recordUrl` holds
    /// no recording id (`record_url_without_id`). Each is also logged and counted in
    /// `sobot_sync_records_skipped_total`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub skipped: std::collections::BTreeMap<&'static str, u64>,
    /// issue 15, `children` pipelines: windows left for a later run because the parent
    /// has not committed them yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<crate::io::state::model::Waiting>,
}

impl Report {
    /// issue 13: counts `n` records passed over for `reason` (report and metric;
    /// `labels` from `Engine::metric_label`, as the report knows no tenant).
    pub fn skip(
        &mut self,
        labels: &crate::io::obs::metrics::PipelineLabels,
        reason: &'static str,
        n: u64,
    ) {
        if n > 0 {
            *self.skipped.entry(reason).or_insert(0) += n;
            crate::io::obs::metrics::records_skipped(labels, reason, n);
        }
    }
}

/// Everything a run needs, built once per process and shared by every pipeline.
#[derive(Clone)]
pub struct Engine {
    pub settings: EngineSettings,
    pub catalog: Catalog,
    pub client: ApiClient,
    pub warehouse: Location,
    pub state: StateStore,
    pub clock: SharedClock,
    /// issue 4 (daemon): once cancelled, a run commits the window it is finishing and
    /// then stops instead of starting to commit the next one (`daemon`'s shutdown).
    pub stop: tokio_util::sync::CancellationToken,
}

impl Engine {
    /// The `tenant` and `pipeline` labels of this engine's series of `p`.
    pub fn metric_label(&self, p: &Pipeline) -> crate::io::obs::metrics::PipelineLabels {
        crate::io::obs::metrics::PipelineLabels::new(self.settings.tenant.as_deref(), &p.name)
    }

    /// issue 15: the API requests this engine's run has made so far: empty unless the
    /// engine is the metered one `run_locked` hands a driver.
    pub fn api_usage(&self) -> crate::io::api::ApiUsage {
        self.client
            .meter()
            .map(crate::io::api::RequestMeter::usage)
            .unwrap_or_default()
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

/// A run's plan, as every windowed driver announces it.
pub struct Planned {
    /// `run` or `backfill`.
    pub kind: &'static str,
    pub windows: usize,
    pub watermark: DateTime<Utc>,
    /// Report pipelines: windows fetched again because their periods are not final.
    pub provisional: Option<u64>,
    pub backfill: bool,
}

/// What runs one kind of pipeline, whose lock the caller holds. `lost` is set when the
/// lock could not be renewed: from then on a driver commits nothing.
pub trait Driver {
    /// What every windowed driver does once its windows are planned: one `planned` line
    /// (the line operators follow a run by), the backfill's progress bar, and the run's
    /// empty report.
    fn planned(&self, p: &Pipeline, run_id: &str, plan: Planned) -> Report {
        tracing::info!(pipeline = %p.name, run_id, kind = plan.kind, windows = plan.windows, provisional = plan.provisional, watermark = %plan.watermark.to_rfc3339(), "planned");
        if plan.backfill {
            crate::io::obs::progress::planned(plan.windows as u64);
        }
        Report {
            pipeline: p.name.clone(),
            table: p.table.clone(),
            ..Default::default()
        }
    }

    fn run(
        &self,
        engine: &Engine,
        p: &Pipeline,
        mode: Mode,
        run_id: &str,
        lost: &AtomicBool,
    ) -> impl std::future::Future<Output = Result<Report, RunError>> + Send;
}
