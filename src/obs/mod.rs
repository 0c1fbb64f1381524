//! Observability (issue 4, part 2): what an operator's tools read from a running
//! sobot-sync.
//!
//! - [`logging`]: human lines on a terminal, JSON lines for a log stack
//!   (`SOBOT_SYNC_LOG_FORMAT`), with the `run` and `window` spans of `runner` on each line;
//! - [`metrics`]: Prometheus series recorded where things happen (the API transport,
//!   the run drivers) through the `metrics` facade;
//! - [`health`]: the health rule (watermark lag against each pipeline's alert threshold,
//!   readable state);
//! - [`http`]: `GET /metrics` and `GET /healthz` on `SOBOT_SYNC_HTTP_ADDR`, startable by
//!   any long- or short-lived command;
//! - [`progress`]: the `backfill` progress bar on a terminal.

pub mod health;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod progress;

use crate::pipeline::Pipeline;
use crate::plan::Window;
use crate::runner::Mode;
use chrono::{DateTime, Utc};

/// The name a mode has in spans and logs, as in state's run records.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Incremental => "run",
        Mode::Backfill { .. } => "backfill",
    }
}

/// The span around one pipeline's run: every line logged inside names the pipeline,
/// the mode and the run id.
pub fn run_span(p: &Pipeline, mode: Mode, run_id: &str) -> tracing::Span {
    tracing::info_span!("run", pipeline = %p.name, mode = mode_name(mode), run_id)
}

/// The span around one window's extraction (a child of the run's span).
pub fn window_span(pipeline: &str, mode: &str, w: &Window) -> tracing::Span {
    tracing::info_span!(
        "window",
        pipeline,
        mode,
        start = %w.start.to_rfc3339(),
        end = %w.end.to_rfc3339()
    )
}

/// The `pipeline` label of a pipeline's series: `tenant/pipeline` when the engine
/// works for one of several tenants (as `/healthz` names it), else the pipeline.
pub fn pipeline_label(tenant: Option<&str>, pipeline: &str) -> String {
    match tenant {
        Some(t) => format!("{t}/{pipeline}"),
        None => pipeline.to_string(),
    }
}

/// A group of windows committed by the runner: metrics, and the progress bar of a
/// backfill. `counts` is (windows, rows); `file` whether a file was written (a window
/// without rows writes none).
pub fn committed(
    p: &Pipeline,
    label: &str,
    counts: &(u64, u64),
    file: bool,
    watermark: DateTime<Utc>,
    now: DateTime<Utc>,
    backfill: bool,
) {
    let (windows, rows) = *counts;
    metrics::committed(label, &p.table, windows, rows, u64::from(file));
    metrics::watermark_lag(label, watermark, now);
    if backfill {
        progress::advanced(windows, rows);
    }
}
