//! Half hours and hours as elapsed time (issue 13): a slot is cut where the UTC offset
//! changes, so a repeated hour is two periods and a skipped one is none.

use super::grid::{Period, PeriodGrid};
use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};

impl PeriodGrid {
    /// The UTC offset in force at `t`, in seconds.
    fn offset_secs(&self, t: DateTime<Utc>) -> i32 {
        self.tz
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    }

    /// issue 13: a half hour or hour is the run of instants around `t` with `t`'s slot
    /// label and `t`'s UTC offset: the slot on the wall clock of that offset, cut where
    /// the offset changes inside it. So the two passes of a repeated hour are two periods
    /// and a skipped slot is none.
    pub(super) fn elapsed_period_of(&self, t: DateTime<Utc>) -> Period {
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
