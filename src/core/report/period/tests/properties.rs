//! Properties over four zones and their DST days: no panics, format/parse round trips,
//! contiguous grids, and whole answers resolved in either rendering.

use super::{grid, t};
use crate::core::report::period::result_date::last_day;
use crate::core::report::period::{DateType, Period, PeriodGrid, WeekStart};
use chrono::{DateTime, Duration};
use chrono_tz::America::New_York;
use chrono_tz::Asia::Singapore;
use chrono_tz::Australia::Lord_Howe;
use chrono_tz::Europe::London;
use chrono_tz::Tz;
use proptest::prelude::*;

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
