//! The `result_date` forms servers send, the errors for bad ones, and the calendar grids.

use super::{grid, t};
use crate::core::report::period::{DateType, Period, PeriodGrid, WeekStart, parse_result_date};
use chrono_tz::America::New_York;
use chrono_tz::Asia::Singapore;

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
