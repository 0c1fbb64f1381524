//! Prometheus metrics, recorded through the `metrics` facade where the events happen
//! and rendered by `metrics-exporter-prometheus` (built without its own listener: our
//! axum server in [`crate::app::http`] serves the text).
//!
//! Recording is a no-op until [`install`] has put the recorder in place, so a command
//! that serves no metrics pays nothing. Every series name starts with `sobot_sync_`
//! (besides the standard `process_*` ones, see [`super::process`]); the labels are
//! low-cardinality by construction: a tenant, a pipeline name, a table name, an HTTP
//! status, and an endpoint *path shape* ([`endpoint_label`]), never a record id.
//!
//! Every series a pipeline or a tenant's API client emits has a `tenant` label and the
//! bare pipeline name in `pipeline` ([`PipelineLabels`]), so a query can sum or filter by
//! either without taking a label apart. Without tenants `tenant` is the empty string,
//! which Prometheus stores as no label at all: a single-tenant setup's queries need not
//! name it.

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::Duration;

pub const API_REQUESTS: &str = "sobot_sync_api_requests_total";
pub const API_PAGES: &str = "sobot_sync_api_pages_total";
pub const API_RETRIES: &str = "sobot_sync_api_retries_total";
pub const API_RATE_LIMITED: &str = "sobot_sync_api_rate_limited_total";
pub const ROWS_WRITTEN: &str = "sobot_sync_rows_written_total";
pub const FILES_WRITTEN: &str = "sobot_sync_files_written_total";
pub const WINDOWS_COMMITTED: &str = "sobot_sync_windows_committed_total";
pub const WINDOW_DURATION: &str = "sobot_sync_window_duration_seconds";
pub const RUNS: &str = "sobot_sync_runs_total";
pub const WATERMARK_LAG: &str = "sobot_sync_watermark_lag_seconds";
pub const LAST_SUCCESS: &str = "sobot_sync_last_success_timestamp_seconds";
pub const ALERT_LAG: &str = "sobot_sync_alert_lag_seconds";
pub const HEALTHY: &str = "sobot_sync_pipeline_healthy";
/// issue 13: records a run passed over and did not store, by reason.
pub const RECORDS_SKIPPED: &str = "sobot_sync_records_skipped_total";
/// issue 15: the last run's API requests (retries included) by pipeline and endpoint.
pub const RUN_API_REQUESTS: &str = "sobot_sync_run_api_requests";
/// issue 15: the retries among them.
pub const RUN_API_RETRIES: &str = "sobot_sync_run_api_retries";
/// Always 1; its labels say which build is running.
pub const BUILD_INFO: &str = "sobot_sync_build_info";

/// Bucket bounds of the window duration histogram, in seconds: from a quiet hour of a
/// small tenant (well under a second) to a window that spends minutes in backoff.
const WINDOW_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process-wide recorder once and returns the handle that renders it.
/// Fails only when another `metrics` recorder was installed first (not by this crate).
pub fn install() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(WINDOW_DURATION.into()), WINDOW_BUCKETS)
                .and_then(|b| b.install_recorder())
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
            describe();
            build_info();
            Ok(handle)
        })
        .clone()
}

/// `# HELP` lines, so a scrape explains itself.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        API_REQUESTS,
        "HTTP attempts to the Sobot API by endpoint and status (status=\"error\": no answer)"
    );
    describe_counter!(
        API_PAGES,
        "Envelopes accepted (code 200) by endpoint: pages of data, token answers"
    );
    describe_counter!(API_RETRIES, "Backoff pauses taken before another attempt");
    describe_counter!(
        API_RATE_LIMITED,
        "Answers with HTTP 429 or envelope code 429"
    );
    describe_counter!(ROWS_WRITTEN, "Rows written to the warehouse");
    describe_counter!(FILES_WRITTEN, "Parquet files written to the warehouse");
    describe_counter!(WINDOWS_COMMITTED, "Windows committed to state");
    describe_histogram!(
        WINDOW_DURATION,
        metrics::Unit::Seconds,
        "Time to extract and convert one window (requests, retries, conversion)"
    );
    describe_counter!(RUNS, "Pipeline runs by outcome (succeeded, failed)");
    describe_gauge!(
        WATERMARK_LAG,
        metrics::Unit::Seconds,
        "Now minus the pipeline's watermark"
    );
    describe_gauge!(
        LAST_SUCCESS,
        metrics::Unit::Seconds,
        "Unix time at which the pipeline's last successful run ended"
    );
    describe_gauge!(
        ALERT_LAG,
        metrics::Unit::Seconds,
        "The pipeline's alert_lag_secs: /healthz fails beyond it"
    );
    describe_gauge!(
        RUN_API_REQUESTS,
        "HTTP attempts to the Sobot API of the pipeline's last run, by endpoint (retries included)"
    );
    describe_gauge!(
        RUN_API_RETRIES,
        "Retries among the last run's API requests, by endpoint"
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1: the running build's version, the Rust version it was built with and its target"
    );
    super::process::describe();
    describe_gauge!(
        HEALTHY,
        "1 when the pipeline passes the health rule at the last scrape, else 0"
    );
}

/// The path of a request with every segment that looks like a value (it holds a digit,
/// other than an API version such as `v6`) replaced by `{id}`: the parties endpoint is
/// called once per call id, and a series per call would swamp Prometheus.
pub fn endpoint_label(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        let version =
            seg.len() <= 3 && seg.starts_with('v') && seg[1..].chars().all(|c| c.is_ascii_digit());
        if seg.len() > 64 || (seg.chars().any(|c| c.is_ascii_digit()) && !version) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The `tenant` label's value: the tenant's name, or empty without tenants (see the
/// module's note).
fn tenant_value(tenant: Option<&str>) -> String {
    tenant.unwrap_or_default().to_string()
}

/// The labels of an API series: the tenant (empty without tenants) and the endpoint's shape.
fn api_labels(tenant: Option<&str>, endpoint: &str) -> Vec<metrics::Label> {
    vec![
        metrics::Label::new("tenant", tenant_value(tenant)),
        metrics::Label::new("endpoint", endpoint_label(endpoint)),
    ]
}

/// The labels every series of one pipeline carries: the tenant it works for (empty
/// without tenants) and its bare name. `/healthz` names a tenant's pipeline
/// `tenant/pipeline`; the metrics keep the two apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PipelineLabels {
    pub tenant: String,
    pub pipeline: String,
}

impl PipelineLabels {
    pub fn new(tenant: Option<&str>, pipeline: &str) -> Self {
        PipelineLabels {
            tenant: tenant_value(tenant),
            pipeline: pipeline.to_string(),
        }
    }

    /// `tenant` and `pipeline`, then `more`.
    fn with(&self, more: &[(&'static str, String)]) -> Vec<metrics::Label> {
        let mut labels = vec![
            metrics::Label::new("tenant", self.tenant.clone()),
            metrics::Label::new("pipeline", self.pipeline.clone()),
        ];
        labels.extend(more.iter().map(|(k, v)| metrics::Label::new(*k, v.clone())));
        labels
    }
}

/// One HTTP attempt and its status (`None`: no answer: connect error or timeout).
pub fn api_request(tenant: Option<&str>, endpoint: &str, status: Option<u16>) {
    let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
    let mut labels = api_labels(tenant, endpoint);
    labels.push(metrics::Label::new("status", status));
    metrics::counter!(API_REQUESTS, labels).increment(1);
}

/// An accepted envelope (a page of data).
pub fn api_page(tenant: Option<&str>, endpoint: &str) {
    metrics::counter!(API_PAGES, api_labels(tenant, endpoint)).increment(1);
}

/// A backoff pause before another attempt.
pub fn api_retry(tenant: Option<&str>, endpoint: &str) {
    metrics::counter!(API_RETRIES, api_labels(tenant, endpoint)).increment(1);
}

/// An answer with HTTP 429 or envelope code 429.
pub fn api_rate_limited(tenant: Option<&str>, endpoint: &str) {
    metrics::counter!(API_RATE_LIMITED, api_labels(tenant, endpoint)).increment(1);
}

/// Windows committed together with the rows and files that hold them.
pub fn committed(p: &PipelineLabels, table: &str, windows: u64, rows: u64, files: u64) {
    let table = [("table", table.to_string())];
    metrics::counter!(WINDOWS_COMMITTED, p.with(&[])).increment(windows);
    metrics::counter!(ROWS_WRITTEN, p.with(&table)).increment(rows);
    metrics::counter!(FILES_WRITTEN, p.with(&table)).increment(files);
}

/// `n` records of a pipeline passed over for `reason` (a fixed word such as
/// `no_agent_uuid`, never a record's value).
pub fn records_skipped(p: &PipelineLabels, reason: &'static str, n: u64) {
    metrics::counter!(RECORDS_SKIPPED, p.with(&[("reason", reason.to_string())])).increment(n);
}

/// How long one window took to extract and convert.
pub fn window_duration(p: &PipelineLabels, took: Duration) {
    metrics::histogram!(WINDOW_DURATION, p.with(&[])).record(took.as_secs_f64());
}

/// The watermark's distance from `now` (the run's clock).
pub fn watermark_lag(p: &PipelineLabels, watermark: DateTime<Utc>, now: DateTime<Utc>) {
    let lag = (now - watermark).num_milliseconds() as f64 / 1000.0;
    metrics::gauge!(WATERMARK_LAG, p.with(&[])).set(lag);
}

/// A run's end: counted by outcome; a success also sets the last-success time.
pub fn run_finished(p: &PipelineLabels, succeeded: bool, at: DateTime<Utc>) {
    let outcome = if succeeded { "succeeded" } else { "failed" };
    metrics::counter!(RUNS, p.with(&[("outcome", outcome.to_string())])).increment(1);
    if succeeded {
        last_success(p, at);
    }
}

pub fn last_success(p: &PipelineLabels, at: DateTime<Utc>) {
    metrics::gauge!(LAST_SUCCESS, p.with(&[])).set(at.timestamp_millis() as f64 / 1000.0);
}

/// Endpoints each pipeline's runs have reported, so an endpoint a later run did not
/// call (the token endpoint, asked once per token lifetime) drops to 0 instead of
/// showing an older run's count.
static RUN_ENDPOINTS: std::sync::Mutex<BTreeMap<PipelineLabels, BTreeSet<String>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// A run's API requests and retries per endpoint, as gauges of its pipeline, replacing
/// the previous run's.
pub fn run_api_requests(p: &PipelineLabels, usage: &crate::io::api::ApiUsage) {
    let mut seen = RUN_ENDPOINTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let known = seen.entry(p.clone()).or_default();
    known.extend(usage.0.keys().cloned());
    for endpoint in known.iter() {
        let u = usage.0.get(endpoint).copied().unwrap_or_default();
        let labels = p.with(&[("endpoint", endpoint.clone())]);
        metrics::gauge!(RUN_API_REQUESTS, labels.clone()).set(u.requests as f64);
        metrics::gauge!(RUN_API_RETRIES, labels).set(u.retries as f64);
    }
}

/// The health rule's inputs and verdict for one pipeline, set at each scrape.
pub fn health(p: &PipelineLabels, alert_lag_secs: u64, healthy: bool) {
    metrics::gauge!(ALERT_LAG, p.with(&[])).set(alert_lag_secs as f64);
    metrics::gauge!(HEALTHY, p.with(&[])).set(if healthy { 1.0 } else { 0.0 });
}

/// `sobot_sync_build_info`: set once, when the recorder is installed.
fn build_info() {
    let labels = [
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("rust", env!("SOBOT_SYNC_RUSTC").to_string()),
        ("target", env!("SOBOT_SYNC_TARGET").to_string()),
    ];
    metrics::gauge!(BUILD_INFO, &labels).set(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_labels_hide_ids_but_keep_shapes() {
        assert_eq!(
            endpoint_label(
                "/callservice/tm/tm-reports/maincdrs/0a1b2c3d4e5f60718293a4b5c6d7e8f9/partycdrs"
            ),
            "/callservice/tm/tm-reports/maincdrs/{id}/partycdrs"
        );
        assert_eq!(
            endpoint_label("/callservice/v6/webmsg/monitoring/agents-metrics?x=1"),
            "/callservice/v6/webmsg/monitoring/agents-metrics"
        );
        assert_eq!(
            endpoint_label("/callservice/tm/tm-reports/maincdrs/_search"),
            "/callservice/tm/tm-reports/maincdrs/_search"
        );
        assert_eq!(endpoint_label("/rec/2024/abc.mp3"), "/rec/{id}/{id}");
        assert_eq!(endpoint_label("/tokens/company"), "/tokens/company");
        assert_eq!(endpoint_label(""), "/");
    }
}
