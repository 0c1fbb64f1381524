//! The grid itself: which period holds an instant, the periods of a range, and the local
//! labels of a period. Days, weeks and months live here; half hours and hours in `dst`.

use super::date_type::{DateType, WeekStart};
use crate::core::timeutil::resolve_local;
use chrono::{
    DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc,
};
use chrono_tz::Tz;

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
pub(super) fn add_minutes(t: NaiveDateTime, m: i64) -> NaiveDateTime {
    t.checked_add_signed(Duration::minutes(m))
        .unwrap_or(if m >= 0 {
            NaiveDateTime::MAX
        } else {
            NaiveDateTime::MIN
        })
}

pub(super) fn midnight(d: NaiveDate) -> NaiveDateTime {
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
    pub(super) fn floor_label(&self, local: NaiveDateTime) -> NaiveDateTime {
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
    pub(super) fn next_label(&self, label: NaiveDateTime) -> NaiveDateTime {
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
    pub(super) fn is_elapsed(&self) -> bool {
        self.date_type.slot_minutes().is_some()
    }

    /// The period holding the instant `t`.
    pub fn period_of(&self, t: DateTime<Utc>) -> Period {
        if self.is_elapsed() {
            self.elapsed_period_of(t)
        } else {
            self.calendar_period_of(t)
        }
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
