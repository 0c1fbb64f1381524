//! API records (JSON objects) -> Arrow record batches, page by page.
//!
//! Values are coerced one by one before they reach a builder, so one bad value costs
//! that value (null, plus an entry in `_errors`), never the page: the arrow-json decoder
//! would fail the whole batch or silently null it. Fields the schema does not know go to
//! `_extra` as a JSON object, so nothing the API sends is lost.

use crate::core::record::{RawRecord, Scalar, scalar};
use crate::core::schema::{ColumnType, TableSchema};
use crate::core::timeutil;
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::compute::{
    LexicographicalComparator, SortColumn, concat_batches, lexsort_to_indices, take_record_batch,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use chrono_tz::Tz;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// One coerced value; text borrows from the response when it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Epoch milliseconds.
    Ts(i64),
}

impl Cell<'_> {
    /// The same cell, owning its text.
    pub fn into_owned(self) -> Cell<'static> {
        match self {
            Cell::Null => Cell::Null,
            Cell::Str(s) => Cell::Str(Cow::Owned(s.into_owned())),
            Cell::Int(i) => Cell::Int(i),
            Cell::Float(f) => Cell::Float(f),
            Cell::Bool(b) => Cell::Bool(b),
            Cell::Ts(t) => Cell::Ts(t),
        }
    }
}

/// The metadata columns every row of one window gets.
#[derive(Debug, Clone)]
pub struct RowMeta {
    pub run_id: String,
    pub extracted_at_ms: i64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
}

fn parse_int_text(s: &str) -> Option<i64> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(i);
    }
    match s.parse::<f64>() {
        Ok(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.0e15 => Some(f as i64),
        _ => None,
    }
}

/// Nested JSON as compact text: what the API sent, re-serialised only if it carries
/// layout whitespace, so equal values give equal text.
fn compact_json(text: &str) -> Cow<'_, str> {
    if text
        .bytes()
        .any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
    {
        match serde_json::from_str::<Value>(text) {
            Ok(v) => Cow::Owned(v.to_string()),
            Err(_) => Cow::Borrowed(text),
        }
    } else {
        Cow::Borrowed(text)
    }
}

/// `str::trim` for values that are rarely padded: looks at the ends before scanning.
fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) if f.is_ascii_graphic() && l.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// Coerces one API value to a column type. `Err` carries why, for `_errors`.
///
/// Rules (CONTRACT section 4): `""` and `null` are null for every non-text type;
/// numbers may come as numeric strings; epoch-millisecond times of 0 are null (Sobot
/// sends 0 for a time that did not happen); local time strings are read in `tz`.
pub fn coerce<'a>(ty: ColumnType, v: Scalar<'a>, tz: Tz) -> Result<Cell<'a>, String> {
    if v == Scalar::Null {
        return Ok(Cell::Null);
    }
    match ty {
        ColumnType::String => Ok(match v {
            Scalar::Str(Cow::Borrowed(s)) => Cell::Str(Cow::Borrowed(trim(s))),
            Scalar::Str(Cow::Owned(s)) => Cell::Str(Cow::Owned(trim(&s).to_owned())),
            Scalar::Num(n) => Cell::Str(Cow::Borrowed(n)),
            Scalar::Bool(b) => Cell::Str(Cow::Borrowed(if b { "true" } else { "false" })),
            Scalar::Nested(t) => Cell::Str(compact_json(t)),
            Scalar::Null => Cell::Null,
        }),
        ColumnType::Json => Ok(match v {
            Scalar::Str(s) => {
                let t = trim(&s);
                if t.is_empty() {
                    Cell::Null
                } else if serde_json::from_str::<Value>(t)
                    .is_ok_and(|p| p.is_object() || p.is_array())
                {
                    Cell::Str(Cow::Owned(t.to_owned()))
                } else {
                    Cell::Str(Cow::Owned(Value::String(s.into_owned()).to_string()))
                }
            }
            Scalar::Nested(t) => Cell::Str(compact_json(t)),
            Scalar::Num(n) => Cell::Str(Cow::Borrowed(n)),
            Scalar::Bool(b) => Cell::Str(Cow::Borrowed(if b { "true" } else { "false" })),
            Scalar::Null => Cell::Null,
        }),
        ColumnType::Int => match v {
            Scalar::Num(n) => parse_int_text(n)
                .map(Cell::Int)
                .ok_or_else(|| "not a whole number".into()),
            Scalar::Str(s) if trim(&s).is_empty() => Ok(Cell::Null),
            Scalar::Str(s) => parse_int_text(trim(&s))
                .map(Cell::Int)
                .ok_or_else(|| "not a whole number".into()),
            Scalar::Bool(b) => Ok(Cell::Int(i64::from(b))),
            _ => Err("not a whole number".into()),
        },
        ColumnType::Float => match v {
            Scalar::Num(n) => n
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Cell::Float)
                .ok_or_else(|| "not a number".into()),
            Scalar::Str(s) if trim(&s).is_empty() => Ok(Cell::Null),
            Scalar::Str(s) => trim(&s)
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Cell::Float)
                .ok_or_else(|| "not a number".into()),
            _ => Err("not a number".into()),
        },
        ColumnType::Bool => match v {
            Scalar::Bool(b) => Ok(Cell::Bool(b)),
            Scalar::Num("0") => Ok(Cell::Bool(false)),
            Scalar::Num("1") => Ok(Cell::Bool(true)),
            Scalar::Str(s) => match trim(&s).to_ascii_lowercase().as_str() {
                "" => Ok(Cell::Null),
                "true" | "1" => Ok(Cell::Bool(true)),
                "false" | "0" => Ok(Cell::Bool(false)),
                _ => Err("not a boolean".into()),
            },
            _ => Err("not a boolean".into()),
        },
        ColumnType::TimestampMs | ColumnType::LocalTime => coerce_time(v, tz),
    }
}

/// Epoch milliseconds, a numeric string of them, or a local time string.
fn coerce_time<'a>(v: Scalar<'_>, tz: Tz) -> Result<Cell<'a>, String> {
    let ms = match v {
        Scalar::Num(n) => parse_int_text(n).ok_or("not epoch milliseconds")?,
        Scalar::Str(s) => {
            let t = trim(&s);
            if t.is_empty() {
                return Ok(Cell::Null);
            }
            if let Some(ms) = parse_int_text(t) {
                ms
            } else if let Some(local) = timeutil::parse_local_string(t) {
                timeutil::resolve_local(tz, local).timestamp_millis()
            } else if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
                dt.timestamp_millis()
            } else {
                return Err("not a time (epoch ms or yyyy-MM-dd HH:mm)".into());
            }
        }
        _ => return Err("not a time".into()),
    };
    if ms == 0 {
        return Ok(Cell::Null);
    }
    // Years 1900..=2200: anything else is a unit mistake, not a call time.
    if !(-2_208_988_800_000..=7_258_118_400_000).contains(&ms) {
        return Err("time out of range".into());
    }
    Ok(Cell::Ts(ms))
}

/// The record's time (epoch ms) by the schema's time column, if it has a usable one.
pub fn record_time(schema: &TableSchema, record: &RawRecord<'_>, tz: Tz) -> Option<i64> {
    let col = schema.time_column();
    let v = lookup(schema, record, schema.time)?;
    match coerce(col.ty, scalar(v), tz) {
        Ok(Cell::Ts(ms)) => Some(ms),
        _ => None,
    }
}

/// The record's key as one string (parts joined by U+001F), if every part is present.
pub fn record_key(schema: &TableSchema, record: &RawRecord<'_>) -> Option<String> {
    let mut key = String::new();
    for (i, &col) in schema.key.iter().enumerate() {
        let v = lookup(schema, record, col)?;
        let part: Cow<'_, str> = match scalar(v) {
            Scalar::Str(s) => match s {
                Cow::Borrowed(b) => Cow::Borrowed(trim(b)),
                Cow::Owned(o) => Cow::Owned(trim(&o).to_owned()),
            },
            Scalar::Num(n) => Cow::Borrowed(n),
            Scalar::Null => return None,
            Scalar::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            Scalar::Nested(t) => compact_json(t),
        };
        if part.is_empty() {
            return None;
        }
        if i > 0 {
            key.push('\u{1f}');
        }
        key.push_str(&part);
    }
    Some(key)
}

/// The value of a column's field (or one of its aliases) in a record; the field's own
/// name wins over an alias.
fn lookup<'r>(schema: &TableSchema, record: &RawRecord<'r>, col: usize) -> Option<&'r str> {
    let c = &schema.columns[col];
    if let Some(v) = record.get(&c.field) {
        return Some(v);
    }
    c.aliases.iter().find_map(|alias| record.get(alias))
}

enum ColumnBuilder {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMillisecondBuilder),
}

impl ColumnBuilder {
    fn new(ty: ColumnType, capacity: usize) -> Self {
        match ty {
            ColumnType::String | ColumnType::Json => {
                Self::Str(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            ColumnType::Int => Self::Int(Int64Builder::with_capacity(capacity)),
            ColumnType::Float => Self::Float(Float64Builder::with_capacity(capacity)),
            ColumnType::Bool => Self::Bool(BooleanBuilder::with_capacity(capacity)),
            ColumnType::TimestampMs | ColumnType::LocalTime => {
                Self::Ts(TimestampMillisecondBuilder::with_capacity(capacity).with_timezone("UTC"))
            }
        }
    }

    /// Appends a cell; a cell of the wrong kind (cannot happen after `coerce`) is null.
    fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (Self::Str(b), Cell::Str(s)) => b.append_value(s.as_ref()),
            (Self::Int(b), Cell::Int(i)) => b.append_value(i),
            (Self::Float(b), Cell::Float(f)) => b.append_value(f),
            (Self::Bool(b), Cell::Bool(x)) => b.append_value(x),
            (Self::Ts(b), Cell::Ts(t)) => b.append_value(t),
            (Self::Str(b), _) => b.append_null(),
            (Self::Int(b), _) => b.append_null(),
            (Self::Float(b), _) => b.append_null(),
            (Self::Bool(b), _) => b.append_null(),
            (Self::Ts(b), _) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Str(mut b) => Arc::new(b.finish()),
            Self::Int(mut b) => Arc::new(b.finish()),
            Self::Float(mut b) => Arc::new(b.finish()),
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::Ts(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Sentinel for "no field of the record feeds this column".
const UNSET: usize = usize::MAX;

/// Builds one record batch from records of one page.
pub struct BatchBuilder<'s> {
    schema: &'s TableSchema,
    tz: Tz,
    columns: Vec<ColumnBuilder>,
    extra: StringBuilder,
    errors: StringBuilder,
    rows: usize,
    /// Per column, the index of the record field that feeds it (reused across rows).
    chosen: Vec<usize>,
    /// The `_extra` object of the row being built (reused across rows).
    extra_buf: String,
    /// Field name -> column of the previous record, by position: records of one
    /// endpoint list their fields in the same order, so a comparison replaces a hash
    /// lookup for almost every field.
    by_position: Vec<(String, Option<usize>)>,
    /// Values that could not be converted, in this batch (for logging).
    pub bad_values: usize,
}

impl<'s> BatchBuilder<'s> {
    pub fn new(schema: &'s TableSchema, tz: Tz, capacity: usize) -> Self {
        Self {
            schema,
            tz,
            columns: schema
                .columns
                .iter()
                .map(|c| ColumnBuilder::new(c.ty, capacity))
                .collect(),
            extra: StringBuilder::new(),
            errors: StringBuilder::new(),
            rows: 0,
            chosen: vec![UNSET; schema.columns.len()],
            extra_buf: String::new(),
            by_position: Vec::new(),
            bad_values: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn push(&mut self, record: &RawRecord<'_>) {
        self.chosen.fill(UNSET);
        self.extra_buf.clear();
        for (i, (field, value)) in record.fields.iter().enumerate() {
            let column = match self.by_position.get(i) {
                Some((name, col)) if name == field => *col,
                _ => {
                    let col = self.schema.by_field.get(field.as_ref()).copied();
                    let entry = (field.to_string(), col);
                    match self.by_position.get_mut(i) {
                        Some(slot) => *slot = entry,
                        None => self.by_position.push(entry),
                    }
                    col
                }
            };
            match column {
                Some(col) => {
                    // The field and an alias both present: the field itself wins.
                    if self.chosen[col] == UNSET || self.schema.columns[col].field == *field {
                        self.chosen[col] = i;
                    }
                }
                None => {
                    self.extra_buf
                        .push(if self.extra_buf.is_empty() { '{' } else { ',' });
                    self.extra_buf
                        .push_str(&Value::String(field.to_string()).to_string());
                    self.extra_buf.push(':');
                    self.extra_buf.push_str(&compact_json(value.trim()));
                }
            }
        }
        let mut errors: Vec<Value> = Vec::new();
        for (col, builder) in self.columns.iter_mut().enumerate() {
            let i = self.chosen[col];
            if i == UNSET {
                builder.append(Cell::Null);
                continue;
            }
            let (field, value) = &record.fields[i];
            match coerce(self.schema.columns[col].ty, scalar(value), self.tz) {
                Ok(cell) => builder.append(cell),
                Err(why) => {
                    self.bad_values += 1;
                    builder.append(Cell::Null);
                    errors.push(serde_json::json!({
                        "field": field,
                        "value": serde_json::from_str::<Value>(value).unwrap_or(Value::Null),
                        "error": why,
                    }));
                }
            }
        }
        if self.extra_buf.is_empty() {
            self.extra.append_null();
        } else {
            self.extra_buf.push('}');
            self.extra.append_value(&self.extra_buf);
        }
        if errors.is_empty() {
            self.errors.append_null();
        } else {
            self.errors.append_value(Value::Array(errors).to_string());
        }
        self.rows += 1;
    }

    pub fn finish(self, meta: &RowMeta) -> Result<RecordBatch, ArrowError> {
        let rows = self.rows;
        let mut arrays: Vec<ArrayRef> = self
            .columns
            .into_iter()
            .map(ColumnBuilder::finish)
            .collect();
        let mut extra = self.extra;
        let mut errors = self.errors;
        arrays.push(Arc::new(extra.finish()));
        arrays.push(Arc::new(errors.finish()));
        let ts = |v: i64| -> ArrayRef {
            let mut b = TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC");
            b.append_value_n(v, rows);
            Arc::new(b.finish())
        };
        arrays.push(ts(meta.extracted_at_ms));
        let mut run = StringBuilder::with_capacity(rows, rows * meta.run_id.len());
        for _ in 0..rows {
            run.append_value(&meta.run_id);
        }
        arrays.push(Arc::new(run.finish()));
        arrays.push(ts(meta.window_start_ms));
        arrays.push(ts(meta.window_end_ms));
        RecordBatch::try_new(self.schema.arrow.clone(), arrays)
    }
}

/// Joins a window's page batches into one batch sorted by time, then key, so files are
/// laid out for range pruning and reruns give byte-stable order.
pub fn assemble(schema: &TableSchema, batches: &[RecordBatch]) -> Result<RecordBatch, ArrowError> {
    let batch = match batches {
        [one] => one.clone(),
        _ => concat_batches(&schema.arrow, batches)?,
    };
    if batch.num_rows() < 2 {
        return Ok(batch);
    }
    let mut sort = vec![SortColumn {
        values: batch.column(schema.time).clone(),
        options: None,
    }];
    for &k in &schema.key {
        sort.push(SortColumn {
            values: batch.column(k).clone(),
            options: None,
        });
    }
    // The API mostly answers in time order already: a check costs one comparison per
    // row, a sort and the copy of every column much more.
    let order = LexicographicalComparator::try_new(&sort)?;
    if (1..batch.num_rows()).all(|i| order.compare(i - 1, i) != std::cmp::Ordering::Greater) {
        return Ok(batch);
    }
    let indices = lexsort_to_indices(&sort, None)?;
    take_record_batch(&batch, &indices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::parse_record;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMillisecondType};
    use serde_json::json;

    const SG: Tz = chrono_tz::Asia::Singapore;

    fn c(ty: ColumnType, v: Value) -> Result<Cell<'static>, String> {
        let raw = v.to_string();
        coerce(ty, scalar(&raw), SG).map(Cell::into_owned)
    }

    fn rec(v: Value) -> String {
        v.to_string()
    }

    fn meta() -> RowMeta {
        RowMeta {
            run_id: "r".into(),
            extracted_at_ms: 1,
            window_start_ms: 2,
            window_end_ms: 3,
        }
    }

    fn schema() -> TableSchema {
        TableSchema::parse(
            r#"
table = "t"
key = ["call_id"]
time_column = "start_time"
[[columns]]
field = "callID"
type = "string"
[[columns]]
field = "startTime"
type = "timestamp_ms"
[[columns]]
field = "duration"
type = "int"
[[columns]]
field = "fee"
type = "float"
[[columns]]
field = "lastAgentFlag"
type = "bool"
[[columns]]
field = "attachedData"
type = "json"
[[columns]]
field = "localStart"
type = "local_time"
"#,
            "test",
        )
        .unwrap()
    }

    #[test]
    fn coercion_rules() {
        use ColumnType::*;
        assert_eq!(c(Int, json!("100")), Ok(Cell::Int(100)));
        assert_eq!(c(Int, json!(" 100 ")), Ok(Cell::Int(100)));
        assert_eq!(c(Int, json!(100.0)), Ok(Cell::Int(100)));
        assert_eq!(c(Int, json!("")), Ok(Cell::Null));
        assert!(c(Int, json!("abc")).is_err());
        assert!(c(Int, json!(1.5)).is_err());
        assert!(c(Int, json!({"a": 1})).is_err());
        assert_eq!(c(Float, json!("25.66")), Ok(Cell::Float(25.66)));
        assert_eq!(c(Float, json!("")), Ok(Cell::Null));
        assert_eq!(
            c(String, json!(" 6bf3 ")),
            Ok(Cell::Str(Cow::Borrowed("6bf3")))
        );
        assert_eq!(
            c(String, json!(95588)),
            Ok(Cell::Str(Cow::Borrowed("95588")))
        );
        assert_eq!(c(String, json!("")), Ok(Cell::Str(Cow::Borrowed(""))));
        assert_eq!(c(Bool, json!("true")), Ok(Cell::Bool(true)));
        assert_eq!(c(Bool, json!(0)), Ok(Cell::Bool(false)));
        assert_eq!(
            c(TimestampMs, json!(1637068156419i64)),
            Ok(Cell::Ts(1637068156419))
        );
        assert_eq!(
            c(TimestampMs, json!("1637068156419")),
            Ok(Cell::Ts(1637068156419))
        );
        assert_eq!(c(TimestampMs, json!("")), Ok(Cell::Null));
        assert_eq!(c(TimestampMs, json!(0)), Ok(Cell::Null));
        assert!(c(TimestampMs, json!("soon")).is_err());
        assert!(c(TimestampMs, json!(99_999_999_999_999i64)).is_err());
        // 2022-07-07 01:00 in Singapore (UTC+8) is 2022-07-06T17:00Z.
        assert_eq!(
            c(LocalTime, json!(" 2022-07-07 01 : 00 ")),
            Ok(Cell::Ts(1657126800000))
        );
        assert_eq!(
            c(Json, json!({"a": 1})),
            Ok(Cell::Str(Cow::Borrowed("{\"a\":1}")))
        );
        assert_eq!(
            c(Json, json!("plain")),
            Ok(Cell::Str(Cow::Borrowed("\"plain\"")))
        );
        assert_eq!(c(Json, json!("")), Ok(Cell::Null));
    }

    #[test]
    fn bad_values_become_null_with_errors_and_unknown_fields_go_to_extra() {
        let s = schema();
        let mut b = BatchBuilder::new(&s, SG, 2);
        let good = json!({"callID": " a ", "startTime": 1637068156419i64, "duration": "100",
            "fee": 1.5, "lastAgentFlag": false, "attachedData": {"x": 1}, "localStart": "2022-07-07 01:00"});
        let bad = json!({"callID": "b", "startTime": "", "duration": "ten", "newField": [1, 2]});
        b.push(&parse_record(&good.to_string()).unwrap());
        b.push(&parse_record(&bad.to_string()).unwrap());
        assert_eq!(b.bad_values, 1);
        let meta = RowMeta {
            run_id: "r1".into(),
            extracted_at_ms: 1,
            window_start_ms: 2,
            window_end_ms: 3,
        };
        let batch = b.finish(&meta).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let ids = batch.column(0).as_string::<i32>();
        assert_eq!(ids.value(0), "a");
        let dur = batch.column(2).as_primitive::<Int64Type>();
        assert_eq!(dur.value(0), 100);
        assert!(dur.is_null(1));
        let start = batch.column(1).as_primitive::<TimestampMillisecondType>();
        assert!(start.is_null(1));
        let extra = batch.column_by_name("_extra").unwrap().as_string::<i32>();
        assert!(extra.is_null(0));
        assert_eq!(extra.value(1), r#"{"newField":[1,2]}"#);
        let errors = batch.column_by_name("_errors").unwrap().as_string::<i32>();
        assert!(errors.is_null(0));
        let e: Value = serde_json::from_str(errors.value(1)).unwrap();
        assert_eq!(e[0]["field"], "duration");
        assert_eq!(e[0]["value"], "ten");
        assert_eq!(
            batch
                .column_by_name("_run_id")
                .unwrap()
                .as_string::<i32>()
                .value(1),
            "r1"
        );
    }

    #[test]
    fn assemble_keeps_rows_already_in_order_and_trims_only_padded_values() {
        assert_eq!(trim("abc"), "abc");
        assert_eq!(trim(" abc\t"), "abc");
        assert_eq!(trim("\u{3000}abc"), "abc");
        assert_eq!(trim(""), "");
        let s = schema();
        let meta = meta();
        let mut b = BatchBuilder::new(&s, SG, 4);
        for (id, t) in [("a", 1000), ("b", 1000), ("c", 2000), ("d", 2000)] {
            b.push(&parse_record(&rec(json!({"callID": id, "startTime": t}))).unwrap());
        }
        let out = assemble(&s, &[b.finish(&meta).unwrap()]).unwrap();
        let ids: Vec<&str> = out.column(0).as_string::<i32>().iter().flatten().collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
    }

    #[test]
    fn assemble_sorts_by_time_then_key() {
        let s = schema();
        let meta = meta();
        let mut b1 = BatchBuilder::new(&s, SG, 2);
        b1.push(&parse_record(&rec(json!({"callID": "z", "startTime": 3000}))).unwrap());
        b1.push(&parse_record(&rec(json!({"callID": "y", "startTime": 1000}))).unwrap());
        let mut b2 = BatchBuilder::new(&s, SG, 1);
        b2.push(&parse_record(&rec(json!({"callID": "x", "startTime": 3000}))).unwrap());
        let out = assemble(&s, &[b1.finish(&meta).unwrap(), b2.finish(&meta).unwrap()]).unwrap();
        let ids: Vec<&str> = out
            .column(0)
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap())
            .collect();
        assert_eq!(ids, ["y", "x", "z"]);
    }

    #[test]
    fn keys_and_times() {
        let s = schema();
        let r = json!({"callID": " k1 ", "startTime": "1637068156419"});
        assert_eq!(
            record_key(&s, &parse_record(&r.to_string()).unwrap()).as_deref(),
            Some("k1")
        );
        assert_eq!(
            record_time(&s, &parse_record(&r.to_string()).unwrap(), SG),
            Some(1637068156419)
        );
        let r = json!({"callID": "", "startTime": "x"});
        assert_eq!(record_key(&s, &parse_record(&r.to_string()).unwrap()), None);
        assert_eq!(
            record_time(&s, &parse_record(&r.to_string()).unwrap(), SG),
            None
        );
    }
}
