//! The simulator's ground truth for a range, and the checks that a warehouse table holds
//! exactly it: every key once, no other key, values converted as CONTRACT section 4 says,
//! and one file per window that holds records.

use super::table::{Table, i64_at, ms_at, str_at};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use sobot_sync::core::plan::Grid;
use sobot_sync::sim::Dataset;
use std::collections::{BTreeMap, BTreeSet};

/// A window as (start, end).
pub type Span = (DateTime<Utc>, DateTime<Utc>);

fn s(v: &Value, field: &str) -> String {
    match &v[field] {
        Value::String(x) => x.trim().to_string(),
        Value::Number(n) => n.to_string(),
        other => panic!("ground truth field {field} is {other}"),
    }
}

fn ms(v: &Value, field: &str) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("ground truth field {field} is {}", v[field]))
}

/// Numeric strings ("125") as the API sends durations.
fn num(v: &Value, field: &str) -> i64 {
    match &v[field] {
        Value::Number(n) => n.as_i64().unwrap_or_else(|| panic!("{field} {n}")),
        Value::String(x) => x
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("ground truth {field} {x:?}: {e}")),
        other => panic!("ground truth field {field} is {other}"),
    }
}

/// One record of the truth with the instant that places it in a window, and the instant
/// after which the API shows it (before any lateness).
#[derive(Debug, Clone)]
pub struct Rec {
    pub key: String,
    pub time_ms: i64,
    pub ends_ms: i64,
    pub json: Value,
}

/// What a table should hold.
#[derive(Debug, Clone)]
pub struct Truth {
    pub table: &'static str,
    pub key: &'static str,
    pub time_col: &'static str,
    pub recs: Vec<Rec>,
}

impl Truth {
    pub fn keys(&self) -> BTreeSet<String> {
        self.recs.iter().map(|r| r.key.clone()).collect()
    }

    /// Only the records `keep` accepts.
    pub fn filter(&self, keep: impl Fn(&Rec) -> bool) -> Truth {
        Truth {
            recs: self.recs.iter().filter(|r| keep(r)).cloned().collect(),
            ..self.clone()
        }
    }

    /// The windows of `grid` that hold at least one record.
    pub fn windows(&self, grid: &Grid) -> Vec<Span> {
        let set: BTreeSet<Span> = self
            .recs
            .iter()
            .map(|r| {
                let t = Utc.timestamp_millis_opt(r.time_ms).single().expect("time");
                let w = grid.window_at(t);
                (w.start, w.end)
            })
            .collect();
        set.into_iter().collect()
    }
}

/// Talks with startTime in `[from, to)`.
pub fn talks(ds: &Dataset, from: DateTime<Utc>, to: DateTime<Utc>) -> Truth {
    let recs = ds
        .talks(from, to)
        .into_iter()
        .map(|t| Rec {
            key: s(&t, "callID"),
            time_ms: ms(&t, "startTime"),
            ends_ms: ms(&t, "endTime"),
            json: t,
        })
        .collect();
    Truth {
        table: "talks",
        key: "call_id",
        time_col: "start_time",
        recs,
    }
}

/// The legs of the talks with startTime in `[from, to)`; each leg's time is its call's
/// start, and it shows when its call does. The leg's JSON gets `callStartTime` set.
pub fn parties(ds: &Dataset, from: DateTime<Utc>, to: DateTime<Utc>) -> Truth {
    let mut recs = Vec::new();
    for t in ds.talks(from, to) {
        let call_start = ms(&t, "startTime");
        let call_end = ms(&t, "endTime");
        for mut p in ds.parties(&s(&t, "callID")) {
            p["callStartTime"] = call_start.into();
            recs.push(Rec {
                key: s(&p, "partyId"),
                time_ms: call_start,
                ends_ms: call_end,
                json: p,
            });
        }
    }
    Truth {
        table: "parties",
        key: "party_id",
        time_col: "call_start_time",
        recs,
    }
}

/// Agent status intervals with startTimeMs in `[from, to)`.
pub fn agent_histories(ds: &Dataset, from: DateTime<Utc>, to: DateTime<Utc>) -> Truth {
    let recs = ds
        .agent_histories(from, to)
        .into_iter()
        .map(|h| Rec {
            key: s(&h, "id"),
            time_ms: ms(&h, "startTimeMs"),
            ends_ms: ms(&h, "endTimeMs"),
            json: h,
        })
        .collect();
    Truth {
        table: "agent_histories",
        key: "id",
        time_col: "start_time",
        recs,
    }
}

/// Asserts `table` holds exactly `truth`: keys, layout, one file per window, and values.
pub fn assert_exact(table: &Table, truth: &Truth, grid: &Grid) {
    assert!(
        !truth.recs.is_empty(),
        "{}: empty ground truth",
        truth.table
    );
    table.assert_keys_exactly(truth.key, &truth.keys());
    let windows = table.assert_layout(truth.time_col, grid.tz);
    assert_eq!(
        windows,
        truth.windows(grid),
        "{}: one file per window holding records",
        truth.table
    );
    assert_values(table, truth, grid.tz);
}

/// Compares converted values with the ground truth, row by row.
pub fn assert_values(table: &Table, truth: &Truth, tz: Tz) {
    let rows = table.by_key(truth.key);
    let by_key: BTreeMap<&str, &Rec> = truth.recs.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut checked = 0usize;
    for (key, at) in &rows {
        let Some(rec) = by_key.get(key.as_str()) else {
            continue;
        };
        let b = &at.file.batch;
        let i = at.row;
        let v = &rec.json;
        let ctx = || format!("{} key {key} in {}", truth.table, at.file.path);
        match truth.table {
            "talks" => {
                assert_eq!(
                    ms_at(b, "start_time", i),
                    Some(ms(v, "startTime")),
                    "{}",
                    ctx()
                );
                assert_eq!(ms_at(b, "end_time", i), Some(ms(v, "endTime")), "{}", ctx());
                assert_eq!(
                    i64_at(b, "duration", i),
                    Some(num(v, "duration")),
                    "{}",
                    ctx()
                );
                assert_eq!(
                    i64_at(b, "total_duration", i),
                    Some(num(v, "totalDuration")),
                    "{}",
                    ctx()
                );
                assert_eq!(
                    str_at(b, "customer_number", i).as_deref(),
                    v["customerNumber"].as_str(),
                    "{}",
                    ctx()
                );
                let attached: Option<Value> = str_at(b, "attached_data", i).map(|text| {
                    serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("{}: attached_data {text:?}: {e}", ctx()))
                });
                let expected = v.get("attachedData").filter(|x| !x.is_null()).cloned();
                assert_eq!(attached, expected, "{}", ctx());
            }
            "parties" => {
                assert_eq!(
                    ms_at(b, "call_start_time", i),
                    Some(ms(v, "callStartTime")),
                    "{}",
                    ctx()
                );
                assert_eq!(
                    str_at(b, "call_id", i).map(|x| x.trim().to_string()),
                    Some(s(v, "callID")),
                    "{}",
                    ctx()
                );
                assert_eq!(
                    i64_at(b, "duration", i),
                    Some(num(v, "duration")),
                    "{}",
                    ctx()
                );
                assert_eq!(
                    str_at(b, "agent_uuid", i).as_deref(),
                    v["agentUUID"].as_str(),
                    "{}",
                    ctx()
                );
            }
            "agent_histories" => {
                let start_ms = ms(v, "startTimeMs");
                assert_eq!(ms_at(b, "start_time_ms", i), Some(start_ms), "{}", ctx());
                assert_eq!(
                    ms_at(b, "end_time_ms", i),
                    Some(ms(v, "endTimeMs")),
                    "{}",
                    ctx()
                );
                assert_eq!(
                    i64_at(b, "duration", i),
                    Some(num(v, "duration")),
                    "{}",
                    ctx()
                );
                // The local minute string, read in the zone: the start's minute, except in
                // a repeated hour where the string alone cannot tell which one it was.
                let minute = start_ms - start_ms.rem_euclid(60_000);
                let got = ms_at(b, "start_time", i).unwrap_or_else(|| panic!("{}", ctx()));
                let local = Utc
                    .timestamp_millis_opt(minute)
                    .single()
                    .expect("time")
                    .with_timezone(&tz)
                    .naive_local();
                let ambiguous = tz.from_local_datetime(&local).single().is_none();
                assert!(
                    got == minute || (ambiguous && (got - minute).abs() <= 3_600_000),
                    "{}: start_time {got} vs startTimeMs minute {minute}",
                    ctx()
                );
                assert_eq!(
                    str_at(b, "agent_uuid", i).as_deref(),
                    v["agentUUID"].as_str(),
                    "{}",
                    ctx()
                );
            }
            other => panic!("no value checks for table {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, truth.recs.len(), "{}: rows checked", truth.table);
}
