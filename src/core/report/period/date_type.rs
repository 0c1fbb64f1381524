//! How long one period is (`dateType`) and which day starts a week (`weekType`), with
//! the API's codes for both.

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

/// The `dateType` of a report: how long one period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateType {
    HalfHour,
    Hour,
    Day,
    /// A week; which day starts it is a [`WeekStart`] (the API's `weekType`).
    Week,
    Month,
}

impl DateType {
    pub const ALL: [DateType; 5] = [
        Self::HalfHour,
        Self::Hour,
        Self::Day,
        Self::Week,
        Self::Month,
    ];

    /// The API's `dateType` code: 11 half hour, 12 hour, 13 day, 14 week, 15 month.
    pub fn code(self) -> u8 {
        match self {
            Self::HalfHour => 11,
            Self::Hour => 12,
            Self::Day => 13,
            Self::Week => 14,
            Self::Month => 15,
        }
    }

    /// The spelling used in pipeline files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HalfHour => "half_hour",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// Length of a sub-day slot on the local clock; `None` for calendar periods.
    pub(super) fn slot_minutes(self) -> Option<i64> {
        match self {
            Self::HalfHour => Some(30),
            Self::Hour => Some(60),
            _ => None,
        }
    }
}

impl std::fmt::Display for DateType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first day of a week (the API's `weekType`: 0 Monday-Sunday, 1 Sunday-Saturday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeekStart {
    #[default]
    Monday,
    Sunday,
}

impl WeekStart {
    /// The API's `weekType` code.
    pub fn code(self) -> u8 {
        match self {
            Self::Monday => 0,
            Self::Sunday => 1,
        }
    }

    /// Days from the start of the week containing `d` to `d`.
    pub(super) fn days_into_week(self, d: NaiveDate) -> u32 {
        match self {
            Self::Monday => d.weekday().num_days_from_monday(),
            Self::Sunday => d.weekday().num_days_from_sunday(),
        }
    }
}
