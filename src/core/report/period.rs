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
//! (property tested below in four zones).

use crate::core::timeutil::resolve_local;
use chrono::{
    DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};

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

    /// Whether periods are runs of elapsed time (half hours, hours; see the module doc).
    fn is_elapsed(&self) -> bool {
        self.date_type.slot_minutes().is_some()
    }

    /// The UTC offset in force at `t`, in seconds.
    fn offset_secs(&self, t: DateTime<Utc>) -> i32 {
        self.tz
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    }

    /// The period holding the instant `t`.
    pub fn period_of(&self, t: DateTime<Utc>) -> Period {
        if self.is_elapsed() {
            self.elapsed_period_of(t)
        } else {
            self.calendar_period_of(t)
        }
    }

    /// issue 13: a half hour or hour is the run of instants around `t` with `t`'s slot
    /// label and `t`'s UTC offset: the slot on the wall clock of that offset, cut where
    /// the offset changes inside it. So the two passes of a repeated hour are two periods
    /// and a skipped slot is none.
    fn elapsed_period_of(&self, t: DateTime<Utc>) -> Period {
        let off = self.offset_secs(t);
        let shift = Duration::seconds(i64::from(off));
        let label = self.floor_label(t.naive_utc() + shift);
        let next = self.next_label(label);
        let at = |local: NaiveDateTime| {
            local
                .checked_sub_signed(shift)
                .map_or(t, |utc| utc.and_utc())
        };
        let (mut start, mut end) = (at(label), at(next));
        let same = |ms: i64| {
            DateTime::from_timestamp_millis(ms).is_some_and(|x| self.offset_secs(x) == off)
        };
        // Real zones change offset at most once within an hour, so each side has at most
        // one change to find.
        if self.offset_secs(start) != off {
            let ms = first_true(start.timestamp_millis(), t.timestamp_millis(), same);
            start = DateTime::from_timestamp_millis(ms).unwrap_or(t);
        }
        let last = end - Duration::milliseconds(1);
        if last > t && self.offset_secs(last) != off {
            let ms = first_true(t.timestamp_millis(), last.timestamp_millis(), |ms| {
                !same(ms)
            });
            end = DateTime::from_timestamp_millis(ms).unwrap_or(end);
        }
        if start > t || end <= t {
            // Unreachable with real zones; a one-millisecond period keeps callers total.
            return Period {
                start: t,
                end: t + Duration::milliseconds(1),
            };
        }
        Period { start, end }
    }

    /// Days, weeks and months: the local calendar slot of `t`, its labels resolved.
    ///
    /// Starts from the slot of `t`'s local wall-clock time and walks to the neighbouring
    /// slot while `t` is outside it (a zone whose clocks jump over midnight).
    fn calendar_period_of(&self, t: DateTime<Utc>) -> Period {
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

    /// The local labels of a period of this grid on the wall clock: its slot label and
    /// the next slot's (`00:00` of the next day at the end of a day). Both passes of a
    /// repeated hour have the same labels.
    pub fn labels(&self, p: Period) -> (NaiveDateTime, NaiveDateTime) {
        let start = self.floor_label(p.start.with_timezone(&self.tz).naive_local());
        (start, self.next_label(start))
    }

    /// issue 13: the labels of a half hour or hour as the local times of its instants (the
    /// other rendering servers use): the first pass of New York's repeated 2024-11-03 hour
    /// is `01:00` to `01:00`, its end being 01:00 EST. Away from a DST change, the same as
    /// [`Self::labels`].
    pub fn instant_labels(&self, p: Period) -> (NaiveDateTime, NaiveDateTime) {
        let local = |t: DateTime<Utc>| {
            let l = t.with_timezone(&self.tz).naive_local();
            l.with_second(0)
                .and_then(|l| l.with_nanosecond(0))
                .unwrap_or(l)
        };
        (local(p.start), local(p.end))
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

    /// The period a `result_date` read alone names: its earliest candidate
    /// ([`Self::candidates`]). Rows of one answer are read with [`Self::resolve_rows`],
    /// which tells the two passes of a repeated hour apart.
    pub fn parse_result_date(&self, raw: &str) -> Result<Period, PeriodError> {
        let c = self.candidates(raw)?;
        c.first()
            .copied()
            .ok_or_else(|| perr(raw, "names no period"))
    }

    /// issue 13: every period of the grid a `result_date` may name, in time order (never
    /// empty). A half hour or hour matches a period when its labels are the period's
    /// wall-clock labels ([`Self::labels`]) or the local times of its instants
    /// ([`Self::instant_labels`]); a start alone matches on the start label. Two
    /// candidates are the two passes of a repeated slot. A day, week or month has one:
    /// [`parse_result_date`], and it must be a period of this grid (a week of the right
    /// first day, a whole month): a `result_date` that names something else means the
    /// response is not the report that was asked for.
    pub fn candidates(&self, raw: &str) -> Result<Vec<Period>, PeriodError> {
        if self.is_elapsed() {
            return self.slot_candidates(raw);
        }
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
        Ok(vec![p])
    }

    fn slot_candidates(&self, raw: &str) -> Result<Vec<Period>, PeriodError> {
        let toks = tokens(raw).map_err(|why| perr(raw, why))?;
        let (start, end) = slot_labels(raw, &toks, self.date_type)?;
        let step = self.date_type.slot_minutes().unwrap_or(60);
        let base = resolve_local(self.tz, start);
        // DST changes move the wall clock by at most two hours.
        let reach = Duration::hours(3);
        let mut out: Vec<Period> = Vec::new();
        for p in self.periods(base - reach, base + reach + Duration::minutes(step)) {
            let (wall, instants) = (self.labels(p), self.instant_labels(p));
            let hit = match end {
                Some(end) => wall == (start, end) || instants == (start, end),
                None => wall.0 == start || instants.0 == start,
            };
            if hit && !out.contains(&p) {
                out.push(p);
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
        let minutes = i64::from(start.hour()) * 60 + i64::from(start.minute());
        let why = if minutes % step != 0 {
            format!(
                "{} does not start a {} slot",
                start.format("%H:%M"),
                self.date_type
            )
        } else if self.tz.from_local_datetime(&start).earliest().is_none() {
            format!(
                "names no time in {}: the clocks skip it (a DST change)",
                self.tz
            )
        } else {
            format!(
                "a {} period is {step} local minutes long (across a DST change its end may \
                 also read as the local time of its end instant), in {}",
                self.date_type, self.tz
            )
        };
        Err(perr(raw, why))
    }

    /// issue 13: the periods of the rows of one answer, given as `(result_date, key)` in
    /// the order sent, where `key` is the row's dimension value (agent, relay number,
    /// department; empty for a report by time alone). Per key, a row with one candidate
    /// ([`Self::candidates`]) takes it; then each row with several takes, in order, the
    /// earliest candidate that no row of its key has taken. The repeated hour's
    /// `01:00 02:00` sent twice is thus its first pass, then its second, whether the rows
    /// of a period come together or each key's rows run through the day; and with the
    /// other rendering (`01:00 01:00`, then `01:00 02:00`) the order does not matter.
    pub fn resolve_rows(&self, rows: &[(&str, &str)]) -> Vec<Result<Period, PeriodError>> {
        let mut cache: HashMap<&str, Result<Vec<Period>, PeriodError>> = HashMap::new();
        let found: Vec<Result<Vec<Period>, PeriodError>> = rows
            .iter()
            .map(|(raw, _)| {
                cache
                    .entry(raw)
                    .or_insert_with(|| self.candidates(raw))
                    .clone()
            })
            .collect();
        let mut taken: HashSet<(&str, Period)> = HashSet::new();
        let mut out: Vec<Option<Result<Period, PeriodError>>> = vec![None; rows.len()];
        for (i, c) in found.iter().enumerate() {
            match c {
                Err(e) => out[i] = Some(Err(e.clone())),
                Ok(ps) if ps.len() == 1 => {
                    taken.insert((rows[i].1, ps[0]));
                    out[i] = Some(Ok(ps[0]));
                }
                Ok(_) => {}
            }
        }
        for (i, c) in found.iter().enumerate() {
            let Ok(ps) = c else { continue };
            if ps.len() < 2 {
                continue;
            }
            let key = rows[i].1;
            let p = ps
                .iter()
                .find(|p| !taken.contains(&(key, **p)))
                .unwrap_or(&ps[0]);
            taken.insert((key, *p));
            out[i] = Some(Ok(*p));
        }
        out.into_iter()
            .zip(rows)
            .map(|(r, (raw, _))| r.unwrap_or_else(|| Err(perr(raw, "names no period"))))
            .collect()
    }
}

/// The smallest `x` in `(lo, hi]` with `f(x)`, for `f(lo)` false and `f(hi)` true and `f`
/// changing once in between.
fn first_true(mut lo: i64, mut hi: i64, f: impl Fn(i64) -> bool) -> i64 {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if f(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
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
fn slot_labels(
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Asia::Singapore;
    use chrono_tz::Australia::Lord_Howe;
    use chrono_tz::Europe::London;
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
        let h = grid(DateType::Hour, New_York);
        assert_eq!(h.periods(day.start, day.end).count(), 23);
        // The hour before the gap, as the instants rendering writes it: 01:00 to 03:00 EDT.
        let before_gap = h.period_of(t("2024-03-10T06:30:00Z"));
        assert_eq!(
            h.parse_result_date("2024-03-10 01:00 2024-03-10 03:00"),
            Ok(before_gap)
        );
        assert_eq!(
            h.parse_result_date("2024-03-10 01:00 2024-03-10 02:00"),
            Ok(before_gap)
        );
    }

    /// issue 13 (was `fall_back_repeat_is_one_period`, the old rule): the repeated hour
    /// is two periods, told apart in both renderings servers use.
    #[test]
    fn fall_back_repeat_is_two_periods() {
        // New York 2024-11-03: 01:00-02:00 happens twice (05:00Z-06:00Z EDT, 06:00Z-07:00Z EST).
        let h = grid(DateType::Hour, New_York);
        let edt = h.period_of(t("2024-11-03T05:30:00Z"));
        let est = h.period_of(t("2024-11-03T06:30:00Z"));
        assert_eq!(
            (edt.start, edt.end),
            (t("2024-11-03T05:00:00Z"), t("2024-11-03T06:00:00Z"))
        );
        assert_eq!(
            (est.start, est.end),
            (t("2024-11-03T06:00:00Z"), t("2024-11-03T07:00:00Z"))
        );
        assert_eq!(
            h.format_result_date(edt),
            "2024-11-03 01:00 2024-11-03 02:00"
        );
        assert_eq!(
            h.format_result_date(est),
            "2024-11-03 01:00 2024-11-03 02:00"
        );
        // Read alone, the wall-clock labels name both passes, earliest first.
        assert_eq!(
            h.candidates("2024-11-03 01:00 2024-11-03 02:00"),
            Ok(vec![edt, est])
        );
        // The other rendering: the EDT hour ends at 01:00 EST.
        assert_eq!(
            h.parse_result_date("2024-11-03 01:00 2024-11-03 01:00"),
            Ok(edt)
        );
        let day = grid(DateType::Day, New_York).period_of(t("2024-11-03T12:00:00Z"));
        assert_eq!(day.end - day.start, Duration::hours(25));
        assert_eq!(h.periods(day.start, day.end).count(), 25);

        // The answers of both renderings, in order, for two agents.
        for (answer, why) in [
            (
                ["01:00 02:00", "01:00 02:00"],
                "wall clock, time then agent",
            ),
            (["01:00 01:00", "01:00 02:00"], "instants"),
            (
                ["01:00 02:00", "01:00 01:00"],
                "instants, second pass sent first",
            ),
        ] {
            let raws: Vec<String> = answer
                .iter()
                .map(|l| {
                    let (a, b) = l.split_once(' ').unwrap();
                    format!("2024-11-03 {a} 2024-11-03 {b}")
                })
                .collect();
            let rows: Vec<(&str, &str)> = ["a", "b"]
                .iter()
                .flat_map(|k| raws.iter().map(move |r| (r.as_str(), *k)))
                .collect();
            let got: Vec<Period> = h
                .resolve_rows(&rows)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            let first_is_edt = answer[0] != "01:00 02:00" || answer[1] != "01:00 01:00";
            let want = if first_is_edt { [edt, est] } else { [est, edt] };
            assert_eq!(got, [want, want].concat(), "{why}");
        }

        let hh = grid(DateType::HalfHour, New_York);
        let halves: Vec<Period> = hh
            .periods(t("2024-11-03T05:00:00Z"), t("2024-11-03T07:00:00Z"))
            .collect();
        assert_eq!(halves.len(), 4);
        assert!(
            halves
                .iter()
                .all(|p| p.end - p.start == Duration::minutes(30))
        );
        let wall: Vec<String> = halves.iter().map(|p| hh.format_result_date(*p)).collect();
        assert_eq!(
            wall,
            [
                "2024-11-03 01:00 2024-11-03 01:30",
                "2024-11-03 01:30 2024-11-03 02:00",
                "2024-11-03 01:00 2024-11-03 01:30",
                "2024-11-03 01:30 2024-11-03 02:00"
            ]
        );
        let instants: Vec<(NaiveDateTime, NaiveDateTime)> =
            halves.iter().map(|p| hh.instant_labels(*p)).collect();
        assert_eq!(instants[1].1.format("%H:%M").to_string(), "01:00");
        assert_eq!(
            hh.parse_result_date("2024-11-03 01:30 2024-11-03 01:00"),
            Ok(halves[1])
        );
        for raws in [
            wall.clone(),
            vec![
                "2024-11-03 01:00 2024-11-03 01:30".to_string(),
                "2024-11-03 01:30 2024-11-03 01:00".to_string(),
                "2024-11-03 01:00 2024-11-03 01:30".to_string(),
                "2024-11-03 01:30 2024-11-03 02:00".to_string(),
            ],
        ] {
            let rows: Vec<(&str, &str)> = raws.iter().map(|r| (r.as_str(), "")).collect();
            let got: Vec<Period> = hh
                .resolve_rows(&rows)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(got, halves, "{raws:?}");
        }
        assert_eq!(hh.periods(day.start, day.end).count(), 50);
        // A label of no period of the day is still an error naming it.
        let e = h
            .parse_result_date("2024-11-03 01:00 2024-11-03 03:00")
            .unwrap_err();
        assert!(e.reason.contains("60 local minutes"), "{e}");
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
                // The other rendering: the local times of the period's instants.
                let (s, e) = g.instant_labels(p);
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
                    if g.is_elapsed() {
                        // Alone, a repeated slot's labels name both passes (issue 13).
                        let c = g.candidates(&raw);
                        prop_assert!(c.as_ref().is_ok_and(|c| c.contains(p)), "{} {:?}", raw, c);
                    } else {
                        prop_assert_eq!(g.parse_result_date(&raw), Ok(*p), "{}", raw);
                    }
                }
            }
            for pair in ps.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start);
            }
        }

        /// issue 13: on the DST days of four zones, the half hours and hours of a local
        /// day are contiguous, hold every instant of the day exactly once, and number
        /// 25 / 50 on a fall-back day of an hour and 23 / 46 on a spring-forward one.
        #[test]
        fn every_instant_of_a_dst_day_is_in_one_period(
            zone in 0..ZONES.len(),
            hour in any::<bool>(),
            day in 0..DST_DAYS.len(),
            at_secs in 0i64..90_000,
        ) {
            let dt = if hour { DateType::Hour } else { DateType::HalfHour };
            let g = grid(dt, ZONES[zone]);
            let d = grid(DateType::Day, ZONES[zone]).period_of(t(DST_DAYS[day]));
            let ps: Vec<Period> = g.periods(d.start, d.end).collect();
            prop_assert_eq!(ps.first().map(|p| p.start), Some(d.start));
            prop_assert_eq!(ps.last().map(|p| p.end), Some(d.end));
            for pair in ps.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start);
            }
            let at = d.start + Duration::seconds(at_secs % (d.end - d.start).num_seconds());
            let holding: Vec<&Period> = ps.iter().filter(|p| p.contains(at)).collect();
            prop_assert_eq!(holding.len(), 1);
            prop_assert_eq!(*holding[0], g.period_of(at));
            let minutes = if hour { 60 } else { 30 };
            let whole_hours = (d.end - d.start).num_minutes() % 60 == 0;
            if whole_hours {
                prop_assert_eq!(ps.len() as i64, (d.end - d.start).num_minutes() / minutes);
                prop_assert!(ps.iter().all(|p| p.end - p.start == Duration::minutes(minutes)));
            }
        }

        /// issue 13: an answer over a DST day, in either rendering (chosen row by row),
        /// rows ordered period then key or key then period, resolves to the grid.
        #[test]
        fn answers_in_either_rendering_resolve_to_the_grid(
            zone in 0..ZONES.len(),
            hour in any::<bool>(),
            day in 0..DST_DAYS.len(),
            keys in 1usize..4,
            key_first in any::<bool>(),
            renderings in proptest::collection::vec(0u8..3, 64),
        ) {
            let dt = if hour { DateType::Hour } else { DateType::HalfHour };
            let g = grid(dt, ZONES[zone]);
            let d = grid(DateType::Day, ZONES[zone]).period_of(t(DST_DAYS[day]));
            let ps: Vec<Period> = g.periods(d.start, d.end).collect();
            let names: Vec<String> = (0..keys).map(|k| format!("agent{k}")).collect();
            let mut order: Vec<(usize, usize)> = Vec::new();
            if key_first {
                for k in 0..keys { for i in 0..ps.len() { order.push((i, k)); } }
            } else {
                for i in 0..ps.len() { for k in 0..keys { order.push((i, k)); } }
            }
            let raws: Vec<String> = order
                .iter()
                .enumerate()
                .map(|(n, (i, _))| {
                    let p = ps[*i];
                    let (s, e) = match renderings[n % renderings.len()] {
                        0 => g.labels(p),
                        _ => g.instant_labels(p),
                    };
                    if renderings[(n + 1) % renderings.len()] == 2 {
                        format!(" {} {} ", s.format("%Y-%m-%d %H : %M"), e.format("%Y-%m-%d %H : %M"))
                    } else {
                        format!("{} {}", s.format("%Y-%m-%d %H:%M"), e.format("%Y-%m-%d %H:%M"))
                    }
                })
                .collect();
            let rows: Vec<(&str, &str)> = order
                .iter()
                .zip(&raws)
                .map(|((_, k), raw)| (raw.as_str(), names[*k].as_str()))
                .collect();
            let got = g.resolve_rows(&rows);
            for (n, (i, _)) in order.iter().enumerate() {
                prop_assert_eq!(&got[n], &Ok(ps[*i]), "{}", raws[n]);
            }
        }
    }
}
