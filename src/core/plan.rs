//! The window planner: pure functions from (grid, watermark, now) to windows.
//!
//! Windows are cut on the local wall clock of `SOBOT_TIMEZONE`: a day is split at local
//! times that are multiples of `window_secs` after local midnight, and each cut is
//! resolved to an instant by `timeutil::resolve_local`. So a window never spans two `dt`
//! partitions, an hourly window is "14:00-15:00 local" as a user expects, the skipped
//! hour of a spring-forward day yields no window, and the repeated hour of a fall-back
//! day falls inside one (longer) window rather than two windows claiming the same
//! local times.

use crate::core::timeutil;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// A half-open range of instants `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn contains_ms(&self, ms: i64) -> bool {
        self.start.timestamp_millis() <= ms && ms < self.end.timestamp_millis()
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}, {})",
            self.start.format("%Y-%m-%dT%H:%M:%SZ"),
            self.end.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

/// The window grid of one pipeline.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    pub tz: Tz,
    pub window_secs: u64,
}

impl Grid {
    pub fn new(tz: Tz, window_secs: u64) -> Self {
        debug_assert!(window_secs >= 60 && 86_400 % window_secs == 0);
        Self { tz, window_secs }
    }

    /// The cut points of one local day, strictly increasing, from its midnight to the
    /// next day's midnight.
    fn cuts(&self, date: NaiveDate) -> Vec<DateTime<Utc>> {
        let per_day = (86_400 / self.window_secs.max(60)) as i64;
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        let mut cuts: Vec<DateTime<Utc>> = Vec::with_capacity(per_day as usize + 1);
        for k in 0..per_day {
            let local = midnight + Duration::seconds(k * self.window_secs as i64);
            let t = timeutil::resolve_local(self.tz, local);
            if cuts.last().is_none_or(|&last| t > last) {
                cuts.push(t);
            }
        }
        let next = date
            .succ_opt()
            .map_or(midnight, |d| d.and_hms_opt(0, 0, 0).unwrap_or_default());
        let end = timeutil::resolve_local(self.tz, next);
        if cuts.last().is_none_or(|&last| end > last) {
            cuts.push(end);
        }
        cuts
    }

    /// The window holding instant `t`.
    pub fn window_at(&self, t: DateTime<Utc>) -> Window {
        let date = timeutil::local_date(self.tz, t);
        let mut cuts = Vec::new();
        for d in [date.pred_opt(), Some(date), date.succ_opt()]
            .into_iter()
            .flatten()
        {
            for c in self.cuts(d) {
                if cuts.last().is_none_or(|&last| c > last) {
                    cuts.push(c);
                }
            }
        }
        let idx = cuts.partition_point(|&c| c <= t);
        match (idx.checked_sub(1).and_then(|i| cuts.get(i)), cuts.get(idx)) {
            (Some(&start), Some(&end)) => Window { start, end },
            // Outside the three days' cuts cannot happen for a valid zone; fall back to
            // a fixed-size window so the planner still moves forward.
            _ => Window {
                start: t,
                end: t + Duration::seconds(self.window_secs as i64),
            },
        }
    }

    /// The first window starting at or after `t` (t itself when `t` is a cut).
    pub fn window_from(&self, t: DateTime<Utc>) -> Window {
        let w = self.window_at(t);
        if w.start == t {
            w
        } else {
            self.window_at(w.end)
        }
    }

    /// The local date (`dt` partition) of a window.
    pub fn dt(&self, w: &Window) -> NaiveDate {
        timeutil::local_date(self.tz, w.start)
    }

    /// Consecutive windows from the one starting at or after `from` while they end at or
    /// before `until`. One pass over the days' cuts: linear in the number of windows.
    pub fn windows(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Window> {
        let mut out = Vec::new();
        let first = self.window_from(from);
        if first.end > until {
            return out;
        }
        let mut prev = first.start;
        let mut date = timeutil::local_date(self.tz, first.start);
        if let Some(d) = date.pred_opt() {
            date = d;
        }
        'days: loop {
            for c in self.cuts(date) {
                if c <= prev {
                    continue;
                }
                if c > until {
                    break 'days;
                }
                out.push(Window {
                    start: prev,
                    end: c,
                });
                prev = c;
            }
            match date.succ_opt() {
                Some(d) => date = d,
                None => break,
            }
        }
        out
    }

    /// `t` moved down to the start of its window.
    pub fn floor(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        self.window_at(t).start
    }

    /// `t` moved up to the end of its window (t itself when it is a cut).
    pub fn ceil(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let w = self.window_at(t);
        if w.start == t { t } else { w.end }
    }
}

/// What one incremental run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrementalPlan {
    /// Windows past the watermark, in order; the watermark moves through them.
    pub new: Vec<Window>,
    /// Already-committed windows inside the lookback, extracted again and replaced.
    pub lookback: Vec<Window>,
}

/// Plans an incremental run: every whole window from `watermark` to `now - lag`, then
/// the committed windows that end within `lookback` of the new watermark.
/// `committed(w)` says whether a window was loaded before (only those are looked back
/// at: a lookback never reaches before the pipeline's first load).
pub fn incremental(
    grid: &Grid,
    watermark: DateTime<Utc>,
    now: DateTime<Utc>,
    lag_secs: u64,
    lookback_secs: u64,
    committed: &dyn Fn(&Window) -> bool,
) -> IncrementalPlan {
    let limit = now - Duration::seconds(lag_secs as i64);
    let new = if limit > watermark {
        grid.windows(watermark, limit)
    } else {
        Vec::new()
    };
    let new_watermark = new.last().map_or(watermark, |w| w.end);
    let lookback = if lookback_secs == 0 {
        Vec::new()
    } else {
        let from = grid.floor(new_watermark - Duration::seconds(lookback_secs as i64));
        grid.windows(from, watermark)
            .into_iter()
            .filter(|w| committed(w))
            .collect()
    };
    IncrementalPlan { new, lookback }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const SIZES: &[u64] = &[60, 300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
    const ZONES: &[Tz] = &[
        chrono_tz::Asia::Singapore,
        chrono_tz::America::New_York,
        chrono_tz::Europe::London,
        chrono_tz::Australia::Lord_Howe, // 30-minute DST shift
        chrono_tz::Asia::Kolkata,        // +05:30
        chrono_tz::America::Sao_Paulo,   // historic DST at midnight
        chrono_tz::UTC,
    ];

    #[test]
    fn hourly_windows_in_singapore() {
        let g = Grid::new(chrono_tz::Asia::Singapore, 3600);
        let w = g.window_at(t("2024-03-01T10:30:00+08:00"));
        assert_eq!(w.start, t("2024-03-01T10:00:00+08:00"));
        assert_eq!(w.end, t("2024-03-01T11:00:00+08:00"));
        let day = g.windows(
            t("2024-03-01T00:00:00+08:00"),
            t("2024-03-02T00:00:00+08:00"),
        );
        assert_eq!(day.len(), 24);
    }

    #[test]
    fn new_york_spring_forward_has_23_windows_and_fall_back_25_hours() {
        let g = Grid::new(chrono_tz::America::New_York, 3600);
        let spring = g.windows(
            t("2024-03-10T00:00:00-05:00"),
            t("2024-03-11T00:00:00-04:00"),
        );
        assert_eq!(spring.len(), 23, "the skipped hour yields no window");
        assert!(spring.iter().all(|w| w.end - w.start == Duration::hours(1)));
        let fall = g.windows(
            t("2024-11-03T00:00:00-04:00"),
            t("2024-11-04T00:00:00-05:00"),
        );
        // 01:00 EDT .. 02:00 EST is one two-hour window: the repeated hour is not split.
        assert_eq!(fall.len(), 24);
        let long = fall
            .iter()
            .find(|w| w.end - w.start == Duration::hours(2))
            .unwrap();
        assert_eq!(long.start, t("2024-11-03T01:00:00-04:00"));
        assert_eq!(long.end, t("2024-11-03T02:00:00-05:00"));
        let total: i64 = fall.iter().map(|w| (w.end - w.start).num_hours()).sum();
        assert_eq!(total, 25);
        // A daily window spans the whole 25-hour day, in one dt.
        let daily = Grid::new(chrono_tz::America::New_York, 86400);
        let d = daily.window_at(t("2024-11-03T12:00:00-05:00"));
        assert_eq!(d.end - d.start, Duration::hours(25));
    }

    #[test]
    fn incremental_respects_lag_and_lookback() {
        let g = Grid::new(chrono_tz::Asia::Singapore, 3600);
        let wm = t("2024-03-01T00:00:00+08:00");
        let now = t("2024-03-01T05:20:00+08:00");
        let p = incremental(&g, wm, now, 1800, 0, &|_| true);
        assert_eq!(p.new.len(), 4, "04:00-05:00 ends after now - lag (04:50)");
        assert!(p.lookback.is_empty());
        let wm2 = p.new.last().unwrap().end;
        let p2 = incremental(&g, wm2, t("2024-03-01T06:40:00+08:00"), 1800, 7200, &|_| {
            true
        });
        assert_eq!(p2.new.len(), 2);
        // New watermark 06:00; lookback from 04:00 up to the old watermark 04:00: none new,
        // so nothing; with lookback of 3h: 03:00-04:00.
        assert!(p2.lookback.is_empty());
        let p3 = incremental(
            &g,
            wm2,
            t("2024-03-01T06:40:00+08:00"),
            1800,
            10800,
            &|_| true,
        );
        assert_eq!(p3.lookback.len(), 1);
        assert_eq!(p3.lookback[0].start, t("2024-03-01T03:00:00+08:00"));
        // Nothing committed before: no lookback.
        let p4 = incremental(
            &g,
            wm2,
            t("2024-03-01T06:40:00+08:00"),
            1800,
            10800,
            &|_| false,
        );
        assert!(p4.lookback.is_empty());
        // Clock behind the watermark: nothing, never backwards.
        let p5 = incremental(&g, wm2, wm, 0, 0, &|_| true);
        assert!(p5.new.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn windows_are_contiguous_aligned_and_within_one_dt(
            zone in 0..ZONES.len(),
            size in 0..SIZES.len(),
            start_secs in 1_500_000_000i64..1_900_000_000i64,
            span_hours in 1i64..200,
        ) {
            let g = Grid::new(ZONES[zone], SIZES[size]);
            let from = DateTime::from_timestamp(start_secs, 0).unwrap();
            let until = from + Duration::hours(span_hours);
            let ws = g.windows(from, until);
            let step = (ws.len() / 16).max(1);
            for (i, w) in ws.iter().enumerate() {
                prop_assert!(w.start < w.end);
                prop_assert!(w.start >= from && w.end <= until);
                // Never spans two dt partitions.
                prop_assert_eq!(g.dt(w), timeutil::local_date(g.tz, w.end - Duration::milliseconds(1)));
                // Aligned: the window is what the grid says holds its start and its last
                // instant (checked on a sample: window_at is the slow path).
                if i % step == 0 || i + 1 == ws.len() {
                    prop_assert_eq!(g.window_at(w.start), *w);
                    prop_assert_eq!(g.window_at(w.end - Duration::milliseconds(1)), *w);
                }
                // Never longer than the nominal size plus a DST shift.
                prop_assert!(w.end - w.start <= Duration::seconds(SIZES[size] as i64) + Duration::hours(2));
            }
            for pair in ws.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start, "contiguous, non-overlapping");
            }
            // Whole coverage: from the first window start to the last window end, nothing
            // inside is missing, and no window that fits was left out.
            if let Some(last) = ws.last() {
                prop_assert!(g.window_at(last.end).end > until);
                prop_assert!(ws[0].start < from + Duration::seconds(SIZES[size] as i64) + Duration::hours(2));
            }
        }

        #[test]
        fn incremental_never_goes_backwards_and_respects_lag(
            zone in 0..ZONES.len(),
            size in 0..SIZES.len(),
            wm_secs in 1_600_000_000i64..1_800_000_000i64,
            ahead_secs in -100_000i64..400_000,
            lag in 0u64..20_000,
            lookback in 0u64..200_000,
        ) {
            let g = Grid::new(ZONES[zone], SIZES[size]);
            let wm = g.floor(DateTime::from_timestamp(wm_secs, 0).unwrap());
            let now = wm + Duration::seconds(ahead_secs);
            let p = incremental(&g, wm, now, lag, lookback, &|_| true);
            let limit = now - Duration::seconds(lag as i64);
            if let Some(first) = p.new.first() {
                prop_assert_eq!(first.start, wm, "starts exactly at the watermark");
            }
            for w in &p.new {
                prop_assert!(w.end <= limit, "lag respected");
                prop_assert!(w.start >= wm, "never backwards");
            }
            for w in &p.lookback {
                prop_assert!(w.end <= wm, "lookback only re-reads committed windows");
            }
        }
    }
}
