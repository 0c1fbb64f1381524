//! Local wall-clock time in `SOBOT_TIMEZONE`, resolved to instants without panics.
//!
//! Two rules are used everywhere a local time becomes an instant, so that the window
//! planner, the converter and the command line agree: a local time that occurs twice
//! (the repeated hour when clocks go back) means its earliest instant, and one that
//! never occurs (the hour skipped when clocks go forward) means the first instant after
//! the gap.

use chrono::{
    DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

/// The instant a local wall-clock time names, by the rules above.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // Inside a gap the wall clock jumped over `local`. The first local minute that
            // exists after it is the end of the gap, and its instant is the transition.
            let mut probe = local;
            for _ in 0..(48 * 60) {
                probe += Duration::minutes(1);
                let minute = probe
                    .with_second(0)
                    .and_then(|p| p.with_nanosecond(0))
                    .unwrap_or(probe);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) =
                    tz.from_local_datetime(&minute)
                {
                    return t.with_timezone(&Utc);
                }
            }
            // No zone has a two-day gap; read it as UTC rather than fail.
            Utc.from_utc_datetime(&local)
        }
    }
}

/// Local midnight at the start of `date`.
pub fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    resolve_local(tz, date.and_time(NaiveTime::MIN))
}

/// The local calendar date of an instant: the `dt` partition of a record.
pub fn local_date(tz: Tz, t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

/// A command-line or settings TIME: RFC 3339, or a bare date meaning local midnight.
pub fn parse_time(s: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(local_midnight(tz, d));
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2024-03-01T00:00:00+08:00) or a date (2024-03-01)"
    ))
}

/// Parses the API's local `yyyy-MM-dd HH:mm[:ss]` strings, tolerating the stray spaces
/// the API document shows (`" 2022-07-07 01 : 00 "`).
pub fn parse_local_string(s: &str) -> Option<NaiveDateTime> {
    let mut cleaned = String::with_capacity(s.len());
    let mut last_space = false;
    for ch in s.trim().chars() {
        if ch == ' ' {
            last_space = true;
            continue;
        }
        if last_space && ch != ':' && !cleaned.ends_with(':') && !cleaned.is_empty() {
            cleaned.push(' ');
        }
        last_space = false;
        cleaned.push(ch);
    }
    let cleaned = cleaned.replace('T', " ");
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&cleaned, fmt) {
            return Some(t);
        }
    }
    None
}

/// Formats an instant as the API's minute-grained local string.
pub fn format_local_minute(tz: Tz, t: DateTime<Utc>) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// The largest difference between the zone's UTC offsets around `[t0, t1)` (a day either
/// side), in seconds: how far a minute-grained local filter may be off near a DST change.
pub fn offset_spread(tz: Tz, t0: DateTime<Utc>, t1: DateTime<Utc>) -> i64 {
    let probes = [t0 - Duration::days(1), t0, t1, t1 + Duration::days(1)];
    let offsets: Vec<i64> = probes
        .iter()
        .map(|t| {
            i64::from(
                tz.offset_from_utc_datetime(&t.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        })
        .collect();
    let max = offsets.iter().copied().max().unwrap_or(0);
    let min = offsets.iter().copied().min().unwrap_or(0);
    max - min
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ny() -> Tz {
        chrono_tz::America::New_York
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn gap_resolves_to_transition() {
        // 2024-03-10 02:30 does not exist in New York; clocks jump 02:00 EST -> 03:00 EDT at 07:00Z.
        let t = resolve_local(ny(), local("2024-03-10 02:30"));
        assert_eq!(t.to_rfc3339(), "2024-03-10T07:00:00+00:00");
        let t = resolve_local(ny(), local("2024-03-10 02:00"));
        assert_eq!(t.to_rfc3339(), "2024-03-10T07:00:00+00:00");
    }

    #[test]
    fn repeated_hour_resolves_to_earliest() {
        // 2024-11-03 01:30 happens twice; the first is EDT (05:30Z).
        let t = resolve_local(ny(), local("2024-11-03 01:30"));
        assert_eq!(t.to_rfc3339(), "2024-11-03T05:30:00+00:00");
    }

    #[test]
    fn bare_date_is_local_midnight() {
        let t = parse_time("2024-03-01", chrono_tz::Asia::Singapore).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-02-29T16:00:00+00:00");
        let t = parse_time("2024-03-01T00:00:00+08:00", ny()).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-02-29T16:00:00+00:00");
        assert!(
            parse_time("yesterday", ny())
                .unwrap_err()
                .contains("yesterday")
        );
    }

    #[test]
    fn local_strings_with_stray_spaces() {
        assert_eq!(
            parse_local_string(" 2022-07-07 01 : 00 "),
            Some(local("2022-07-07 01:00"))
        );
        assert_eq!(
            parse_local_string("2022-07-07 23:59:30").map(|t| t.to_string()),
            Some("2022-07-07 23:59:30".to_string())
        );
        assert_eq!(parse_local_string("07/07/2022"), None);
        assert_eq!(parse_local_string(""), None);
    }

    #[test]
    fn spread_is_zero_without_dst() {
        let t0 = parse_time("2024-03-01", chrono_tz::Asia::Singapore).unwrap();
        assert_eq!(
            offset_spread(chrono_tz::Asia::Singapore, t0, t0 + Duration::hours(1)),
            0
        );
        let t0 = parse_time("2024-03-10", ny()).unwrap();
        assert_eq!(offset_spread(ny(), t0, t0 + Duration::hours(1)), 3600);
    }
}
