//! DST days in New York: the skipped and the repeated slots, in both renderings.

use super::{grid, t};
use crate::core::report::period::{DateType, Period};
use chrono::{Duration, NaiveDateTime};
use chrono_tz::America::New_York;

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
