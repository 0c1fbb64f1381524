//! Runs a pipeline: claims its lock, hands it to the driver of its kind, and records the
//! run's outcome in its span and metrics.

use crate::core::pipeline::{Kind, Pipeline};
use crate::engine::report::run::Reports;
use crate::engine::run::claim::Claim;
use crate::engine::run::{Driver, Engine, Mode, Report, RunError};
use crate::engine::search::Windows;
use crate::engine::snapshots::Snapshots;
use crate::io::api::RequestMeter;
use std::sync::atomic::AtomicBool;
use tracing::Instrument;

impl Engine {
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

    /// Runs a pipeline whose lock `claim` holds.
    pub async fn run_claimed(
        &self,
        p: &Pipeline,
        mode: Mode,
        run_id: &str,
        claim: &Claim,
    ) -> Result<Report, RunError> {
        // issue 4: one `run` span per pipeline run, whichever driver runs it.
        let span = crate::engine::observe::run_span(p, mode, run_id);
        let result = async { self.run_locked(p, mode, run_id, &claim.lost).await }
            .instrument(span)
            .await;
        crate::engine::observe::run_result(p, &self.metric_label(p), &result, self.clock.now()); // issue 4
        result
    }

    /// Hands a pipeline whose lock the caller holds to the driver of its kind, with a
    /// client handle that counts the run's requests (issue 15): the client is shared by
    /// the pipelines running at once, so only a meter of the run's own says what it cost.
    pub(crate) async fn run_locked(
        &self,
        p: &Pipeline,
        mode: Mode,
        run_id: &str,
        lost: &AtomicBool,
    ) -> Result<Report, RunError> {
        let meter = RequestMeter::default();
        let engine = Engine {
            client: self.client.metered(meter.clone()),
            ..self.clone()
        };
        let result = match p.kind {
            Kind::Search | Kind::Children => Windows.run(&engine, p, mode, run_id, lost).await,
            Kind::Report => Reports.run(&engine, p, mode, run_id, lost).await,
            Kind::Reference | Kind::Snapshot | Kind::Recordings => {
                Snapshots.run(&engine, p, mode, run_id, lost).await
            }
        };
        let usage = meter.usage();
        crate::io::obs::metrics::run_api_requests(&self.metric_label(p), &usage);
        result.map(|report| Report {
            api_requests: usage,
            ..report
        })
    }
}
