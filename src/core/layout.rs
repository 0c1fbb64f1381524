//! The warehouse layout (CONTRACT section 3): every table file lies in a Hive-style
//! partition folder `<table>/dt=YYYY-MM-DD/`, the day in `SOBOT_TIMEZONE`. Written and
//! read in one place, so the writers, compaction, the receiver and the readers agree.

use chrono::NaiveDate;

/// `dt=YYYY-MM-DD`: one partition's folder name.
pub fn dt_folder(dt: NaiveDate) -> String {
    format!("dt={}", dt.format("%Y-%m-%d"))
}

/// `<table>/dt=YYYY-MM-DD`: a table's partition, relative to the warehouse.
pub fn partition(table: &str, dt: NaiveDate) -> String {
    format!("{table}/{}", dt_folder(dt))
}

/// The day of a `dt=YYYY-MM-DD` folder name; `None` for any other name.
pub fn parse_dt_folder(folder: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(folder.strip_prefix("dt=")?, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_round_trip() {
        let d = NaiveDate::from_ymd_opt(2024, 3, 1).expect("a date");
        assert_eq!(partition("talks", d), "talks/dt=2024-03-01");
        assert_eq!(parse_dt_folder(&dt_folder(d)), Some(d));
        assert_eq!(parse_dt_folder("dt=2024-13-01"), None);
        assert_eq!(parse_dt_folder("2024-03-01"), None);
    }
}
