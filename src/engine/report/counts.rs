//! What a report run adds to the run report.

use serde::Serialize;

/// What a report run adds to the run report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportCounts {
    /// Provisional windows fetched again.
    pub refetched_windows: u64,
    /// Periods whose totals changed on a re-fetch (each logged with old and new totals).
    pub restated_periods: u64,
    /// Indicators whose `amount` differed from their rows beyond the tolerance.
    pub amount_mismatches: u64,
    /// Rows whose `result_date` could not be read (null period, `_errors`).
    pub unreadable_periods: u64,
}

impl std::fmt::Display for ReportCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} provisional windows re-fetched, {} periods restated, {} amount mismatches, {} unreadable result_date",
            self.refetched_windows,
            self.restated_periods,
            self.amount_mismatches,
            self.unreadable_periods
        )
    }
}
