//! A warehouse table read back with the parquet crate, and the layout rules every table
//! must keep (CONTRACT section 3): `dt` of the time column, one file per window named by
//! it, rows sorted by time and inside their window.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimestampMillisecondType};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use object_store::ObjectStoreExt;
use sobot_sync::engine::run::Engine;
use sobot_sync::io::sink::list_files;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Columns that differ from run to run by design.
const RUN_COLUMNS: &[&str] = &["_extracted_at", "_run_id"];

/// One Parquet file of a table.
pub struct FileRows {
    /// Relative to the warehouse: `talks/dt=2024-03-01/…parquet`.
    pub path: String,
    pub batch: RecordBatch,
}

pub struct Table {
    pub name: String,
    pub files: Vec<FileRows>,
}

/// Reads every file of `table` in the engine's warehouse.
pub async fn read(engine: &Engine, table: &str) -> Table {
    let loc = &engine.warehouse;
    let paths = list_files(loc, table).await.expect("table listing");
    let mut files = Vec::new();
    for path in paths {
        let bytes = loc
            .store()
            .get(&loc.path(&path))
            .await
            .unwrap_or_else(|e| panic!("get {path}: {e}"))
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("read {path}: {e}"));
        let batch = super::parquet_file::decode(bytes, &path);
        files.push(FileRows { path, batch });
    }
    Table {
        name: table.to_string(),
        files,
    }
}

/// Reads every `<table>/**/*.parquet` under a local warehouse directory, whole, the way a
/// query engine would: a file that does not parse to the end fails the test, because
/// readers must only ever see whole files. Paths are relative to `warehouse`.
pub fn read_local(warehouse: &Path, table: &str) -> Table {
    let mut paths = Vec::new();
    parquet_files(&warehouse.join(table), &mut paths);
    paths.sort();
    let mut files = Vec::new();
    for file in &paths {
        let shown = file.display().to_string();
        let bytes = bytes::Bytes::from(
            std::fs::read(file).unwrap_or_else(|e| panic!("{shown}: cannot read: {e}")),
        );
        let batch = super::parquet_file::decode(bytes, &shown);
        let path = file
            .strip_prefix(warehouse)
            .map(|p| p.display().to_string())
            .unwrap_or(shown);
        files.push(FileRows { path, batch });
    }
    Table {
        name: table.to_string(),
        files,
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

pub fn col_ms(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let c = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"));
    let a = c.as_primitive::<TimestampMillisecondType>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect()
}

pub fn col_str(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"));
    let a = c.as_string::<i32>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
        .collect()
}

/// One value of a timestamp column.
pub fn ms_at(batch: &RecordBatch, name: &str, i: usize) -> Option<i64> {
    let a = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_primitive::<TimestampMillisecondType>();
    a.is_valid(i).then(|| a.value(i))
}

/// One value of an integer column.
pub fn i64_at(batch: &RecordBatch, name: &str, i: usize) -> Option<i64> {
    let a = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_primitive::<Int64Type>();
    a.is_valid(i).then(|| a.value(i))
}

/// One value of a text column.
pub fn str_at(batch: &RecordBatch, name: &str, i: usize) -> Option<String> {
    let a = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_string::<i32>();
    a.is_valid(i).then(|| a.value(i).to_string())
}

/// A row of a table by key: the file it is in and its row index there.
pub struct Located<'t> {
    pub file: &'t FileRows,
    pub row: usize,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.files.iter().map(|f| f.batch.num_rows()).sum()
    }

    /// Every key (trimmed) with how many times it occurs.
    pub fn key_counts(&self, key: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for f in &self.files {
            for k in col_str(&f.batch, key) {
                let k = k.unwrap_or_else(|| panic!("{}: null key in {}", self.name, f.path));
                *out.entry(k.trim().to_string()).or_insert(0) += 1;
            }
        }
        out
    }

    /// Rows by trimmed key; panics on a duplicate key.
    pub fn by_key(&self, key: &str) -> BTreeMap<String, Located<'_>> {
        let mut out = BTreeMap::new();
        for f in &self.files {
            for (row, k) in col_str(&f.batch, key).into_iter().enumerate() {
                let k = k.unwrap_or_default().trim().to_string();
                let dup = out.insert(k.clone(), Located { file: f, row });
                assert!(dup.is_none(), "{}: key {k:?} twice", self.name);
            }
        }
        out
    }

    /// Asserts the table holds every key of `expected` exactly once and nothing else.
    pub fn assert_keys_exactly(&self, key: &str, expected: &BTreeSet<String>) {
        let counts = self.key_counts(key);
        let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dups.is_empty(), "{}: duplicate keys {dups:?}", self.name);
        let got: BTreeSet<String> = counts.into_keys().collect();
        let missing: Vec<_> = expected.difference(&got).take(5).collect();
        let extra: Vec<_> = got.difference(expected).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: {} keys expected, {} found; missing (first 5) {missing:?}, extra {extra:?}",
            self.name,
            expected.len(),
            got.len()
        );
    }

    /// The layout rules: each file holds one window or a run of consecutive windows (each
    /// row's `[_window_start, _window_end)` lies inside the span the file's name gives),
    /// lives in the `dt` of every row's time, rows sorted by time inside their window,
    /// no window in two files, no two files overlapping. Returns the windows.
    pub fn assert_layout(&self, time_col: &str, tz: Tz) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut windows = Vec::new();
        let mut spans = Vec::new();
        for f in &self.files {
            let (dt, start, end) = parse_path(&self.name, &f.path);
            let ws = col_ms(&f.batch, "_window_start");
            let we = col_ms(&f.batch, "_window_end");
            let times = col_ms(&f.batch, time_col);
            assert!(f.batch.num_rows() > 0, "{}: empty file", f.path);
            let mut prev = i64::MIN;
            let mut file_windows = BTreeSet::new();
            for i in 0..f.batch.num_rows() {
                let (Some(w0), Some(w1)) = (ws[i], we[i]) else {
                    panic!("{} row {i}: null window columns", f.path);
                };
                assert!(
                    start.timestamp_millis() <= w0 && w0 < w1 && w1 <= end.timestamp_millis(),
                    "{} row {i}: window outside the file's span",
                    f.path
                );
                let t = times[i].unwrap_or_else(|| panic!("{} row {i}: null {time_col}", f.path));
                assert!(
                    w0 <= t && t < w1,
                    "{} row {i}: {time_col} {t} outside its window",
                    f.path
                );
                file_windows.insert((w0, w1));
                assert!(t >= prev, "{} row {i}: not sorted by {time_col}", f.path);
                prev = t;
                let local = DateTime::from_timestamp_millis(t)
                    .expect("time in range")
                    .with_timezone(&tz)
                    .date_naive();
                assert_eq!(local, dt, "{} row {i}: dt of {time_col}", f.path);
            }
            if f.batch.num_rows() > 0 && file_windows.len() == 1 {
                // A one-window file is named by exactly that window.
                let only = file_windows.first().copied();
                assert_eq!(
                    only,
                    Some((start.timestamp_millis(), end.timestamp_millis())),
                    "{}: name and window disagree",
                    f.path
                );
            }
            spans.push((start, end, f.path.clone()));
            windows.extend(file_windows.into_iter().map(|(a, b)| {
                (
                    DateTime::from_timestamp_millis(a).expect("window start"),
                    DateTime::from_timestamp_millis(b).expect("window end"),
                )
            }));
        }
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "{}: files {} and {} overlap",
                self.name,
                pair[0].2,
                pair[1].2
            );
        }
        let distinct: BTreeSet<_> = windows.iter().collect();
        assert_eq!(
            distinct.len(),
            windows.len(),
            "{}: a window in two files",
            self.name
        );
        windows.sort();
        windows
    }

    /// Every file's rows as text, without the columns that change from run to run: equal
    /// snapshots mean equal tables, file for file, row for row.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<String>> {
        let opts = FormatOptions::default().with_null("∅");
        let mut out = BTreeMap::new();
        for f in &self.files {
            let schema = f.batch.schema();
            let mut owned = Vec::new();
            for (i, field) in schema.fields().iter().enumerate() {
                if RUN_COLUMNS.contains(&field.name().as_str()) {
                    continue;
                }
                // Zoned timestamps need arrow's chrono-tz feature to print: print millis.
                let col = match field.data_type() {
                    DataType::Timestamp(..) => {
                        arrow::compute::cast(f.batch.column(i), &DataType::Int64)
                            .expect("timestamp as millis")
                    }
                    _ => f.batch.column(i).clone(),
                };
                owned.push((field.name().clone(), col));
            }
            let cols: Vec<_> = owned
                .iter()
                .map(|(name, col)| {
                    let fmt =
                        ArrayFormatter::try_new(col.as_ref(), &opts).expect("formattable column");
                    (name, fmt)
                })
                .collect();
            let rows = (0..f.batch.num_rows())
                .map(|r| {
                    cols.iter()
                        .map(|(name, fmt)| format!("{name}={}", unbind(&fmt.value(r).to_string())))
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            out.insert(f.path.clone(), rows);
        }
        out
    }
}

/// The simulator names its bound address in record URLs; two simulators with equal
/// configs differ only there, so snapshots replace `http://127.0.0.1:PORT` with `http://sim`.
fn unbind(text: &str) -> String {
    const LOOPBACK: &str = "http://127.0.0.1:";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(LOOPBACK) {
        out.push_str(&rest[..at]);
        out.push_str("http://sim");
        rest = rest[at + LOOPBACK.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// `<table>/dt=YYYY-MM-DD/<start>_<end>.parquet` -> (dt, start, end).
fn parse_path(table: &str, path: &str) -> (NaiveDate, DateTime<Utc>, DateTime<Utc>) {
    let rest = path
        .strip_prefix(&format!("{table}/dt="))
        .unwrap_or_else(|| panic!("{path}: not under {table}/dt="));
    let (dt, name) = rest
        .split_once('/')
        .unwrap_or_else(|| panic!("{path}: no file name"));
    let dt = NaiveDate::parse_from_str(dt, "%Y-%m-%d").unwrap_or_else(|e| panic!("{path}: {e}"));
    let stem = name
        .strip_suffix(".parquet")
        .unwrap_or_else(|| panic!("{path}: not .parquet"));
    let (s, e) = stem
        .split_once('_')
        .unwrap_or_else(|| panic!("{path}: name is not <start>_<end>"));
    let parse = |x: &str| {
        chrono::NaiveDateTime::parse_from_str(x, "%Y%m%dT%H%M%SZ")
            .unwrap_or_else(|err| panic!("{path}: {x}: {err}"))
            .and_utc()
    };
    (dt, parse(s), parse(e))
}
