//! Report periods: the grid of half hours, hours, days, weeks or months a report is cut
//! into, and the API's `result_date` strings that name one period.
//!
//! # Half hours and hours are elapsed time; days, weeks and months the local calendar
//!
//! The API aggregates by local time in `SOBOT_TIMEZONE` (the `timezoneid` header). A
//! period is named by two local *labels*: `16:30-17:00`, `2024-02-21`, the week of Monday
//! 2024-02-19, February 2024.
//!
//! **Half hours and hours** (issue 13) are the runs of instants that share one local slot
//! label *and* one UTC offset. Away from a DST change that is the slot `16:30-17:00`; on a
//! DST day:
//!
//! - **A fall-back repeat is two periods.** When clocks go back from `02:00` to `01:00`
//!   (America/New_York 2024-11-03), the hour `01:00-02:00` happens twice: once in EDT
//!   (05:00Z-06:00Z), once in EST (06:00Z-07:00Z). Each is its own period, with its own
//!   `period_start`; the day has 25 hours and 50 half hours.
//! - **A spring-forward gap has no period.** When clocks go forward over `02:00-03:00`,
//!   no instant has the labels `02:00-02:30` or `02:30-03:00`; `01:30-02:00` ends at the
//!   change and `03:00-03:30` starts there. The day has 23 hours and 46 half hours.
//! - A change that is not a whole slot (Lord Howe's 30 minutes) gives one short period:
//!   the hour whose offset changes in the middle is cut at the change.
//!
//! Every instant is in exactly one period, and the periods are contiguous.
//!
//! **Days, weeks and months** start at local midnight (or the first instant after it, in
//! zones whose clocks jump over midnight): their labels are resolved by
//! [`crate::core::timeutil::resolve_local`], and a day may be 23 or 25 hours long.
//!
//! # Reading `result_date` across a DST change
//!
//! The two passes of a repeated hour carry the same local labels, and servers render the
//! end label in one of two ways (both seen): on the wall clock as start label + slot
//! length (the repeated hour reads `01:00 02:00` twice), or as the local time of the
//! period's end instant (the first pass reads `01:00 01:00`, its end being 01:00 EST; the
//! half hour `01:30 01:00`). A `result_date` therefore names a set of *candidate* periods:
//! every period of the grid whose labels, in either rendering, are the ones sent
//! ([`PeriodGrid::candidates`]). One candidate is the usual case. The rows of one answer
//! are resolved together ([`PeriodGrid::resolve_rows`]): per dimension value (agent,
//! relay number, department), a row with one candidate takes it, then each row with
//! several takes the earliest candidate not yet taken, in the order the rows were sent.
//! So `01:00 02:00` twice is the EDT hour then the EST hour, and `01:00 01:00` followed
//! by `01:00 02:00` is EDT then EST too. A single `result_date` read alone
//! ([`PeriodGrid::parse_result_date`]) means its earliest candidate.
//!
//! The round trip `format -> resolve` is an identity over DST days in both renderings
//! (property tested in four zones, `tests/properties.rs`).

mod candidates;
mod date_type;
mod dst;
mod error;
mod grid;
mod result_date;
mod tokens;

#[cfg(test)]
mod tests;

pub use date_type::{DateType, WeekStart};
pub use error::PeriodError;
pub use grid::{Period, PeriodGrid, Periods};
pub(crate) use result_date::end_of_range;
pub use result_date::parse_result_date;
