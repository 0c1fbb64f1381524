//! A pipeline's `schedule`: the cron dialect the daemon fires on, checked when the
//! pipeline file is read so that a bad pattern is refused before any run.

use chrono::Utc;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Parses a pipeline's `schedule` exactly as the scheduler will (seconds required, an
/// optional year; a restricted day of month and weekday must both match), and refuses a
/// pattern that never fires, which would otherwise be a pipeline that silently never runs.
pub fn parse_schedule(s: &str) -> Result<Cron, String> {
    let cron = CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(s)
        .map_err(|e| {
            format!(
                "schedule {s:?} is not a cron expression (sec min hour day month weekday [year]): {e}"
            )
        })?;
    cron.find_next_occurrence(&Utc::now(), false)
        .map_err(|e| format!("schedule {s:?} never fires: {e}"))?;
    Ok(cron)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_shapes_parse_and_bad_ones_are_refused() {
        for ok in [
            "0 5 * * * *",
            "*/2 * * * * *",
            "30 */5 * * * *",
            "0 0 3 * * MON 2099",
        ] {
            assert!(parse_schedule(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "every hour",
            "5 * * * *",
            "99 * * * * *",
            "0 0 0 30 2 *",
            "0 0 0 1 1 * 2001",
        ] {
            let e = parse_schedule(bad).expect_err(bad);
            assert!(e.contains("schedule"), "{bad}: {e}");
        }
    }
}
