//! Tests of the period grid, by topic: the API's forms, DST days, and properties over
//! four zones.

use super::{DateType, PeriodGrid, WeekStart};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

mod dst;
mod forms;
mod properties;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn grid(dt: DateType, tz: Tz) -> PeriodGrid {
    PeriodGrid::new(dt, WeekStart::Monday, tz)
}
