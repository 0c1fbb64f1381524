//! The spans and labels every run driver shares: each log line inside a run names its
//! pipeline, mode and run id, and each window's line names its window (`io::obs::logging`
//! prints them; `io::obs::metrics` counts what they did).

use crate::core::pipeline::Pipeline;
use crate::core::plan::Window;
use crate::engine::run::Mode;
use crate::io::obs::metrics::{self, PipelineLabels};
use crate::io::obs::progress;
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

/// A group of windows committed by the search driver (`engine::search`): metrics, and the progress bar of a
/// backfill. `counts` is (windows, rows); `file` whether a file was written (a window
/// without rows writes none).
pub fn committed(
    p: &Pipeline,
    label: &PipelineLabels,
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

/// A pipeline run's end, from any driver: its outcome, the last success and the lag.
/// The report and snapshot drivers commit on their own, so their rows and files are
/// counted here from the run's report (the search runner counts them per commit).
pub fn run_result(
    p: &crate::core::pipeline::Pipeline,
    label: &PipelineLabels,
    result: &Result<crate::engine::run::Report, crate::engine::run::RunError>,
    now: DateTime<Utc>,
) {
    use crate::core::pipeline::Kind;
    metrics::run_finished(label, result.is_ok(), Utc::now());
    let Ok(report) = result else { return };
    if let Some(w) = report.watermark {
        metrics::watermark_lag(label, w, now);
    }
    if !matches!(p.kind, Kind::Search | Kind::Children) {
        metrics::committed(label, &p.table, report.windows, report.rows, report.files);
    }
}
