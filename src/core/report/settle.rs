//! Restatement: which report periods are final and which may still change.
//!
//! Sobot computes a report from talks and agent histories, and those keep arriving or
//! changing for a while after a period ends (late records, calls that end after the
//! period, agents logging out after midnight). So a period already fetched is
//! *provisional* until `settle_secs` after its end, and every run fetches the
//! provisional periods again; once final, a period is never re-read.
//!
//! A period is final when `end + settle <= now`. Periods are contiguous, so the final
//! ones are exactly those before one boundary, [`final_until`]: the start of the period
//! holding `now - settle`.

use super::period::{Period, PeriodGrid};
use chrono::{DateTime, Duration, Utc};

/// Whether a period is final or may still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Finality {
    Final,
    Provisional,
}

fn settle(settle_secs: u64) -> Duration {
    i64::try_from(settle_secs)
        .ok()
        .and_then(Duration::try_seconds)
        .unwrap_or(Duration::MAX)
}

/// `end + settle <= now`.
pub fn finality(period: &Period, settle_secs: u64, now: DateTime<Utc>) -> Finality {
    match period.end.checked_add_signed(settle(settle_secs)) {
        Some(t) if t <= now => Finality::Final,
        _ => Finality::Provisional,
    }
}

/// The boundary before which every period is final and from which every period is
/// provisional.
pub fn final_until(grid: &PeriodGrid, settle_secs: u64, now: DateTime<Utc>) -> DateTime<Utc> {
    let cut = now
        .checked_sub_signed(settle(settle_secs))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    grid.period_of(cut).start
}

/// The periods of `[from, to)` (see [`PeriodGrid::periods`]) with their finality.
pub fn classify(
    grid: &PeriodGrid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    settle_secs: u64,
    now: DateTime<Utc>,
) -> Vec<(Period, Finality)> {
    grid.periods(from, to)
        .map(|p| (p, finality(&p, settle_secs, now)))
        .collect()
}

/// The range to fetch again on this run: the provisional periods already fetched, i.e.
/// `[final_until, fetched_until)`, where `fetched_until` is the pipeline's watermark (a
/// period boundary: everything before it has been fetched once). `None` when every
/// fetched period is final. Periods from the watermark on are new, not re-fetched, and
/// belong to the normal incremental path.
pub fn refetch_range(
    grid: &PeriodGrid,
    settle_secs: u64,
    now: DateTime<Utc>,
    fetched_until: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let from = final_until(grid, settle_secs, now);
    let to = grid.period_of(fetched_until).start;
    (from < to).then_some((from, to))
}

/// What `status` shows for a report pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleStatus {
    /// Every period before this is final.
    pub final_until: DateTime<Utc>,
    /// Fetched periods that may still change, in order.
    pub provisional: Vec<Period>,
}

pub fn status(
    grid: &PeriodGrid,
    settle_secs: u64,
    now: DateTime<Utc>,
    fetched_until: DateTime<Utc>,
) -> SettleStatus {
    let final_until = final_until(grid, settle_secs, now);
    let provisional = refetch_range(grid, settle_secs, now, fetched_until)
        .map(|(a, b)| grid.periods(a, b).collect())
        .unwrap_or_default();
    SettleStatus {
        final_until,
        provisional,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::report::period::{DateType, WeekStart};
    use chrono_tz::America::New_York;
    use chrono_tz::Asia::Singapore;
    use chrono_tz::Tz;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn days_settle_after_two_days() {
        let g = PeriodGrid::new(DateType::Day, WeekStart::Monday, Singapore);
        let now = t("2024-02-25T10:00:00+08:00");
        let settle = 2 * 86_400;
        // 2024-02-23 ends 24th 00:00; + 2 days = 26th 00:00 > now: provisional.
        // 2024-02-22 ends 23rd 00:00; + 2 days = 25th 00:00 <= now: final.
        assert_eq!(final_until(&g, settle, now), t("2024-02-23T00:00:00+08:00"));
        let cls = classify(
            &g,
            t("2024-02-21T00:00:00+08:00"),
            t("2024-02-26T00:00:00+08:00"),
            settle,
            now,
        );
        let fin: Vec<Finality> = cls.iter().map(|(_, f)| *f).collect();
        use Finality::*;
        assert_eq!(fin, [Final, Final, Provisional, Provisional, Provisional]);
        // Exactly at end + settle the period is final.
        let p = g.period_of(t("2024-02-23T12:00:00+08:00"));
        assert_eq!(finality(&p, settle, t("2024-02-26T00:00:00+08:00")), Final);
        assert_eq!(
            finality(&p, settle, t("2024-02-25T23:59:59+08:00")),
            Provisional
        );

        let wm = t("2024-02-25T00:00:00+08:00");
        assert_eq!(
            refetch_range(&g, settle, now, wm),
            Some((t("2024-02-23T00:00:00+08:00"), wm))
        );
        let st = status(&g, settle, now, wm);
        assert_eq!(st.provisional.len(), 2);
        assert_eq!(st.final_until, t("2024-02-23T00:00:00+08:00"));
        // Nothing fetched recently: nothing to re-fetch.
        assert_eq!(
            refetch_range(&g, settle, now, t("2024-02-20T00:00:00+08:00")),
            None
        );
        assert_eq!(refetch_range(&g, 0, now, wm), None);
        assert!(status(&g, 0, now, wm).provisional.is_empty());
        // Absurd settle times do not panic.
        assert_eq!(finality(&p, u64::MAX, now), Provisional);
        let _ = final_until(&g, u64::MAX, now);
    }

    #[test]
    fn months_and_dst_days() {
        let m = PeriodGrid::new(DateType::Month, WeekStart::Monday, New_York);
        let now = t("2024-03-02T12:00:00Z");
        // February ends 2024-03-01 00:00 EST (05:00Z): final a day later, before `now`.
        assert_eq!(final_until(&m, 86_400, now), t("2024-03-01T05:00:00Z"));
        assert_eq!(final_until(&m, 3 * 86_400, now), t("2024-02-01T05:00:00Z"));
        assert_eq!(final_until(&m, 0, now), t("2024-03-01T05:00:00Z"));
        let d = PeriodGrid::new(DateType::Day, WeekStart::Monday, New_York);
        // 2024-03-10 is 23 hours long in New York; it is final 1 h after 2024-03-11 00:00 EDT.
        let p = d.period_of(t("2024-03-10T12:00:00Z"));
        assert_eq!(
            finality(&p, 3600, t("2024-03-11T05:00:00Z")),
            Finality::Final
        );
        assert_eq!(
            finality(&p, 3600, t("2024-03-11T04:59:59Z")),
            Finality::Provisional
        );
    }

    const ZONES: [Tz; 2] = [Singapore, New_York];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn refetch_range_is_exactly_the_fetched_provisional_periods(
            zone in 0..ZONES.len(),
            dt in 0..3usize,
            now_secs in 1_700_000_000i64..1_740_000_000,
            settle_secs in 0u64..400_000,
            wm_back_secs in -200_000i64..600_000,
        ) {
            let g = PeriodGrid::new(DateType::ALL[dt], WeekStart::Monday, ZONES[zone]);
            let now = DateTime::from_timestamp(now_secs, 0).unwrap();
            let wm = g.period_of(now - Duration::seconds(wm_back_secs)).start;
            let cut = final_until(&g, settle_secs, now);
            prop_assert!(g.is_boundary(cut));
            // Periods around the cut: final before, provisional from it.
            let before = g.period_of(cut - Duration::milliseconds(1));
            prop_assert_eq!(finality(&before, settle_secs, now), Finality::Final);
            prop_assert_eq!(finality(&g.period_of(cut), settle_secs, now), Finality::Provisional);
            match refetch_range(&g, settle_secs, now, wm) {
                Some((a, b)) => {
                    prop_assert!(a < b && b == wm && a == cut);
                    prop_assert!(g.is_boundary(a) && g.is_boundary(b));
                }
                None => prop_assert!(wm <= cut),
            }
        }
    }
}
