//! Writing a period as the API's `result_date`, and reading one back into local labels
//! and instants (days, weeks and months directly; half hours and hours via the grid).

use super::date_type::{DateType, WeekStart};
use super::error::{PeriodError, perr};
use super::grid::{Period, PeriodGrid, add_minutes, midnight};
use super::tokens::{Tok, tokens};
use crate::core::timeutil::resolve_local;
use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, NaiveTime};
use chrono_tz::Tz;

impl PeriodGrid {
    /// The period as the API writes `result_date`: `2024-02-21 16:30 2024-02-21 17:00`
    /// (a slot ending at midnight ends `24:00` of its own day), `2024-02-21`,
    /// `2024-02-19 2024-02-25` (first and last day), `2024-02`.
    pub fn format_result_date(&self, p: Period) -> String {
        let (start, end) = self.labels(p);
        match self.date_type {
            DateType::HalfHour | DateType::Hour => {
                let (end_date, end_time) = end_of_range(end);
                format!(
                    "{} {} {end_date} {end_time}",
                    start.date(),
                    start.format("%H:%M")
                )
            }
            DateType::Day => start.date().to_string(),
            DateType::Week => format!("{} {}", start.date(), last_day(end)),
            DateType::Month => start.format("%Y-%m").to_string(),
        }
    }
}

/// An end label as the API's `(date, "HH:mm")` pair: local midnight is `24:00` of the
/// day before, so that a range of whole days names its last day.
pub(crate) fn end_of_range(end: NaiveDateTime) -> (NaiveDate, String) {
    if end.time() == NaiveTime::MIN {
        (last_day(end), "24:00".to_string())
    } else {
        (end.date(), end.format("%H:%M").to_string())
    }
}

/// The last day of a range whose end label is the midnight `end`.
pub(super) fn last_day(end: NaiveDateTime) -> NaiveDate {
    end.date().pred_opt().unwrap_or(end.date())
}

fn time_label(raw: &str, d: NaiveDate, h: u32, m: u32) -> Result<NaiveDateTime, PeriodError> {
    if h == 24 {
        return d
            .succ_opt()
            .map(midnight)
            .ok_or_else(|| perr(raw, "date out of range"));
    }
    d.and_hms_opt(h, m, 0)
        .ok_or_else(|| perr(raw, format!("{h:02}:{m:02} is not a time of day")))
}

/// Reads a `result_date` of a report of `date_type` in the zone `tz` into the period's
/// instants. Accepted forms (whitespace anywhere, padding, `:` with spaces around it):
///
/// - half hour / hour: `2024-02-21 16:30 2024-02-21 17:00`,
///   ` 2022-03-17 16 : 30 2022-03-17 17 : 00 `, `2024-02-21 23:30 2024-02-21 24:00`
///   (`24:00` is the end of that day), `2024-02-21 16:30 17:00`, `2024-02-21 16:30-17:00`,
///   or the start alone `2024-02-21 16:30`; the slot must be 30 / 60 local minutes on the
///   grid (`16:30` starts a half hour, not an hour).
/// - day: `2024-02-21`, `2024-02-21 2024-02-21`, `2024-02-21 00:00 2024-02-21 24:00`.
/// - week: first and last day, inclusive: `2024-02-19 2024-02-25`, `2024-02-19~2024-02-25`,
///   `2024-02-19 - 2024-02-25`; the period ends at local midnight after the last day. A
///   span of 1 to 7 days is accepted (a week cut by the edge of a query);
///   [`PeriodGrid::parse_result_date`] also demands a whole week of the grid.
/// - month: `2024-02`, `2024-02-01 2024-02-29` (days within one month).
///
/// Errors carry the raw string; nothing here panics.
pub fn parse_result_date(raw: &str, date_type: DateType, tz: Tz) -> Result<Period, PeriodError> {
    if date_type.slot_minutes().is_some() {
        // A half hour or hour is only known with its offset: ask the grid (issue 13).
        return PeriodGrid::new(date_type, WeekStart::Monday, tz).parse_result_date(raw);
    }
    let toks = tokens(raw).map_err(|why| perr(raw, why))?;
    let (start, end) = labels_of(raw, &toks, date_type)?;
    let p = Period {
        start: resolve_local(tz, start),
        end: resolve_local(tz, end),
    };
    if p.start >= p.end {
        return Err(perr(
            raw,
            format!("names no time in {tz}: the clocks skip it (a DST change)"),
        ));
    }
    Ok(p)
}

/// The start label and the end label (if sent) of a half hour or hour. Whether they name
/// a period is the grid's to say ([`PeriodGrid::candidates`]): across a DST change the end
/// label need not be the start + 30 / 60 minutes.
pub(super) fn slot_labels(
    raw: &str,
    toks: &[Tok],
    date_type: DateType,
) -> Result<(NaiveDateTime, Option<NaiveDateTime>), PeriodError> {
    let (start, end) = match *toks {
        [
            Tok::Date(d1),
            Tok::Time(h1, m1),
            Tok::Date(d2),
            Tok::Time(h2, m2),
        ] => (
            time_label(raw, d1, h1, m1)?,
            Some(time_label(raw, d2, h2, m2)?),
        ),
        [Tok::Date(d), Tok::Time(h1, m1), Tok::Time(h2, m2)] => (
            time_label(raw, d, h1, m1)?,
            Some(time_label(raw, d, h2, m2)?),
        ),
        [Tok::Date(d), Tok::Time(h, m)] => (time_label(raw, d, h, m)?, None),
        _ => {
            return Err(perr(
                raw,
                format!("this is not the form of a {date_type} period"),
            ));
        }
    };
    if toks.iter().skip(1).take(1).any(|t| *t == Tok::Time(24, 0)) {
        return Err(perr(raw, "24:00 can only end a period"));
    }
    Ok((start, end))
}

/// The local labels a token list names, checked against the date type.
fn labels_of(
    raw: &str,
    toks: &[Tok],
    date_type: DateType,
) -> Result<(NaiveDateTime, NaiveDateTime), PeriodError> {
    let wrong_form = |what: &str| {
        perr(
            raw,
            format!("{what} is not the form of a {date_type} period"),
        )
    };
    match date_type {
        DateType::HalfHour | DateType::Hour => {
            let step = date_type.slot_minutes().unwrap_or(60);
            let (start, end) = slot_labels(raw, toks, date_type)?;
            Ok((start, end.unwrap_or_else(|| add_minutes(start, step))))
        }
        DateType::Day => {
            let d = match *toks {
                [Tok::Date(d)] => d,
                [Tok::Date(d1), Tok::Date(d2)] if d1 == d2 => d1,
                [
                    Tok::Date(d1),
                    Tok::Time(0, 0),
                    Tok::Date(d2),
                    Tok::Time(24, 0),
                ] if d1 == d2 => d1,
                [
                    Tok::Date(d1),
                    Tok::Time(0, 0),
                    Tok::Date(d2),
                    Tok::Time(0, 0),
                ] if d1.succ_opt() == Some(d2) => d1,
                [Tok::Date(_), Tok::Date(_)] => {
                    return Err(perr(raw, "a day period names one day"));
                }
                _ => return Err(wrong_form("this")),
            };
            let next = d.succ_opt().ok_or_else(|| perr(raw, "date out of range"))?;
            Ok((midnight(d), midnight(next)))
        }
        DateType::Week => {
            let [Tok::Date(first), Tok::Date(last)] = *toks else {
                return Err(wrong_form("this"));
            };
            let days = (last - first).num_days();
            if !(0..=6).contains(&days) {
                return Err(perr(
                    raw,
                    format!("a week spans 1 to 7 days, not {}", days + 1),
                ));
            }
            let next = last
                .succ_opt()
                .ok_or_else(|| perr(raw, "date out of range"))?;
            Ok((midnight(first), midnight(next)))
        }
        DateType::Month => {
            let (first, last) = match *toks {
                [Tok::Month(m)] => {
                    let next = m
                        .checked_add_months(Months::new(1))
                        .ok_or_else(|| perr(raw, "date out of range"))?;
                    (m, next.pred_opt().unwrap_or(m))
                }
                [Tok::Date(first), Tok::Date(last)] => (first, last),
                _ => return Err(wrong_form("this")),
            };
            if last < first || (first.year(), first.month()) != (last.year(), last.month()) {
                return Err(perr(raw, "a month period lies within one calendar month"));
            }
            let next = last
                .succ_opt()
                .ok_or_else(|| perr(raw, "date out of range"))?;
            Ok((midnight(first), midnight(next)))
        }
    }
}
