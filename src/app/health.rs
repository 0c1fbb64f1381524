//! The health rule behind `GET /healthz`, read from committed state only.
//!
//! Healthy means: every enabled pipeline's state can be read, and no pipeline's
//! watermark lags `now` by more than its alert threshold (`alert_lag_secs` in the
//! pipeline file, else [`default_alert_lag_secs`]). A pipeline without state yet (never
//! run) is healthy: a fresh deployment must not be reported down before its first run.

use crate::core::pipeline::{Catalog, Pipeline};
use crate::core::report::period::DateType;
use crate::io::state::model::{Outcome, PipelineState};
use crate::io::state::store::StateStore;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// Longest wait for one pipeline's state: an unreachable store must turn into a 503
/// quickly (a probe times out in seconds), not after the object store's retries.
const STATE_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Slack for the schedule and the run itself in the default threshold.
const DEFAULT_SLACK_SECS: u64 = 3600;

/// The threshold when the pipeline file names none: `lag_secs + 2 x period + 1 h`.
///
/// On a healthy schedule the watermark trails now by up to `lag_secs` plus one window
/// (the window that is not yet due) plus the time until the next run; a second window
/// allows one missed or failed run before alerting, and the hour covers a slow run and
/// an hourly schedule. The period is `window_secs`, except for weekly and monthly
/// reports, whose windows are the period itself (7 and 31 days).
pub fn default_alert_lag_secs(p: &Pipeline) -> u64 {
    let period = match p.report.as_ref().map(|r| r.spec.date_type) {
        Some(DateType::Week) => 7 * 86_400,
        Some(DateType::Month) => 31 * 86_400,
        _ => p.window_secs,
    };
    p.lag_secs + 2 * period + DEFAULT_SLACK_SECS
}

/// The pipeline's threshold: its `alert_lag_secs`, else the default.
pub fn alert_lag_secs(p: &Pipeline) -> u64 {
    p.alert_lag_secs
        .unwrap_or_else(|| default_alert_lag_secs(p))
}

/// One pipeline's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineHealth {
    pub pipeline: String,
    pub healthy: bool,
    /// `None` for a pipeline that never ran (or whose state could not be read).
    pub watermark: Option<DateTime<Utc>>,
    pub lag_secs: Option<i64>,
    pub alert_lag_secs: u64,
    /// End of the last run, when it succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// Why it is unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The whole verdict, as `/healthz` answers it.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `ok` or `unhealthy`.
    pub status: &'static str,
    pub checked_at: DateTime<Utc>,
    /// One line per failing pipeline.
    pub reasons: Vec<String>,
    pub pipelines: Vec<PipelineHealth>,
}

impl Health {
    pub fn healthy(&self) -> bool {
        self.reasons.is_empty()
    }

    /// Names every pipeline (and reason) `tenant/pipeline`.
    pub fn prefix(&mut self, tenant: &str) {
        for p in &mut self.pipelines {
            p.pipeline = format!("{tenant}/{}", p.pipeline);
        }
        for r in &mut self.reasons {
            *r = format!("tenant {tenant}: {r}");
        }
    }

    /// Adds another tenant's pipelines and reasons.
    pub fn absorb(&mut self, other: Health) {
        self.pipelines.extend(other.pipelines);
        self.reasons.extend(other.reasons);
        self.status = if self.reasons.is_empty() {
            "ok"
        } else {
            "unhealthy"
        };
    }
}

/// Applies the rule to every enabled pipeline, with `now` from the command's clock.
pub async fn evaluate(catalog: &Catalog, state: &StateStore, now: DateTime<Utc>) -> Health {
    // All at once: one slow store costs one timeout per scrape, not one per pipeline.
    let checks = catalog
        .pipelines
        .values()
        .filter(|p| p.enabled)
        .map(|p| check(p, state, now));
    let pipelines = futures::future::join_all(checks).await;
    let reasons: Vec<String> = pipelines.iter().filter_map(|h| h.reason.clone()).collect();
    Health {
        status: if reasons.is_empty() {
            "ok"
        } else {
            "unhealthy"
        },
        checked_at: now,
        reasons,
        pipelines,
    }
}

/// One pipeline against the rule.
async fn check(p: &Pipeline, state: &StateStore, now: DateTime<Utc>) -> PipelineHealth {
    let threshold = alert_lag_secs(p);
    let loaded =
        tokio::time::timeout(STATE_READ_TIMEOUT, state.load::<PipelineState>(&p.name)).await;
    let mut h = PipelineHealth {
        pipeline: p.name.clone(),
        healthy: true,
        watermark: None,
        lag_secs: None,
        alert_lag_secs: threshold,
        last_success: None,
        reason: None,
    };
    match loaded {
        Err(_) => {
            h.reason = Some(format!(
                "pipeline {}: state cannot be read: no answer from {} within {}s",
                p.name,
                state.location().url(),
                STATE_READ_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(e)) => {
            h.reason = Some(format!("pipeline {}: state cannot be read: {e}", p.name));
        }
        Ok(Ok(None)) => {}
        Ok(Ok(Some(v))) => {
            let st = v.value;
            let lag = (now - st.watermark).num_seconds();
            h.watermark = Some(st.watermark);
            h.lag_secs = Some(lag);
            h.last_success = st
                .last_run
                .as_ref()
                .filter(|r| r.outcome == Outcome::Success)
                .and_then(|r| r.ended_at);
            if lag > 0 && lag.unsigned_abs() > threshold {
                h.reason = Some(format!(
                    "pipeline {}: watermark {} lags now by {lag}s, beyond alert_lag_secs = {threshold}",
                    p.name,
                    st.watermark.to_rfc3339()
                ));
            }
        }
    }
    h.healthy = h.reason.is_none();
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schema::TableSchema;

    const TALKS: &str = include_str!("../../pipelines/talks.toml");
    const TALKS_SCHEMA: &str = include_str!("../../schemas/talks.toml");
    const REPORT: &str = "name = \"r\"\nkind = \"report\"\nlag_secs = 1800\ninitial_start = \"2024-03-01\"\nschedule = \"0 20 * * * *\"\n";

    fn talks(extra: &str) -> Result<Pipeline, String> {
        let schemas =
            |_: &str| TableSchema::parse(TALKS_SCHEMA, "talks.toml").map_err(|e| e.to_string());
        Pipeline::parse(
            &format!("{extra}{TALKS}"),
            "talks.toml",
            chrono_tz::Asia::Singapore,
            &schemas,
        )
        .map_err(|e| e.to_string())
    }

    fn report(extra: &str, date_type: &str) -> Result<Pipeline, String> {
        let schemas = |_: &str| Err("no schema".to_string());
        Pipeline::parse(
            &format!("{extra}{REPORT}[report]\nfamily = \"gateway_numbers\"\ndate_type = \"{date_type}\"\n"),
            "r.toml",
            chrono_tz::Asia::Singapore,
            &schemas,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn thresholds_default_from_window_and_lag_or_come_from_the_file() -> Result<(), String> {
        let p = talks("")?;
        assert_eq!(alert_lag_secs(&p), 1800 + 2 * 3600 + 3600);
        assert_eq!(alert_lag_secs(&talks("alert_lag_secs = 600\n")?), 600);
        let e = talks("alert_lag_secs = 5\n").err().unwrap_or_default();
        assert!(e.contains("alert_lag_secs = 5"), "{e}");
        assert_eq!(
            alert_lag_secs(&report("", "day")?),
            1800 + 2 * 86_400 + 3600
        );
        assert_eq!(
            alert_lag_secs(&report("", "month")?),
            1800 + 2 * 31 * 86_400 + 3600
        );
        assert_eq!(
            alert_lag_secs(&report("alert_lag_secs = 7200\n", "week")?),
            7200
        );
        Ok(())
    }
}
