//! The simulator's ground truth for a range, and the checks that a warehouse table holds
//! exactly it: every key once, no other key, values converted as CONTRACT section 4 says,
//! and one file per window that holds records. The engine-level tests compare typed values
//! ([`assert_exact`]); the tests that run the binary compare a fingerprint of chosen
//! columns of the records visible at their `now` ([`assert_rows_exact`]). Both read the
//! same ground truth and the same Parquet reader.

use super::table::{self, Table, i64_at, ms_at, str_at};
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use sobot_sync::core::plan::Grid;
use sobot_sync::sim::Dataset;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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

// The same truth, compared column by column after a run of the binary: the table is read
// from a local warehouse the way a query engine would, and each row is reduced to a
// fingerprint of a few columns, so one assertion covers every key and value.

/// How a compared column is read on each side.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Str,
    /// An integer; the API may send it as a numeric string, `""` meaning null.
    Int,
    /// Epoch milliseconds in the API, `TIMESTAMP(ms, UTC)` in Parquet.
    Ts,
}

/// A warehouse column and the API field it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Col {
    pub column: &'static str,
    pub field: &'static str,
    pub kind: Kind,
}

/// What to compare for one table: its key, the column `dt` is taken from, some values.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub table: &'static str,
    pub key: Col,
    pub time_column: &'static str,
    pub values: &'static [Col],
}

const fn col(column: &'static str, field: &'static str, kind: Kind) -> Col {
    Col {
        column,
        field,
        kind,
    }
}

pub const TALKS: Spec = Spec {
    table: "talks",
    key: col("call_id", "callID", Kind::Str),
    time_column: "start_time",
    values: &[
        col("start_time", "startTime", Kind::Ts),
        col("end_time", "endTime", Kind::Ts),
        col("total_duration", "totalDuration", Kind::Int),
        col("customer_number", "customerNumber", Kind::Str),
        col("last_agent_dn", "lastAgentDN", Kind::Str),
    ],
};

pub const PARTIES: Spec = Spec {
    table: "parties",
    key: col("party_id", "partyId", Kind::Str),
    time_column: "call_start_time",
    values: &[
        col("call_id", "callID", Kind::Str),
        col("start_time", "startTime", Kind::Ts),
        col("duration", "duration", Kind::Int),
        col("agent_uuid", "agentUUID", Kind::Str),
        col("dnis", "DNIS", Kind::Str),
    ],
};

pub const AGENT_HISTORIES: Spec = Spec {
    table: "agent_histories",
    key: col("id", "id", Kind::Str),
    time_column: "start_time",
    values: &[
        col("agent_uuid", "agentUUID", Kind::Str),
        col("start_time_ms", "startTimeMs", Kind::Ts),
        col("end_time_ms", "endTimeMs", Kind::Ts),
        col("duration", "duration", Kind::Int),
        col("work_status", "workStatus", Kind::Int),
    ],
};

pub const ALL: [Spec; 3] = [TALKS, PARTIES, AGENT_HISTORIES];

/// Every row of a table as `(key, values)`, keys repeated as often as they occur.
#[derive(Debug, Default)]
pub struct Rows {
    pub rows: Vec<(String, String)>,
}

impl Rows {
    pub fn by_key(&self) -> BTreeMap<String, String> {
        self.rows.iter().cloned().collect()
    }

    pub fn duplicate_keys(&self) -> Vec<String> {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (k, _) in &self.rows {
            *seen.entry(k).or_default() += 1;
        }
        seen.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| k.to_string())
            .collect()
    }
}

/// `dt=YYYY-MM-DD` of the folder holding `file`.
fn partition_date(file: &Path) -> NaiveDate {
    let dir = file
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let date = dir
        .strip_prefix("dt=")
        .unwrap_or_else(|| panic!("{} is not under a dt= folder", file.display()));
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap_or_else(|e| panic!("{}: bad dt partition: {e}", file.display()))
}

fn cell(array: &ArrayRef, row: usize, kind: Kind, what: &str) -> String {
    if array.is_null(row) {
        return "null".into();
    }
    match (kind, array.data_type()) {
        (Kind::Str, DataType::Utf8) => array.as_string::<i32>().value(row).trim().to_string(),
        (Kind::Int, DataType::Int64) => array.as_primitive::<Int64Type>().value(row).to_string(),
        (Kind::Ts, DataType::Timestamp(TimeUnit::Millisecond, _)) => array
            .as_primitive::<TimestampMillisecondType>()
            .value(row)
            .to_string(),
        (k, t) => panic!("{what}: expected {k:?}, the file has {t}"),
    }
}

fn field(v: &Value, c: &Col) -> String {
    match (c.kind, v.get(c.field)) {
        (_, None | Some(Value::Null)) => "null".into(),
        (Kind::Str, Some(Value::String(s))) => s.trim().to_string(),
        (Kind::Int | Kind::Ts, Some(Value::Number(n))) => n.to_string(),
        (Kind::Int | Kind::Ts, Some(Value::String(s))) if s.trim().is_empty() => "null".into(),
        (Kind::Int | Kind::Ts, Some(Value::String(s))) => s.trim().to_string(),
        (_, Some(other)) => other.to_string(),
    }
}

fn fingerprint(parts: impl Iterator<Item = String>, spec: &Spec) -> String {
    spec.values
        .iter()
        .zip(parts)
        .map(|(c, v)| format!("{}={v}", c.column))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads every Parquet file of `spec`'s table in a local warehouse completely (see
/// [`table::read_local`]) and checks that each row sits in the `dt` partition of its time
/// column's local date in `tz`.
pub fn read_rows(warehouse: &Path, spec: &Spec, tz: Tz) -> Rows {
    let table = table::read_local(warehouse, spec.table);
    let mut rows = Vec::new();
    for file in &table.files {
        let shown = &file.path;
        let dt = partition_date(Path::new(shown));
        let batch = &file.batch;
        let column = |name: &str| -> ArrayRef {
            batch
                .column_by_name(name)
                .unwrap_or_else(|| panic!("{shown}: no column {name}"))
                .clone()
        };
        let key = column(spec.key.column);
        let time = column(spec.time_column);
        let values: Vec<ArrayRef> = spec.values.iter().map(|c| column(c.column)).collect();
        for row in 0..batch.num_rows() {
            let k = cell(&key, row, spec.key.kind, spec.key.column);
            let t = time.as_primitive::<TimestampMillisecondType>().value(row);
            let local = DateTime::<Utc>::from_timestamp_millis(t)
                .expect("time column in range")
                .with_timezone(&tz)
                .date_naive();
            assert_eq!(local, dt, "{shown}: row {k} is in the wrong dt partition");
            let parts = spec
                .values
                .iter()
                .zip(&values)
                .map(|(c, a)| cell(a, row, c.kind, c.column));
            rows.push((k, fingerprint(parts, spec)));
        }
    }
    Rows { rows }
}

/// The records of `spec`'s table in `[from, to)` that are visible at `now` (a record shows
/// up once it has ended), keyed and fingerprinted like [`read_rows`].
pub fn visible_rows(
    ds: &Dataset,
    spec: &Spec,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> BTreeMap<String, String> {
    let all = match spec.table {
        "talks" => talks(ds, from, to),
        "parties" => parties(ds, from, to),
        "agent_histories" => agent_histories(ds, from, to),
        other => panic!("no ground truth for table {other}"),
    };
    let now_ms = now.timestamp_millis();
    all.filter(|r| r.ends_ms <= now_ms)
        .recs
        .iter()
        .map(|r| {
            let parts = spec.values.iter().map(|c| field(&r.json, c));
            (field(&r.json, &spec.key), fingerprint(parts, spec))
        })
        .collect()
}

/// Asserts that a table holds exactly the truth: every key once, no key missing or extra,
/// every compared value equal.
#[track_caller]
pub fn assert_rows_exact(table: &Rows, truth: &BTreeMap<String, String>, name: &str) {
    let dups = table.duplicate_keys();
    assert!(
        dups.is_empty(),
        "{name}: {} keys occur more than once, e.g. {:?}",
        dups.len(),
        &dups[..dups.len().min(5)]
    );
    let actual = table.by_key();
    let missing: Vec<&String> = truth.keys().filter(|k| !actual.contains_key(*k)).collect();
    let extra: Vec<&String> = actual.keys().filter(|k| !truth.contains_key(*k)).collect();
    let differ: Vec<String> = truth
        .iter()
        .filter_map(|(k, want)| {
            actual
                .get(k)
                .filter(|got| *got != want)
                .map(|got| format!("{k}: got [{got}] want [{want}]"))
        })
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{name}: {} rows, truth {}; {} missing (e.g. {:?}), {} extra (e.g. {:?}), {} differ (e.g. {:?})",
        actual.len(),
        truth.len(),
        missing.len(),
        &missing[..missing.len().min(3)],
        extra.len(),
        &extra[..extra.len().min(3)],
        differ.len(),
        &differ[..differ.len().min(3)]
    );
    assert!(
        !truth.is_empty(),
        "{name}: the ground truth is empty; the test proves nothing"
    );
}
