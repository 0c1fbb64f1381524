//! API records (JSON objects) -> Arrow record batches, page by page.
//!
//! Values are coerced one by one before they reach a builder, so one bad value costs
//! that value (null, plus an entry in `_errors`), never the page: the arrow-json decoder
//! would fail the whole batch or silently null it. Fields the schema does not know go to
//! `_extra` as a JSON object, so nothing the API sends is lost.

use crate::schema::{ColumnType, TableSchema};
use crate::timeutil;
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use chrono_tz::Tz;
use serde_json::{Map, Value};
use std::sync::Arc;

/// One coerced value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Epoch milliseconds.
    Ts(i64),
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

fn int_from_number(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.is_finite() && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// Coerces one API value to a column type. `Err` carries why, for `_errors`.
///
/// Rules (CONTRACT section 4): `""` and `null` are null for every non-text type;
/// numbers may come as numeric strings; epoch-millisecond times of 0 are null (Sobot
/// sends 0 for a time that did not happen); local time strings are read in `tz`.
pub fn coerce(ty: ColumnType, v: &Value, tz: Tz) -> Result<Cell, String> {
    if v.is_null() {
        return Ok(Cell::Null);
    }
    match ty {
        ColumnType::String => Ok(match v {
            Value::String(s) => Cell::Str(s.trim().to_string()),
            Value::Number(n) => Cell::Str(n.to_string()),
            Value::Bool(b) => Cell::Str(b.to_string()),
            other => Cell::Str(other.to_string()),
        }),
        ColumnType::Json => Ok(match v {
            Value::String(s) => {
                let t = s.trim();
                if t.is_empty() {
                    Cell::Null
                } else if serde_json::from_str::<Value>(t)
                    .is_ok_and(|p| p.is_object() || p.is_array())
                {
                    Cell::Str(t.to_string())
                } else {
                    Cell::Str(Value::String(s.clone()).to_string())
                }
            }
            other => Cell::Str(other.to_string()),
        }),
        ColumnType::Int => match v {
            Value::Number(n) => int_from_number(n)
                .map(Cell::Int)
                .ok_or_else(|| "not a whole number".into()),
            Value::String(s) if s.trim().is_empty() => Ok(Cell::Null),
            Value::String(s) => parse_int_text(s.trim())
                .map(Cell::Int)
                .ok_or_else(|| "not a whole number".into()),
            Value::Bool(b) => Ok(Cell::Int(i64::from(*b))),
            _ => Err("not a whole number".into()),
        },
        ColumnType::Float => match v {
            Value::Number(n) => n
                .as_f64()
                .map(Cell::Float)
                .ok_or_else(|| "not a number".into()),
            Value::String(s) if s.trim().is_empty() => Ok(Cell::Null),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Cell::Float)
                .ok_or_else(|| "not a number".into()),
            _ => Err("not a number".into()),
        },
        ColumnType::Bool => match v {
            Value::Bool(b) => Ok(Cell::Bool(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(0) => Ok(Cell::Bool(false)),
                Some(1) => Ok(Cell::Bool(true)),
                _ => Err("not a boolean".into()),
            },
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
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
fn coerce_time(v: &Value, tz: Tz) -> Result<Cell, String> {
    let ms = match v {
        Value::Number(n) => int_from_number(n).ok_or("not epoch milliseconds")?,
        Value::String(s) => {
            let t = s.trim();
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
pub fn record_time(schema: &TableSchema, record: &Map<String, Value>, tz: Tz) -> Option<i64> {
    let col = schema.time_column();
    let v = lookup(schema, record, schema.time)?;
    match coerce(col.ty, v, tz) {
        Ok(Cell::Ts(ms)) => Some(ms),
        _ => None,
    }
}

/// The record's key as one string (parts joined by U+001F), if every part is present.
pub fn record_key(schema: &TableSchema, record: &Map<String, Value>) -> Option<String> {
    let mut key = String::new();
    for (i, &col) in schema.key.iter().enumerate() {
        let v = lookup(schema, record, col)?;
        let part = match v {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => return None,
            other => other.to_string(),
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

/// The value of a column's field (or one of its aliases) in a record.
fn lookup<'r>(
    schema: &TableSchema,
    record: &'r Map<String, Value>,
    col: usize,
) -> Option<&'r Value> {
    let c = &schema.columns[col];
    if let Some(v) = record.get(&c.field) {
        return Some(v);
    }
    // Aliases map to the same column index.
    record
        .iter()
        .find(|(k, _)| schema.by_field.get(k.as_str()) == Some(&col))
        .map(|(_, v)| v)
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
    fn append(&mut self, cell: Cell) {
        match (self, cell) {
            (Self::Str(b), Cell::Str(s)) => b.append_value(s),
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

/// Builds one record batch from records of one page.
pub struct BatchBuilder<'s> {
    schema: &'s TableSchema,
    tz: Tz,
    columns: Vec<ColumnBuilder>,
    extra: StringBuilder,
    errors: StringBuilder,
    rows: usize,
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
            bad_values: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn push(&mut self, record: &Map<String, Value>) {
        let mut cells: Vec<Option<Cell>> = vec![None; self.columns.len()];
        let mut extra = Map::new();
        let mut errors: Vec<Value> = Vec::new();
        for (field, value) in record {
            match self.schema.by_field.get(field.as_str()) {
                Some(&col) => {
                    if cells[col].is_some() {
                        // The field and an alias both present: the field itself wins.
                        if self.schema.columns[col].field != *field {
                            continue;
                        }
                    }
                    let ty = self.schema.columns[col].ty;
                    match coerce(ty, value, self.tz) {
                        Ok(cell) => cells[col] = Some(cell),
                        Err(why) => {
                            self.bad_values += 1;
                            cells[col] = Some(Cell::Null);
                            errors.push(serde_json::json!({
                                "field": field,
                                "value": value,
                                "error": why,
                            }));
                        }
                    }
                }
                None => {
                    extra.insert(field.clone(), value.clone());
                }
            }
        }
        for (builder, cell) in self.columns.iter_mut().zip(cells) {
            builder.append(cell.unwrap_or(Cell::Null));
        }
        if extra.is_empty() {
            self.extra.append_null();
        } else {
            self.extra.append_value(Value::Object(extra).to_string());
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
    let batch = concat_batches(&schema.arrow, batches)?;
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
    let indices = lexsort_to_indices(&sort, None)?;
    take_record_batch(&batch, &indices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMillisecondType};
    use serde_json::json;

    const SG: Tz = chrono_tz::Asia::Singapore;

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
        assert_eq!(coerce(Int, &json!("100"), SG), Ok(Cell::Int(100)));
        assert_eq!(coerce(Int, &json!(" 100 "), SG), Ok(Cell::Int(100)));
        assert_eq!(coerce(Int, &json!(100.0), SG), Ok(Cell::Int(100)));
        assert_eq!(coerce(Int, &json!(""), SG), Ok(Cell::Null));
        assert!(coerce(Int, &json!("abc"), SG).is_err());
        assert!(coerce(Int, &json!(1.5), SG).is_err());
        assert!(coerce(Int, &json!({"a": 1}), SG).is_err());
        assert_eq!(coerce(Float, &json!("25.66"), SG), Ok(Cell::Float(25.66)));
        assert_eq!(coerce(Float, &json!(""), SG), Ok(Cell::Null));
        assert_eq!(
            coerce(String, &json!(" 6bf3 "), SG),
            Ok(Cell::Str("6bf3".into()))
        );
        assert_eq!(
            coerce(String, &json!(95588), SG),
            Ok(Cell::Str("95588".into()))
        );
        assert_eq!(coerce(String, &json!(""), SG), Ok(Cell::Str("".into())));
        assert_eq!(coerce(Bool, &json!("true"), SG), Ok(Cell::Bool(true)));
        assert_eq!(coerce(Bool, &json!(0), SG), Ok(Cell::Bool(false)));
        assert_eq!(
            coerce(TimestampMs, &json!(1637068156419i64), SG),
            Ok(Cell::Ts(1637068156419))
        );
        assert_eq!(
            coerce(TimestampMs, &json!("1637068156419"), SG),
            Ok(Cell::Ts(1637068156419))
        );
        assert_eq!(coerce(TimestampMs, &json!(""), SG), Ok(Cell::Null));
        assert_eq!(coerce(TimestampMs, &json!(0), SG), Ok(Cell::Null));
        assert!(coerce(TimestampMs, &json!("soon"), SG).is_err());
        assert!(coerce(TimestampMs, &json!(99_999_999_999_999i64), SG).is_err());
        // 2022-07-07 01:00 in Singapore (UTC+8) is 2022-07-06T17:00Z.
        assert_eq!(
            coerce(LocalTime, &json!(" 2022-07-07 01 : 00 "), SG),
            Ok(Cell::Ts(1657126800000))
        );
        assert_eq!(
            coerce(Json, &json!({"a": 1}), SG),
            Ok(Cell::Str("{\"a\":1}".into()))
        );
        assert_eq!(
            coerce(Json, &json!("plain"), SG),
            Ok(Cell::Str("\"plain\"".into()))
        );
        assert_eq!(coerce(Json, &json!(""), SG), Ok(Cell::Null));
    }

    #[test]
    fn bad_values_become_null_with_errors_and_unknown_fields_go_to_extra() {
        let s = schema();
        let mut b = BatchBuilder::new(&s, SG, 2);
        let good = json!({"callID": " a ", "startTime": 1637068156419i64, "duration": "100",
            "fee": 1.5, "lastAgentFlag": false, "attachedData": {"x": 1}, "localStart": "2022-07-07 01:00"});
        let bad = json!({"callID": "b", "startTime": "", "duration": "ten", "newField": [1, 2]});
        b.push(good.as_object().unwrap());
        b.push(bad.as_object().unwrap());
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
    fn assemble_sorts_by_time_then_key() {
        let s = schema();
        let meta = RowMeta {
            run_id: "r".into(),
            extracted_at_ms: 1,
            window_start_ms: 2,
            window_end_ms: 3,
        };
        let mut b1 = BatchBuilder::new(&s, SG, 2);
        b1.push(
            json!({"callID": "z", "startTime": 3000})
                .as_object()
                .unwrap(),
        );
        b1.push(
            json!({"callID": "y", "startTime": 1000})
                .as_object()
                .unwrap(),
        );
        let mut b2 = BatchBuilder::new(&s, SG, 1);
        b2.push(
            json!({"callID": "x", "startTime": 3000})
                .as_object()
                .unwrap(),
        );
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
            record_key(&s, r.as_object().unwrap()).as_deref(),
            Some("k1")
        );
        assert_eq!(
            record_time(&s, r.as_object().unwrap(), SG),
            Some(1637068156419)
        );
        let r = json!({"callID": "", "startTime": "x"});
        assert_eq!(record_key(&s, r.as_object().unwrap()), None);
        assert_eq!(record_time(&s, r.as_object().unwrap(), SG), None);
    }
}
