//! The `status` rows of report pipelines: up to when their periods are final, and which
//! are still re-fetched on every run.

use crate::core::pipeline::Pipeline;
use crate::core::report::settle;
use crate::io::state::model::{PipelineState, Span};
use chrono::{DateTime, Utc};
use serde::Serialize;

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
