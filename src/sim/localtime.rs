//! Local `yyyy-MM-dd HH:mm` strings as the agent-history endpoint reads and writes them,
//! in the request's zone, with the DST rules the simulator promises: an ambiguous start
//! means its earliest instant and an ambiguous end its latest; a time inside a spring-
//! forward gap means the first instant after the gap.

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::core::timeutil::{parse_local_string, resolve_local};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edge {
    Start,
    End,
}

/// The instant a request's local minute string names, or `None` if it is not a time.
pub(crate) fn parse_minute(s: &str, tz: Tz, edge: Edge) -> Option<DateTime<Utc>> {
    let local = parse_local_string(s)?;
    let minute = local.with_second(0)?.with_nanosecond(0)?;
    Some(resolve(tz, minute, edge))
}

fn resolve(tz: Tz, local: NaiveDateTime, edge: Edge) -> DateTime<Utc> {
    match (tz.from_local_datetime(&local), edge) {
        (LocalResult::Ambiguous(a, b), Edge::End) => a.max(b).with_timezone(&Utc),
        _ => resolve_local(tz, local),
    }
}

/// `yyyy-MM-dd HH:mm` of instant `ms` in `tz` (minute-truncated).
pub(crate) fn format_minute(tz: Tz, ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => {
            let l = t.with_timezone(&tz);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                l.year(),
                l.month(),
                l.day(),
                l.hour(),
                l.minute()
            )
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;

    fn utc(s: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    #[test]
    fn ambiguous_minutes_pick_earliest_start_latest_end() {
        // 2024-11-03 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST).
        assert_eq!(
            parse_minute("2024-11-03 01:30", New_York, Edge::Start),
            utc("2024-11-03T05:30:00Z")
        );
        assert_eq!(
            parse_minute("2024-11-03 01:30", New_York, Edge::End),
            utc("2024-11-03T06:30:00Z")
        );
    }

    #[test]
    fn gap_minutes_mean_the_end_of_the_gap() {
        // 2024-03-10 02:30 does not exist in New York; 03:00 EDT = 07:00Z.
        for edge in [Edge::Start, Edge::End] {
            assert_eq!(
                parse_minute("2024-03-10 02:30", New_York, edge),
                utc("2024-03-10T07:00:00Z")
            );
        }
    }

    #[test]
    fn formats_in_the_zone_and_rejects_garbage() {
        let ms = utc("2024-11-03T06:30:59Z")
            .map(|t| t.timestamp_millis())
            .unwrap_or(0);
        assert_eq!(format_minute(New_York, ms), "2024-11-03 01:30");
        assert_eq!(parse_minute("yesterday", New_York, Edge::Start), None);
    }
}
