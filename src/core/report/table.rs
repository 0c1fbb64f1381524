//! A report table's schema and rows: the bridge from report rows (JSON objects of one
//! page) to the crate's converter.
//!
//! The schema is built from the [`ReportSpec`] rather than read from `schemas/`: its
//! indicator columns keep the API's spelling (`agentOnline_percent`), which the schema
//! files' snake_case rule would refuse, and a pipeline that names fewer indicators gets
//! fewer columns without a second file to keep in step.
//!
//! `period_start` / `period_end` are not API fields. The runner parses each row's
//! `result_date` on the period grid and adds the two instants to the row as epoch
//! milliseconds under those names ([`with_period`]) before the converter sees it, so
//! they go through the same coercion as every other timestamp; `result_date` itself is
//! kept as the API sent it.

use super::period::{Period, PeriodError, PeriodGrid};
use super::spec::{ColumnKind, ReportSpec};
use crate::core::schema::{Column, ColumnType, TableSchema};
use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The injected field holding a row's period start (epoch ms).
pub const PERIOD_START: &str = "period_start";
/// The injected field holding a row's period end (epoch ms).
pub const PERIOD_END: &str = "period_end";

/// The table schema of a report: the spec's columns (see [`ReportSpec::columns`]), then
/// the metadata columns every table has; key `period_start` + the family's id column,
/// time column `period_start` (CONTRACT section 4).
pub fn schema(spec: &ReportSpec, table: &str) -> TableSchema {
    let mut columns = Vec::new();
    let mut by_field = HashMap::new();
    for c in spec.columns() {
        let (field, ty) = match c.kind {
            ColumnKind::PeriodStart => (PERIOD_START.to_string(), ColumnType::TimestampMs),
            ColumnKind::PeriodEnd => (PERIOD_END.to_string(), ColumnType::TimestampMs),
            ColumnKind::Text => (c.field.clone(), ColumnType::String),
            ColumnKind::Int => (c.field.clone(), ColumnType::Int),
            ColumnKind::Float => (c.field.clone(), ColumnType::Float),
            // Epoch ms or a local date-time string: the converter's time rule takes both.
            ColumnKind::Timestamp => (c.field.clone(), ColumnType::TimestampMs),
        };
        by_field.insert(field.clone(), columns.len());
        columns.push(Column {
            name: c.name,
            field,
            ty,
            aliases: Vec::new(),
            pii: None,
        });
    }
    let index = |name: &str| columns.iter().position(|c| c.name == name).unwrap_or(0);
    let key = spec.key_columns().iter().map(|k| index(k)).collect();
    let time = index(PERIOD_START);
    let arrow = crate::core::schema::arrow_schema(&columns);
    TableSchema {
        table: table.to_string(),
        doc: Some(format!(
            "{} report ({}), one row per period and {}",
            spec.family.file_stem(),
            spec.date_type,
            spec.key_columns()[1]
        )),
        columns,
        key,
        time,
        by_field,
        arrow,
    }
}

/// The row as JSON text with its period added (`null` when `result_date` could not be
/// read), ready for `record::parse_record`. A field of the same name the API might send
/// is replaced: the period columns are the runner's, computed from `result_date`.
pub fn with_period(row: &Map<String, Value>, period: Option<&Period>) -> String {
    let mut row = row.clone();
    let (s, e) = match period {
        Some(p) => (
            Value::from(p.start.timestamp_millis()),
            Value::from(p.end.timestamp_millis()),
        ),
        None => (Value::Null, Value::Null),
    };
    row.insert(PERIOD_START.into(), s);
    row.insert(PERIOD_END.into(), e);
    Value::Object(row).to_string()
}

/// The `result_date` of a row, parsed by `parse`; a missing or non-text value is an
/// error carrying what was there.
pub fn row_period(
    row: &Map<String, Value>,
    parse: impl Fn(&str) -> Result<Period, PeriodError>,
) -> Result<Period, PeriodError> {
    match row.get("result_date") {
        Some(Value::String(s)) => parse(s),
        other => Err(PeriodError {
            raw: other.map_or("(missing)".to_string(), Value::to_string),
            reason: "result_date is missing or not text".into(),
        }),
    }
}

/// issue 13: the periods of the rows of one answer, in the order sent: their
/// `result_date`s resolved together on `grid` ([`PeriodGrid::resolve_rows`], which tells
/// the two passes of a DST fall-back hour apart by `key_of`, the row's dimension value).
/// A missing or non-text `result_date` is an error carrying what was there.
pub fn row_periods(
    rows: &[Map<String, Value>],
    grid: &PeriodGrid,
    key_of: impl Fn(&Map<String, Value>) -> String,
) -> Vec<Result<Period, PeriodError>> {
    let keys: Vec<String> = rows.iter().map(&key_of).collect();
    let mut readable: Vec<(&str, &str)> = Vec::new();
    for (row, key) in rows.iter().zip(&keys) {
        if let Some(Value::String(s)) = row.get("result_date") {
            readable.push((s.as_str(), key.as_str()));
        }
    }
    let mut resolved = grid.resolve_rows(&readable).into_iter();
    rows.iter()
        .map(|row| match row.get("result_date") {
            Some(Value::String(s)) => resolved.next().unwrap_or_else(|| {
                Err(PeriodError {
                    raw: s.clone(),
                    reason: "names no period".into(),
                })
            }),
            // Not text: `row_period` says so without parsing.
            _ => row_period(row, |raw| {
                Err(PeriodError {
                    raw: raw.to_string(),
                    reason: "result_date is not text".into(),
                })
            }),
        })
        .collect()
}

/// Adds one `_errors` entry per row of `batch` that has an error in `bad` (row index ->
/// error), keeping the converter's entries of the same row. This is how a `result_date`
/// that could not be read is recorded: its period columns are null and `_errors` says
/// why, with the raw value, as for any value the converter could not convert.
pub fn add_period_errors(
    batch: &RecordBatch,
    bad: &BTreeMap<usize, PeriodError>,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if bad.is_empty() {
        return Ok(batch.clone());
    }
    let idx = batch.schema().index_of("_errors")?;
    let old = batch.column(idx).as_string::<i32>();
    let mut out: Vec<Option<String>> = Vec::with_capacity(old.len());
    for i in 0..old.len() {
        let existing = old.is_valid(i).then(|| old.value(i));
        match bad.get(&i) {
            None => out.push(existing.map(str::to_string)),
            Some(e) => {
                let mut list: Vec<Value> = existing
                    .and_then(|t| serde_json::from_str::<Vec<Value>>(t).ok())
                    .unwrap_or_default();
                list.push(serde_json::json!({
                    "field": "result_date",
                    "value": e.raw,
                    "error": e.reason,
                }));
                out.push(Some(Value::Array(list).to_string()));
            }
        }
    }
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[idx] = Arc::new(StringArray::from(out));
    RecordBatch::try_new(batch.schema(), columns)
}

/// Per period (`period_start`, epoch ms), the sum of each additive indicator over the
/// rows of `batch`: what a window's file says, compared before and after a re-fetch to
/// report restatements. Rows without a period are left out; null values count as 0.
pub fn period_totals(
    spec: &ReportSpec,
    batch: &RecordBatch,
) -> BTreeMap<i64, BTreeMap<String, f64>> {
    let mut out: BTreeMap<i64, BTreeMap<String, f64>> = BTreeMap::new();
    let Some(starts) = batch
        .column_by_name(PERIOD_START)
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
    else {
        return out;
    };
    for ind in spec.indicators.iter().filter(|i| i.is_additive()) {
        let Some(col) = batch.column_by_name(&ind.name) else {
            continue;
        };
        let value = |i: usize| -> f64 {
            if col.is_null(i) {
                return 0.0;
            }
            if let Some(a) = col.as_primitive_opt::<Int64Type>() {
                a.value(i) as f64
            } else if let Some(a) = col.as_primitive_opt::<Float64Type>() {
                a.value(i)
            } else {
                0.0
            }
        };
        for i in 0..batch.num_rows() {
            if starts.is_null(i) {
                continue;
            }
            *out.entry(starts.value(i))
                .or_default()
                .entry(ind.name.clone())
                .or_default() += value(i);
        }
    }
    out
}

/// One period whose totals changed: `(indicator, old, new)` for each indicator that
/// differs. A period only on one side counts its indicators as 0 on the other.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub period_start_ms: i64,
    pub indicators: Vec<(String, f64, f64)>,
}

/// The periods whose totals differ between `old` and `new`.
pub fn changes(
    old: &BTreeMap<i64, BTreeMap<String, f64>>,
    new: &BTreeMap<i64, BTreeMap<String, f64>>,
) -> Vec<Change> {
    let empty = BTreeMap::new();
    let periods: std::collections::BTreeSet<i64> = old.keys().chain(new.keys()).copied().collect();
    let mut out = Vec::new();
    for p in periods {
        let (o, n) = (old.get(&p).unwrap_or(&empty), new.get(&p).unwrap_or(&empty));
        let names: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
        let diffs: Vec<(String, f64, f64)> = names
            .into_iter()
            .filter_map(|name| {
                let (a, b) = (
                    o.get(name).copied().unwrap_or(0.0),
                    n.get(name).copied().unwrap_or(0.0),
                );
                (a != b).then(|| (name.clone(), a, b))
            })
            .collect();
        if !diffs.is_empty() {
            out.push(Change {
                period_start_ms: p,
                indicators: diffs,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::convert::{BatchBuilder, RowMeta};
    use crate::core::record::parse_record;
    use crate::core::schema::timestamp_type;
    use chrono_tz::Asia::Singapore;

    fn spec() -> ReportSpec {
        ReportSpec::from_pipeline_text(
            "[report]\nfamily = \"agents\"\ndirection = \"status\"\ndate_type = \"day\"\nindicators = [\"agent_login_sum_duration\", \"agentOnline_percent\", \"agentFirstLogin_timestamp\"]\n",
            "t.toml",
        )
        .unwrap()
    }

    #[test]
    fn rows_convert_with_their_period_and_a_bad_result_date_is_an_error_not_a_panic() {
        let spec = spec();
        let s = schema(&spec, "report_agents_status");
        let names: Vec<&str> = s.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "period_start",
                "period_end",
                "result_date",
                "service_id",
                "service_no",
                "service_name",
                "agent_login_sum_duration",
                "agentOnline_percent",
                "agentFirstLogin_timestamp"
            ]
        );
        let grid = spec.grid(Singapore);
        let rows: Vec<Map<String, Value>> = [
            serde_json::json!({"result_date": "2024-03-01", "serviceId": "a1", "agent_login_sum_duration": "3600", "agentOnline_percent": 0.5, "agentFirstLogin_timestamp": 1709254800000i64, "other": 1}),
            serde_json::json!({"result_date": "someday", "serviceId": "a2", "agent_login_sum_duration": 10, "agentOnline_percent": "x"}),
        ]
        .into_iter()
        .map(|v| v.as_object().cloned().unwrap())
        .collect();
        let mut bad = BTreeMap::new();
        let texts: Vec<String> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let p = row_period(r, |raw| grid.parse_result_date(raw));
                if let Err(e) = &p {
                    bad.insert(i, e.clone());
                }
                with_period(r, p.as_ref().ok())
            })
            .collect();
        let mut b = BatchBuilder::new(&s, Singapore, 2);
        for t in &texts {
            b.push(&parse_record(t).unwrap());
        }
        let meta = RowMeta {
            run_id: "r".into(),
            extracted_at_ms: 1,
            window_start_ms: 1,
            window_end_ms: 2,
        };
        let batch = add_period_errors(&b.finish(&meta).unwrap(), &bad).unwrap();
        let starts = batch
            .column_by_name("period_start")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        assert_eq!(starts.value(0), 1_709_222_400_000);
        assert!(starts.is_null(1));
        let errors = batch.column_by_name("_errors").unwrap().as_string::<i32>();
        assert!(errors.is_null(0));
        let e1: Vec<Value> = serde_json::from_str(errors.value(1)).unwrap();
        assert_eq!(e1.len(), 2, "{e1:?}");
        assert!(
            e1.iter()
                .any(|e| e["field"] == "result_date" && e["value"] == "someday")
        );
        assert!(e1.iter().any(|e| e["field"] == "agentOnline_percent"));
        let extra = batch.column_by_name("_extra").unwrap().as_string::<i32>();
        assert_eq!(extra.value(0), "{\"other\":1}");
        assert_eq!(
            batch
                .column_by_name("agentFirstLogin_timestamp")
                .unwrap()
                .data_type(),
            &timestamp_type()
        );

        let totals = period_totals(&spec, &batch);
        assert_eq!(totals.len(), 1);
        assert_eq!(
            totals[&1_709_222_400_000]["agent_login_sum_duration"],
            3600.0
        );
        let mut later = totals.clone();
        later
            .get_mut(&1_709_222_400_000)
            .unwrap()
            .insert("agent_login_sum_duration".into(), 3690.0);
        let c = changes(&totals, &later);
        assert_eq!(
            c,
            vec![Change {
                period_start_ms: 1_709_222_400_000,
                indicators: vec![("agent_login_sum_duration".into(), 3600.0, 3690.0)]
            }]
        );
        assert!(changes(&totals, &totals).is_empty());
    }
}
