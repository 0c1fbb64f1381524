//! Reads a local warehouse the way a query engine would (every `<table>/**/*.parquet`,
//! whole) and compares it with the simulator's ground truth, key by key and value by value.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sobot_sync::sim::Dataset;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
pub struct Table {
    pub rows: Vec<(String, String)>,
}

impl Table {
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

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            parquet_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
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

/// Reads every Parquet file of a table completely. A file that does not parse to the
/// end fails the test: readers must only ever see whole files. Also checks that each
/// row sits in the `dt` partition of its time column's local date in `tz`.
pub fn read_table(warehouse: &Path, spec: &Spec, tz: chrono_tz::Tz) -> Table {
    let mut files = Vec::new();
    parquet_files(&warehouse.join(spec.table), &mut files);
    files.sort();
    let mut rows = Vec::new();
    for file in &files {
        let shown = file.display().to_string();
        let bytes = bytes::Bytes::from(
            std::fs::read(file).unwrap_or_else(|e| panic!("{shown}: cannot read: {e}")),
        );
        let dt = partition_date(file);
        let batch = super::parquet_file::decode(bytes, &shown);
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
    Table { rows }
}

/// The simulator's records of `spec`'s table in `[from, to)` that are visible at `now`
/// (a record shows up once it has ended), keyed and fingerprinted like [`read_table`].
pub fn truth(
    ds: &Dataset,
    spec: &Spec,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> BTreeMap<String, String> {
    let now_ms = now.timestamp_millis();
    let ended = |v: &Value, f: &str| {
        v.get(f)
            .and_then(Value::as_i64)
            .is_some_and(|e| e <= now_ms)
    };
    let records: Vec<Value> = match spec.table {
        "talks" => ds
            .talks(from, to)
            .into_iter()
            .filter(|t| ended(t, "endTime"))
            .collect(),
        "parties" => ds
            .talks(from, to)
            .into_iter()
            .filter(|t| ended(t, "endTime"))
            .flat_map(|t| ds.parties(t["callID"].as_str().unwrap_or_default()))
            .collect(),
        "agent_histories" => ds
            .agent_histories(from, to)
            .into_iter()
            .filter(|h| ended(h, "endTimeMs"))
            .collect(),
        other => panic!("no ground truth for table {other}"),
    };
    records
        .iter()
        .map(|v| {
            let parts = spec.values.iter().map(|c| field(v, c));
            (field(v, &spec.key), fingerprint(parts, spec))
        })
        .collect()
}

/// Asserts that a table holds exactly the truth: every key once, no key missing or extra,
/// every compared value equal.
#[track_caller]
pub fn assert_exact(table: &Table, truth: &BTreeMap<String, String>, name: &str) {
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
