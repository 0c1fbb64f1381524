//! The error of a `result_date` that names no period, kept with its raw text.

/// A `result_date` (or a range) that could not be read. Carries the raw string so the
/// converter can record it in `_errors` as it came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("result_date {raw:?}: {reason}")]
pub struct PeriodError {
    pub raw: String,
    pub reason: String,
}

pub(super) fn perr(raw: &str, reason: impl Into<String>) -> PeriodError {
    PeriodError {
        raw: raw.to_string(),
        reason: reason.into(),
    }
}
