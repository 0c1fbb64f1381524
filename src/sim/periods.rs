//! Report periods (`dateType`): half hours, hours, days, weeks and months of local wall
//! time, produced one at a time so a long range never materialises.
//!
//! Days, weeks and months are local calendar slots: their boundaries are local wall-clock
//! times resolved with the crate's DST rules (an ambiguous time means its earliest
//! instant, a time in a gap the end of the gap), and a day may be 23 or 25 hours long.
//!
//! Half hours and hours are elapsed time (issue 13): a period is a run of instants with
//! one wall-clock slot and one UTC offset. A fall-back day in New York has 25 hours and
//! 50 half hours, the repeated `01:00-02:00` being two periods (EDT, then EST); a
//! spring-forward day has 23 and 46, the skipped slots having no period. They are served
//! in time order, so the repeat's first pass comes first.
//!
//! The query range clips the first and last period's instants, while labels keep the
//! full period (a week row of a Wednesday-to-Friday query is still labelled Monday to
//! Sunday).
//!
//! # `result_date` of a half hour or hour, by dialect
//!
//! - `Enveloped`: both labels on the wall clock, the start label and the start label +
//!   the slot length: New York's repeated hour is `2024-11-03 01:00 2024-11-03 02:00`
//!   twice; its half hours `01:00 01:30` and `01:30 02:00`, twice each.
//! - `Literal`: each label is the local time of the period's instant (start, end): the
//!   first (EDT) `01:00` hour ends at 06:00Z, which is 01:00 EST, so it reads
//!   `2024-11-03 01:00 2024-11-03 01:00`; the first `01:30` half hour reads `01:30 01:00`;
//!   the second pass reads `01:00 02:00` (hour), `01:00 01:30` and `01:30 02:00` (half
//!   hours). In spring forward the hour before the gap reads `01:00 03:00` and the half
//!   hour `01:30 03:00`.
//!
//! Away from a DST change both dialects write the same labels.

use chrono::{
    DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike,
};
use chrono_tz::Tz;

use crate::core::timeutil::resolve_local;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateType {
    HalfHour,
    Hour,
    Day,
    /// `sunday_first`: weekType 1 (Sunday to Saturday); otherwise Monday to Sunday.
    Week {
        sunday_first: bool,
    },
    Month,
}

impl DateType {
    /// From the request's `dateType` (11-15) and `weekType`.
    pub fn from_code(date_type: i64, week_type: Option<i64>) -> Option<Self> {
        Some(match date_type {
            11 => Self::HalfHour,
            12 => Self::Hour,
            13 => Self::Day,
            14 => Self::Week {
                sunday_first: week_type == Some(1),
            },
            15 => Self::Month,
            _ => return None,
        })
    }

    /// The period boundary at or before `t`.
    fn floor(self, t: NaiveDateTime) -> NaiveDateTime {
        let date = t.date();
        match self {
            Self::HalfHour => {
                let m = t.minute() - t.minute() % 30;
                date.and_time(NaiveTime::from_hms_opt(t.hour(), m, 0).unwrap_or(NaiveTime::MIN))
            }
            Self::Hour => {
                date.and_time(NaiveTime::from_hms_opt(t.hour(), 0, 0).unwrap_or(NaiveTime::MIN))
            }
            Self::Day => date.and_time(NaiveTime::MIN),
            Self::Week { sunday_first } => {
                let back = if sunday_first {
                    date.weekday().num_days_from_sunday()
                } else {
                    date.weekday().num_days_from_monday()
                };
                (date - Duration::days(i64::from(back))).and_time(NaiveTime::MIN)
            }
            Self::Month => date.with_day(1).unwrap_or(date).and_time(NaiveTime::MIN),
        }
    }

    /// Minutes of a half hour or hour; `None` for calendar periods.
    fn slot_minutes(self) -> Option<i64> {
        match self {
            Self::HalfHour => Some(30),
            Self::Hour => Some(60),
            _ => None,
        }
    }

    /// The boundary after `b` (a boundary).
    fn next(self, b: NaiveDateTime) -> NaiveDateTime {
        match self {
            Self::HalfHour => b + Duration::minutes(30),
            Self::Hour => b + Duration::hours(1),
            Self::Day => b + Duration::days(1),
            Self::Week { .. } => b + Duration::days(7),
            Self::Month => b
                .checked_add_months(Months::new(1))
                .unwrap_or(b + Duration::days(31)),
        }
    }
}

/// One period of a query: its instants (clipped to the range) and its local labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    /// Position among the query's periods, from 0.
    pub index: usize,
    /// `[start_ms, end_ms)`: the instants this period's figures cover.
    pub start_ms: i64,
    pub end_ms: i64,
    /// Local start and end of the whole period on the wall clock: the slot label and the
    /// next slot's (the next boundary).
    pub local_start: NaiveDateTime,
    pub local_end: NaiveDateTime,
    /// issue 13: the instants of the whole period, before clipping to the query range
    /// (what a `period_start` of the period means; the `Literal` labels).
    pub full_start_ms: i64,
    pub full_end_ms: i64,
    /// The local times of `full_start_ms` and `full_end_ms` (minute-truncated).
    pub instant_start: NaiveDateTime,
    pub instant_end: NaiveDateTime,
}

const MINUTE_MS: i64 = 60_000;

fn offset_ms(tz: Tz, ms: i64) -> i64 {
    let utc = DateTime::from_timestamp_millis(ms).unwrap_or_default();
    i64::from(
        tz.offset_from_utc_datetime(&utc.naive_utc())
            .fix()
            .local_minus_utc(),
    ) * 1000
}

fn wall(ms: i64) -> NaiveDateTime {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .naive_utc()
}

/// The local time of instant `ms` in `tz`, to the minute.
fn local_of(tz: Tz, ms: i64) -> NaiveDateTime {
    let l = wall(ms + offset_ms(tz, ms));
    l.with_second(0).unwrap_or(l)
}

/// The half hour or hour holding instant `at`: its wall-clock slot under `at`'s offset,
/// narrowed minute by minute to where that offset holds (zones change offset on whole
/// minutes, at most once in an hour). Returns the slot label and the instants.
fn slot_at(tz: Tz, date_type: DateType, at: i64) -> (NaiveDateTime, i64, i64) {
    let step = date_type.slot_minutes().unwrap_or(60) * MINUTE_MS;
    let off = offset_ms(tz, at);
    let label = date_type.floor(wall(at + off));
    let label_ms = label.and_utc().timestamp_millis();
    let mut start = label_ms - off;
    while offset_ms(tz, start) != off && start < at {
        start += MINUTE_MS;
    }
    let mut end = label_ms + step - off;
    let mut probe = at - at.rem_euclid(MINUTE_MS) + MINUTE_MS;
    while probe < end {
        if offset_ms(tz, probe) != off {
            end = probe;
            break;
        }
        probe += MINUTE_MS;
    }
    (label, start.min(at), end)
}

/// The periods of `[start, end)` (local times in `tz`) for `date_type`, lazily.
pub fn periods(
    tz: Tz,
    date_type: DateType,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> impl Iterator<Item = Period> {
    let range_start = resolve_local(tz, start).timestamp_millis();
    let range_end = resolve_local(tz, end).timestamp_millis();
    let mut boundary = date_type.floor(start);
    let mut index = 0usize;
    let mut at = range_start;
    std::iter::from_fn(move || {
        if let Some(minutes) = date_type.slot_minutes() {
            if at >= range_end {
                return None;
            }
            let (label, s, e) = slot_at(tz, date_type, at);
            at = e;
            let p = Period {
                index,
                start_ms: s.max(range_start),
                end_ms: e.min(range_end),
                local_start: label,
                local_end: label + Duration::minutes(minutes),
                full_start_ms: s,
                full_end_ms: e,
                instant_start: local_of(tz, s),
                instant_end: local_of(tz, e),
            };
            index += 1;
            return Some(p);
        }
        loop {
            if boundary >= end || range_start >= range_end {
                return None;
            }
            let next = date_type.next(boundary);
            let full_start_ms = resolve_local(tz, boundary).timestamp_millis();
            let full_end_ms = resolve_local(tz, next).timestamp_millis();
            let s = full_start_ms.max(range_start);
            let e = full_end_ms.min(range_end);
            let local_start = boundary;
            boundary = next;
            if e > s {
                let p = Period {
                    index,
                    start_ms: s,
                    end_ms: e,
                    local_start,
                    local_end: next,
                    full_start_ms,
                    full_end_ms,
                    instant_start: local_start,
                    instant_end: next,
                };
                index += 1;
                return Some(p);
            }
        }
    })
}

/// `result_date` of a period, in the API document's forms: `2024-02-21` (day),
/// `2024-02-19 2024-02-25` (week: first and last day), `2024-02` (month), and
/// `2022-03-17 16:30 2022-03-17 17:00` (half hour, hour), or with `spaced` the document's
/// other form ` 2022-03-17 16 : 30 2022-03-17 17 : 00 `. With `instants` (the `Literal`
/// dialect) a half hour's or hour's labels are the local times of its instants, see the
/// module doc.
pub fn result_date(date_type: DateType, p: &Period, spaced: bool, instants: bool) -> String {
    match date_type {
        DateType::HalfHour | DateType::Hour => {
            let (start, end) = if instants {
                (p.instant_start, p.instant_end)
            } else {
                (p.local_start, p.local_end)
            };
            let f = |t: NaiveDateTime| {
                if spaced {
                    t.format("%Y-%m-%d %H : %M").to_string()
                } else {
                    t.format("%Y-%m-%d %H:%M").to_string()
                }
            };
            if spaced {
                format!(" {} {} ", f(start), f(end))
            } else {
                format!("{} {}", f(start), f(end))
            }
        }
        DateType::Day => p.local_start.format("%Y-%m-%d").to_string(),
        DateType::Week { .. } => format!(
            "{} {}",
            p.local_start.format("%Y-%m-%d"),
            (p.local_start.date() + Duration::days(6)).format("%Y-%m-%d")
        ),
        DateType::Month => p.local_start.format("%Y-%m").to_string(),
    }
}

/// A local `startDate`/`startTime` (or `endDate`/`endTime`) pair: `2024-03-01` and
/// `08:00` (also `08 : 00`); `24:00` means the next midnight. A missing start time is
/// `00:00` and a missing end time `24:00`, so dates alone mean whole days.
pub fn local_bound(date: &str, time: Option<&str>, end: bool) -> Result<NaiveDateTime, String> {
    let d = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{date:?} is not a yyyy-MM-dd date"))?;
    let compact: String = time
        .unwrap_or(if end { "24:00" } else { "00:00" })
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let compact = if compact.is_empty() {
        if end { "24:00" } else { "00:00" }.to_string()
    } else {
        compact
    };
    if compact == "24:00" {
        return Ok((d + Duration::days(1)).and_time(NaiveTime::MIN));
    }
    let t = NaiveTime::parse_from_str(&compact, "%H:%M")
        .map_err(|_| format!("{:?} is not an HH:mm time", time.unwrap_or_default()))?;
    Ok(d.and_time(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Singapore;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap_or_default()
    }

    #[test]
    fn half_hours_clip_to_the_range_and_label_whole_periods() {
        let ps: Vec<Period> = periods(
            Singapore,
            DateType::HalfHour,
            local("2024-03-01 08:10"),
            local("2024-03-01 09:30"),
        )
        .collect();
        assert_eq!(ps.len(), 3);
        assert_eq!(ps[0].end_ms - ps[0].start_ms, 20 * 60_000);
        assert_eq!(
            result_date(DateType::HalfHour, &ps[0], false, false),
            "2024-03-01 08:00 2024-03-01 08:30"
        );
        assert_eq!(
            result_date(DateType::HalfHour, &ps[2], true, false),
            " 2024-03-01 09 : 00 2024-03-01 09 : 30 "
        );
    }

    #[test]
    fn weeks_and_months() {
        let start = local("2024-02-21 00:00");
        let end = local("2024-03-05 00:00");
        let mon: Vec<String> = periods(
            Singapore,
            DateType::Week {
                sunday_first: false,
            },
            start,
            end,
        )
        .map(|p| {
            result_date(
                DateType::Week {
                    sunday_first: false,
                },
                &p,
                false,
                false,
            )
        })
        .collect();
        assert_eq!(
            mon,
            [
                "2024-02-19 2024-02-25",
                "2024-02-26 2024-03-03",
                "2024-03-04 2024-03-10"
            ]
        );
        let sun: Vec<String> =
            periods(Singapore, DateType::Week { sunday_first: true }, start, end)
                .map(|p| result_date(DateType::Week { sunday_first: true }, &p, false, false))
                .collect();
        assert_eq!(sun[0], "2024-02-18 2024-02-24");
        let months: Vec<String> = periods(Singapore, DateType::Month, start, end)
            .map(|p| result_date(DateType::Month, &p, false, false))
            .collect();
        assert_eq!(months, ["2024-02", "2024-03"]);
    }

    /// issue 13: the New York DST days on the elapsed-time grid, in both renderings.
    #[test]
    fn dst_days_in_both_dialects() {
        use chrono_tz::America::New_York;
        let day = |d: &str, dt: DateType| -> Vec<Period> {
            periods(
                New_York,
                dt,
                local(&format!("{d} 00:00")),
                local(&format!("{d} 00:00")) + Duration::days(1),
            )
            .collect()
        };
        let render = |dt: DateType, ps: &[Period], instants: bool| -> Vec<String> {
            ps.iter()
                .map(|p| result_date(dt, p, false, instants)[11..].replace("2024-11-03 ", ""))
                .collect()
        };
        let hours = day("2024-11-03", DateType::Hour);
        assert_eq!(hours.len(), 25);
        assert!(hours.windows(2).all(|w| w[0].end_ms == w[1].start_ms));
        assert!(hours.iter().all(|p| p.end_ms - p.start_ms == 3_600_000));
        assert_eq!(
            render(DateType::Hour, &hours[1..3], false),
            ["01:00 02:00", "01:00 02:00"]
        );
        assert_eq!(
            render(DateType::Hour, &hours[1..3], true),
            ["01:00 01:00", "01:00 02:00"]
        );
        let halves = day("2024-11-03", DateType::HalfHour);
        assert_eq!(halves.len(), 50);
        assert_eq!(
            render(DateType::HalfHour, &halves[2..6], false),
            ["01:00 01:30", "01:30 02:00", "01:00 01:30", "01:30 02:00"]
        );
        assert_eq!(
            render(DateType::HalfHour, &halves[2..6], true),
            ["01:00 01:30", "01:30 01:00", "01:00 01:30", "01:30 02:00"]
        );
        let spring = day("2024-03-10", DateType::HalfHour);
        assert_eq!(spring.len(), 46);
        assert_eq!(
            result_date(DateType::HalfHour, &spring[3], false, true),
            "2024-03-10 01:30 2024-03-10 03:00"
        );
        assert_eq!(
            result_date(DateType::HalfHour, &spring[4], false, false),
            "2024-03-10 03:00 2024-03-10 03:30"
        );
        assert_eq!(day("2024-03-10", DateType::Hour).len(), 23);
        assert_eq!(day("2024-03-10", DateType::Day).len(), 1);
    }

    #[test]
    fn bounds_accept_spaces_and_24_00() {
        assert_eq!(
            local_bound("2024-03-01", Some("08 : 30"), false),
            Ok(local("2024-03-01 08:30"))
        );
        assert_eq!(
            local_bound("2024-03-01", Some("24:00"), true),
            Ok(local("2024-03-02 00:00"))
        );
        assert_eq!(
            local_bound("2024-03-01", None, true),
            Ok(local("2024-03-02 00:00"))
        );
        assert!(local_bound("01/03/2024", None, false).is_err());
        assert!(local_bound("2024-03-01", Some("25:00"), false).is_err());
    }
}
