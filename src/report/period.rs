//! Report periods: the grid of half hours, hours, days, weeks or months a report is cut
//! into, and the API's `result_date` strings that name one period.
//!
//! # The grid lives on the local wall clock
//!
//! The API aggregates by local time in `SOBOT_TIMEZONE` (the `timezoneid` header), so a
//! period is a slot of the local calendar: `16:30-17:00`, `2024-02-21`, the week of
//! Monday 2024-02-19, February 2024. Each slot is named by two local *labels* (its first
//! local minute and the first local minute of the next slot); its instants are those labels
//! resolved by [`crate::timeutil::resolve_local`], the rule used everywhere in the crate (a
//! repeated local time means its earliest instant, a skipped one the first instant after
//! the gap). Consequences on DST days, all tested:
//!
//! - **Skipped slots disappear.** When clocks go forward over `02:00-03:00`, the slots
//!   `02:00-02:30` and `02:30-03:00` resolve to an empty range and are not periods;
//!   `01:30-02:00` ends at the transition.
//! - **A repeated stretch belongs to the slot that ends after it.** When clocks go back
//!   from `02:00` to `01:00`, every label in `01:00-02:00` means its first occurrence,
//!   so the hour slot `01:00-02:00` runs from the first `01:00` to the (single) `02:00`:
//!   two real hours, one period. With half hours, `01:00-01:30` is the first pass only and
//!   `01:30-02:00` runs from the first `01:30` to `02:00`, taking in the whole repeat.
//!   Periods stay contiguous and non-overlapping, and every instant is in exactly one.
//! - Days, weeks and months start at local midnight (or the first instant after it, in
//!   zones whose clocks jump over midnight); a day may be 23 or 25 hours long.
//!
//! Because parsing a `result_date` resolves its labels by the same rule, the period the
//! API names and the period of the grid are the same pair of instants: the round trip
//! `format -> parse` is an identity (property tested below over DST days).

use crate::timeutil::resolve_local;
use chrono::{
    DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc,
};
use chrono_tz::Tz;
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
    fn slot_minutes(self) -> Option<i64> {
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
    fn days_into_week(self, d: NaiveDate) -> u32 {
        match self {
            Self::Monday => d.weekday().num_days_from_monday(),
            Self::Sunday => d.weekday().num_days_from_sunday(),
        }
    }
}

/// One report period, `[start, end)` as instants. `start < end` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

/// A `result_date` (or a range) that could not be read. Carries the raw string so the
/// converter can record it in `_errors` as it came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("result_date {raw:?}: {reason}")]
pub struct PeriodError {
    pub raw: String,
    pub reason: String,
}

fn perr(raw: &str, reason: impl Into<String>) -> PeriodError {
    PeriodError {
        raw: raw.to_string(),
        reason: reason.into(),
    }
}

/// The periods of one date type in one time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodGrid {
    pub date_type: DateType,
    /// Only used by [`DateType::Week`].
    pub week_start: WeekStart,
    pub tz: Tz,
}

/// Label arithmetic that saturates instead of panicking at the ends of chrono's range
/// (only reachable with absurd instants; never with the API's dates).
fn add_minutes(t: NaiveDateTime, m: i64) -> NaiveDateTime {
    t.checked_add_signed(Duration::minutes(m))
        .unwrap_or(if m >= 0 {
            NaiveDateTime::MAX
        } else {
            NaiveDateTime::MIN
        })
}

fn midnight(d: NaiveDate) -> NaiveDateTime {
    d.and_time(NaiveTime::MIN)
}

impl PeriodGrid {
    pub fn new(date_type: DateType, week_start: WeekStart, tz: Tz) -> Self {
        Self {
            date_type,
            week_start,
            tz,
        }
    }

    /// The label of the slot holding the local time `local`.
    fn floor_label(&self, local: NaiveDateTime) -> NaiveDateTime {
        let date = local.date();
        match self.date_type {
            DateType::HalfHour | DateType::Hour => {
                let step = self.date_type.slot_minutes().unwrap_or(60) as u32;
                let minute = local.minute() - local.minute() % step;
                date.and_hms_opt(local.hour(), minute, 0)
                    .unwrap_or_else(|| midnight(date))
            }
            DateType::Day => midnight(date),
            DateType::Week => {
                let back = i64::from(self.week_start.days_into_week(date));
                midnight(
                    date.checked_sub_signed(Duration::days(back))
                        .unwrap_or(NaiveDate::MIN),
                )
            }
            DateType::Month => midnight(date.with_day(1).unwrap_or(date)),
        }
    }

    /// The label of the slot after the one labelled `label`.
    fn next_label(&self, label: NaiveDateTime) -> NaiveDateTime {
        match self.date_type {
            DateType::HalfHour => add_minutes(label, 30),
            DateType::Hour => add_minutes(label, 60),
            DateType::Day => add_minutes(label, 24 * 60),
            DateType::Week => add_minutes(label, 7 * 24 * 60),
            DateType::Month => label
                .checked_add_months(Months::new(1))
                .unwrap_or(NaiveDateTime::MAX),
        }
    }

    /// The label of the slot before the one labelled `label`.
    fn prev_label(&self, label: NaiveDateTime) -> NaiveDateTime {
        match self.date_type {
            DateType::HalfHour => add_minutes(label, -30),
            DateType::Hour => add_minutes(label, -60),
            DateType::Day => add_minutes(label, -24 * 60),
            DateType::Week => add_minutes(label, -7 * 24 * 60),
            DateType::Month => label
                .checked_sub_months(Months::new(1))
                .unwrap_or(NaiveDateTime::MIN),
        }
    }

    fn resolve(&self, label: NaiveDateTime) -> DateTime<Utc> {
        resolve_local(self.tz, label)
    }

    /// The period holding the instant `t`.
    ///
    /// Starts from the slot of `t`'s local wall-clock time and walks to the neighbouring
    /// slot while `t` is outside it: needed in the second pass of a repeated hour, whose
    /// local labels resolve to the first pass.
    pub fn period_of(&self, t: DateTime<Utc>) -> Period {
        let mut label = self.floor_label(t.with_timezone(&self.tz).naive_local());
        // A handful of steps at most (a DST change moves one or two slots); the bound
        // only guards against a zone database we do not understand.
        for _ in 0..256 {
            let next = self.next_label(label);
            let (start, end) = (self.resolve(label), self.resolve(next));
            if start <= t && t < end {
                return Period { start, end };
            }
            if next == label {
                break;
            }
            label = if t >= end {
                next
            } else {
                self.prev_label(label)
            };
        }
        // Unreachable with real zones; a one-millisecond period keeps callers total.
        Period {
            start: t,
            end: t + Duration::milliseconds(1),
        }
    }

    /// The start of the period after the one holding `start` (for a period start: its end).
    pub fn next(&self, start: DateTime<Utc>) -> DateTime<Utc> {
        self.period_of(start).end
    }

    /// Whether `t` is the first instant of a period.
    pub fn is_boundary(&self, t: DateTime<Utc>) -> bool {
        self.period_of(t).start == t
    }

    /// Every period that overlaps `[from, to)`, in order. When `from` and `to` are
    /// period boundaries these are exactly the periods inside the range; otherwise the
    /// first and last stick out of it.
    pub fn periods(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Periods {
        Periods {
            grid: *self,
            next: (from < to).then(|| self.period_of(from)),
            to,
        }
    }

    /// The local labels of a period of this grid: its first local minute and the first
    /// local minute of the next slot (`00:00` of the next day at the end of a day).
    pub fn labels(&self, p: Period) -> (NaiveDateTime, NaiveDateTime) {
        let start = self.floor_label(p.start.with_timezone(&self.tz).naive_local());
        (start, self.next_label(start))
    }

    /// The label of the slot starting at the boundary `t` (its local wall-clock time,
    /// floored to the grid; `00:00` for a day that starts after a gap at midnight).
    pub fn boundary_label(&self, t: DateTime<Utc>) -> NaiveDateTime {
        self.labels(self.period_of(t)).0
    }

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

    /// [`parse_result_date`], and the period must be one of this grid (a week of the right
    /// first day, a whole month): a `result_date` that names something else means the
    /// response is not the report that was asked for.
    pub fn parse_result_date(&self, raw: &str) -> Result<Period, PeriodError> {
        let p = parse_result_date(raw, self.date_type, self.tz)?;
        let on_grid = self.period_of(p.start);
        if on_grid != p {
            let want = self.format_result_date(on_grid);
            return Err(perr(
                raw,
                format!(
                    "is not a {} period of the grid{}; the period there is {want:?}",
                    self.date_type,
                    if self.date_type == DateType::Week {
                        format!(" (weeks starting {:?})", self.week_start)
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        Ok(p)
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
fn last_day(end: NaiveDateTime) -> NaiveDate {
    end.date().pred_opt().unwrap_or(end.date())
}

/// Iterator of [`PeriodGrid::periods`].
#[derive(Debug, Clone)]
pub struct Periods {
    grid: PeriodGrid,
    next: Option<Period>,
    to: DateTime<Utc>,
}

impl Iterator for Periods {
    type Item = Period;

    fn next(&mut self) -> Option<Period> {
        let p = self.next.take()?;
        if p.start >= self.to {
            return None;
        }
        if p.end < self.to {
            let following = self.grid.period_of(p.end);
            // Always true (periods are contiguous); guards against looping forever.
            if following.start > p.start {
                self.next = Some(following);
            }
        }
        Some(p)
    }
}

/// What a `result_date` is made of: dates, months and times, separators dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Date(NaiveDate),
    Month(NaiveDate),
    /// Hour and minute; hour 24 only with minute 0.
    Time(u32, u32),
}

fn read_digits(cs: &[char], i: &mut usize) -> String {
    let mut s = String::new();
    while let Some(c) = cs.get(*i).filter(|c| c.is_ascii_digit()) {
        s.push(*c);
        *i += 1;
    }
    s
}

fn skip_spaces(cs: &[char], i: &mut usize) {
    while cs.get(*i).is_some_and(|c| c.is_whitespace()) {
        *i += 1;
    }
}

/// Splits a `result_date` into dates, months and times. Whitespace anywhere (also around
/// `:`), `T` between a date and a time, and the range separators `~`, `-`, `–`, `—`, `,`,
/// `to` and `至` are accepted.
fn tokens(raw: &str) -> Result<Vec<Tok>, String> {
    let cs: Vec<char> = raw.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        skip_spaces(&cs, &mut i);
        let Some(&c) = cs.get(i) else { break };
        if c.is_ascii_digit() {
            let first = read_digits(&cs, &mut i);
            let sep = cs.get(i).copied();
            let digit_after = cs.get(i + 1).is_some_and(|c| c.is_ascii_digit());
            if first.len() == 4 && matches!(sep, Some('-') | Some('/')) && digit_after {
                let year: i32 = first.parse().map_err(|_| "bad year")?;
                i += 1;
                let month_s = read_digits(&cs, &mut i);
                let month: u32 = month_s.parse().map_err(|_| "bad month")?;
                if month_s.len() > 2 {
                    return Err(format!("{year}-{month_s} is not a month"));
                }
                if cs.get(i) == sep.as_ref() && cs.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                    let day_s = read_digits(&cs, &mut i);
                    let day: u32 = day_s.parse().map_err(|_| "bad day")?;
                    let d = NaiveDate::from_ymd_opt(year, month, day)
                        .filter(|_| day_s.len() <= 2)
                        .ok_or_else(|| format!("{year}-{month_s}-{day_s} is not a date"))?;
                    out.push(Tok::Date(d));
                    // `2024-02-21T16:30`
                    if cs.get(i) == Some(&'T') {
                        i += 1;
                    }
                } else {
                    let d = NaiveDate::from_ymd_opt(year, month, 1)
                        .ok_or_else(|| format!("{year}-{month_s} is not a month"))?;
                    out.push(Tok::Month(d));
                }
                continue;
            }
            let mut j = i;
            skip_spaces(&cs, &mut j);
            if first.len() <= 2 && cs.get(j) == Some(&':') {
                i = j + 1;
                skip_spaces(&cs, &mut i);
                let minute_s = read_digits(&cs, &mut i);
                let hour: u32 = first.parse().map_err(|_| "bad hour")?;
                let minute: u32 = minute_s
                    .parse()
                    .ok()
                    .filter(|_| minute_s.len() == 2)
                    .ok_or_else(|| format!("{first}:{minute_s} is not a time"))?;
                // Optional seconds, which must be zero: periods start on whole minutes.
                let mut k = i;
                skip_spaces(&cs, &mut k);
                if cs.get(k) == Some(&':') {
                    k += 1;
                    skip_spaces(&cs, &mut k);
                    let sec_s = read_digits(&cs, &mut k);
                    if sec_s.len() != 2 || sec_s != "00" {
                        return Err(format!(
                            "{first}:{minute_s}:{sec_s} is not a whole-minute time"
                        ));
                    }
                    i = k;
                }
                if minute > 59 || hour > 24 || (hour == 24 && minute != 0) {
                    return Err(format!("{first}:{minute_s} is not a time of day"));
                }
                out.push(Tok::Time(hour, minute));
                continue;
            }
            return Err(format!("unexpected number {first:?}"));
        }
        if matches!(c, '~' | '-' | '–' | '—' | ',' | '至') {
            i += 1;
            continue;
        }
        if (c == 't' || c == 'T') && cs.get(i + 1).is_some_and(|c| *c == 'o' || *c == 'O') {
            i += 2;
            continue;
        }
        return Err(format!("unexpected character {c:?}"));
    }
    Ok(out)
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
                _ => return Err(wrong_form("this")),
            };
            if toks.iter().skip(1).take(1).any(|t| *t == Tok::Time(24, 0)) {
                return Err(perr(raw, "24:00 can only end a period"));
            }
            let minutes = i64::from(start.hour()) * 60 + i64::from(start.minute());
            if minutes % step != 0 {
                return Err(perr(
                    raw,
                    format!(
                        "{} does not start a {date_type} slot",
                        start.format("%H:%M")
                    ),
                ));
            }
            let expected_end = add_minutes(start, step);
            match end {
                Some(end) if end != expected_end => Err(perr(
                    raw,
                    format!("a {date_type} period is {step} local minutes long"),
                )),
                _ => Ok((start, expected_end)),
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Asia::Singapore, Australia::Lord_Howe, Europe::London};
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn grid(dt: DateType, tz: Tz) -> PeriodGrid {
        PeriodGrid::new(dt, WeekStart::Monday, tz)
    }

    #[test]
    fn codes() {
        let codes: Vec<u8> = DateType::ALL.iter().map(|d| d.code()).collect();
        assert_eq!(codes, vec![11, 12, 13, 14, 15]);
        assert_eq!((WeekStart::Monday.code(), WeekStart::Sunday.code()), (0, 1));
    }

    #[test]
    fn every_form_the_api_uses() {
        let sg = Singapore;
        let p = |raw: &str, dt| parse_result_date(raw, dt, sg).unwrap();
        let day = p("2024-02-21", DateType::Day);
        assert_eq!(day.start, t("2024-02-21T00:00:00+08:00"));
        assert_eq!(day.end, t("2024-02-22T00:00:00+08:00"));
        assert_eq!(p(" 2024-02-21 ", DateType::Day), day);
        assert_eq!(p("2024-02-21 00:00 2024-02-21 24:00", DateType::Day), day);
        let half = p(
            " 2022-03-17 16 : 30 2022-03-17 17 : 00 ",
            DateType::HalfHour,
        );
        assert_eq!(half.start, t("2022-03-17T16:30:00+08:00"));
        assert_eq!(half.end, t("2022-03-17T17:00:00+08:00"));
        assert_eq!(
            p("2022-03-17 16:30 2022-03-17 17:00", DateType::HalfHour),
            half
        );
        assert_eq!(p("2022-03-17 16:30 17:00", DateType::HalfHour), half);
        assert_eq!(p("2022-03-17 16:30-17:00", DateType::HalfHour), half);
        assert_eq!(p("2022-03-17T16:30", DateType::HalfHour), half);
        assert_eq!(
            p(
                "2022-03-17 16:30:00 2022-03-17 17:00:00",
                DateType::HalfHour
            ),
            half
        );
        let last = p("2024-02-21 23:30 2024-02-21 24:00", DateType::HalfHour);
        assert_eq!(last.end, t("2024-02-22T00:00:00+08:00"));
        assert_eq!(
            p("2024-02-21 23:30 2024-02-22 00:00", DateType::HalfHour),
            last
        );
        let hour = p("2024-02-21 23 : 00 2024-02-21 24 : 00", DateType::Hour);
        assert_eq!(hour.start, t("2024-02-21T23:00:00+08:00"));
        let week = p("2024-02-19 2024-02-25", DateType::Week);
        assert_eq!(week.start, t("2024-02-19T00:00:00+08:00"));
        assert_eq!(week.end, t("2024-02-26T00:00:00+08:00"));
        for raw in [
            "2024-02-19~2024-02-25",
            "2024-02-19 ~ 2024-02-25",
            "2024-02-19 - 2024-02-25",
            "2024-02-19-2024-02-25",
            " 2024-02-19 to 2024-02-25 ",
            "2024/02/19 2024/02/25",
        ] {
            assert_eq!(p(raw, DateType::Week), week, "{raw}");
        }
        let month = p("2024-02", DateType::Month);
        assert_eq!(month.start, t("2024-02-01T00:00:00+08:00"));
        assert_eq!(month.end, t("2024-03-01T00:00:00+08:00"));
        assert_eq!(p("2024-02-01 2024-02-29", DateType::Month), month);
        assert_eq!(p("2024-02-01~2024-02-29", DateType::Month), month);
    }

    #[test]
    fn bad_values_are_errors_with_the_raw_string() {
        let sg = Singapore;
        for (raw, dt) in [
            ("", DateType::Day),
            ("yesterday", DateType::Day),
            ("2024-02-30", DateType::Day),
            ("2024-13", DateType::Month),
            ("2024-02-21 16:30 2024-02-21 17:00", DateType::Hour),
            ("2024-02-21 16:00 2024-02-21 16:45", DateType::HalfHour),
            ("2024-02-21 16:15", DateType::HalfHour),
            ("2024-02-21 24:00 2024-02-22 00:30", DateType::HalfHour),
            ("2024-02-21 16:60", DateType::Hour),
            ("2024-02-21 16:30:15", DateType::HalfHour),
            ("2024-02-21", DateType::Hour),
            ("2024-02-19 2024-02-26", DateType::Week),
            ("2024-02-25 2024-02-19", DateType::Week),
            ("2024-02-19", DateType::Week),
            ("2024-02-01 2024-03-01", DateType::Month),
            ("2024-02-21 2024-02-22", DateType::Day),
            ("2024-02-21 #", DateType::Day),
            ("20240221", DateType::Day),
        ] {
            let e = parse_result_date(raw, dt, sg).unwrap_err();
            assert_eq!(e.raw, raw);
            assert!(e.to_string().contains(&format!("{raw:?}")), "{e}");
        }
        // Strict parsing: the right form, but not a period of this grid.
        let sunday_weeks = PeriodGrid::new(DateType::Week, WeekStart::Sunday, sg);
        let e = sunday_weeks
            .parse_result_date("2024-02-19 2024-02-25")
            .unwrap_err();
        assert!(e.reason.contains("2024-02-18 2024-02-24"), "{e}");
        assert!(
            grid(DateType::Week, sg)
                .parse_result_date("2024-02-21 2024-02-25")
                .is_err()
        );
        assert!(
            grid(DateType::Month, sg)
                .parse_result_date("2024-02-02 2024-02-29")
                .is_err()
        );
        // A slot the clocks skip names no time.
        let e = parse_result_date(
            "2024-03-10 02:00 2024-03-10 02:30",
            DateType::HalfHour,
            New_York,
        )
        .unwrap_err();
        assert!(e.reason.contains("skip"), "{e}");
    }

    #[test]
    fn spring_forward_skips_slots() {
        // New York 2024-03-10: 02:00 EST -> 03:00 EDT at 07:00Z.
        let g = grid(DateType::HalfHour, New_York);
        let day = grid(DateType::Day, New_York).period_of(t("2024-03-10T12:00:00Z"));
        assert_eq!(day.end - day.start, Duration::hours(23));
        let slots: Vec<Period> = g.periods(day.start, day.end).collect();
        assert_eq!(slots.len(), 46);
        let labels: Vec<String> = slots.iter().map(|p| g.format_result_date(*p)).collect();
        assert!(labels.contains(&"2024-03-10 01:30 2024-03-10 02:00".to_string()));
        assert!(labels.contains(&"2024-03-10 03:00 2024-03-10 03:30".to_string()));
        assert!(!labels.iter().any(|l| l.contains(" 02:30")));
        let before = g.period_of(t("2024-03-10T06:59:00Z"));
        assert_eq!(before.end, t("2024-03-10T07:00:00Z"));
        assert_eq!(g.next(before.start), t("2024-03-10T07:00:00Z"));
        let after = g.period_of(t("2024-03-10T07:00:00Z"));
        assert_eq!(after.start, t("2024-03-10T07:00:00Z"));
        assert_eq!(after.end, t("2024-03-10T07:30:00Z"));
    }

    #[test]
    fn fall_back_repeat_is_one_period() {
        // New York 2024-11-03: 01:00-02:00 happens twice (05:00Z-06:00Z EDT, 06:00Z-07:00Z EST).
        let h = grid(DateType::Hour, New_York);
        let p = h.period_of(t("2024-11-03T06:30:00Z"));
        assert_eq!(
            (p.start, p.end),
            (t("2024-11-03T05:00:00Z"), t("2024-11-03T07:00:00Z"))
        );
        assert_eq!(h.format_result_date(p), "2024-11-03 01:00 2024-11-03 02:00");
        assert_eq!(
            h.parse_result_date("2024-11-03 01:00 2024-11-03 02:00")
                .unwrap(),
            p
        );
        let hh = grid(DateType::HalfHour, New_York);
        let first = hh.period_of(t("2024-11-03T05:10:00Z"));
        assert_eq!(
            (first.start, first.end),
            (t("2024-11-03T05:00:00Z"), t("2024-11-03T05:30:00Z"))
        );
        // The second pass of 01:00-01:30 (06:00Z-06:30Z) belongs to 01:30-02:00.
        let second = hh.period_of(t("2024-11-03T06:10:00Z"));
        assert_eq!(
            (second.start, second.end),
            (t("2024-11-03T05:30:00Z"), t("2024-11-03T07:00:00Z"))
        );
        let day = grid(DateType::Day, New_York).period_of(t("2024-11-03T12:00:00Z"));
        assert_eq!(day.end - day.start, Duration::hours(25));
        assert_eq!(hh.periods(day.start, day.end).count(), 48);
    }

    #[test]
    fn weeks_months_and_ranges() {
        let sg = Singapore;
        let mon = grid(DateType::Week, sg);
        let sun = PeriodGrid::new(DateType::Week, WeekStart::Sunday, sg);
        let wed = t("2024-02-21T10:00:00+08:00");
        assert_eq!(
            mon.format_result_date(mon.period_of(wed)),
            "2024-02-19 2024-02-25"
        );
        assert_eq!(
            sun.format_result_date(sun.period_of(wed)),
            "2024-02-18 2024-02-24"
        );
        let m = grid(DateType::Month, sg);
        assert_eq!(m.format_result_date(m.period_of(wed)), "2024-02");
        let months: Vec<String> = m
            .periods(
                t("2023-12-15T00:00:00+08:00"),
                t("2024-03-01T00:00:00+08:00"),
            )
            .map(|p| m.format_result_date(p))
            .collect();
        assert_eq!(months, vec!["2023-12", "2024-01", "2024-02"]);
        assert!(m.is_boundary(t("2024-03-01T00:00:00+08:00")));
        assert!(!m.is_boundary(wed));
        let empty: Vec<Period> = m.periods(wed, wed).collect();
        assert!(empty.is_empty());
        let d = grid(DateType::Day, sg);
        assert_eq!(
            d.periods(
                t("2024-02-21T00:00:00+08:00"),
                t("2024-02-24T00:00:00+08:00")
            )
            .count(),
            3
        );
        let h = grid(DateType::HalfHour, sg);
        let last = h.period_of(t("2024-02-21T23:45:00+08:00"));
        assert_eq!(
            h.format_result_date(last),
            "2024-02-21 23:30 2024-02-21 24:00"
        );
    }

    const ZONES: [Tz; 4] = [Singapore, New_York, Lord_Howe, London];

    /// Instants near the DST changes of the test zones (2024), where the rules bite.
    const DST_DAYS: [&str; 6] = [
        "2024-03-10T07:00:00Z", // New York forward
        "2024-11-03T06:00:00Z", // New York back
        "2024-04-06T15:00:00Z", // Lord Howe back (30 min)
        "2024-10-05T15:30:00Z", // Lord Howe forward (30 min)
        "2024-03-31T01:00:00Z", // London forward
        "2024-10-27T01:00:00Z", // London back
    ];

    /// Every way the API (or a tolerant reader of it) may write the period.
    fn spellings(g: &PeriodGrid, p: Period) -> Vec<String> {
        let (s, e) = g.labels(p);
        let mut out = vec![g.format_result_date(p)];
        match g.date_type {
            DateType::HalfHour | DateType::Hour => {
                out.push(format!(
                    " {} {} : {} {} {} : {} ",
                    s.date(),
                    s.format("%H"),
                    s.format("%M"),
                    e.date(),
                    e.format("%H"),
                    e.format("%M")
                ));
                out.push(format!(
                    "{} {}",
                    s.format("%Y-%m-%d %H:%M"),
                    e.format("%Y-%m-%d %H:%M")
                ));
            }
            DateType::Day => out.push(format!("{} 00:00 {} 24:00", s.date(), s.date())),
            DateType::Week => {
                let last = last_day(e);
                out.push(format!("{}~{last}", s.date()));
                out.push(format!("{} - {last}", s.date()));
            }
            DateType::Month => out.push(format!("{} {}", s.date(), last_day(e))),
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Whatever the API sends, reading it returns a value or an error, never a panic.
        #[test]
        fn garbage_never_panics(
            raw in "[0-9 :~T/\\-]{0,40}|\\PC{0,30}|( ?[0-9]{4}-[0-9]{1,2}(-[0-9]{1,3})?( [0-9]{1,2} ?: ?[0-9]{1,2}(:[0-9]{2})?)?[ ~-]{0,3}){1,3}",
            dt in 0..DateType::ALL.len(),
            zone in 0..ZONES.len(),
        ) {
            let g = PeriodGrid::new(DateType::ALL[dt], WeekStart::Sunday, ZONES[zone]);
            if let Err(e) = g.parse_result_date(&raw) {
                prop_assert_eq!(e.raw, raw);
            }
        }

        #[test]
        fn format_then_parse_is_the_same_period(
            zone in 0..ZONES.len(),
            dt in 0..DateType::ALL.len(),
            sunday in any::<bool>(),
            near_dst in any::<bool>(),
            day in 0..DST_DAYS.len(),
            offset_mins in -3000i64..3000,
            anywhere in 1_500_000_000i64..1_900_000_000i64,
        ) {
            let week_start = if sunday { WeekStart::Sunday } else { WeekStart::Monday };
            let g = PeriodGrid::new(DateType::ALL[dt], week_start, ZONES[zone]);
            let at = if near_dst {
                t(DST_DAYS[day]) + Duration::minutes(offset_mins)
            } else {
                DateTime::from_timestamp(anywhere, 0).unwrap()
            };
            // A few consecutive periods from `at`: every period of the grid there.
            let first = g.period_of(at);
            prop_assert!(first.contains(at));
            let ps: Vec<Period> = g.periods(first.start, first.start + Duration::hours(6)).collect();
            for p in &ps {
                prop_assert!(p.start < p.end);
                prop_assert_eq!(g.period_of(p.start), *p);
                prop_assert_eq!(g.period_of(p.end - Duration::milliseconds(1)), *p);
                for raw in spellings(&g, *p) {
                    prop_assert_eq!(g.parse_result_date(&raw), Ok(*p), "{}", raw);
                }
            }
            for pair in ps.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start);
            }
        }
    }
}
