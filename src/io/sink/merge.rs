//! Files whose spans overlap the one being written: how their rows are kept around it.
//!
//! A table's files in one `dt` partition never overlap. A backfill writes one file for a
//! run of consecutive windows, and a later rerun of one window inside it (a lookback, a
//! gap fill) must replace that window's rows without touching the others. So the writer
//! reads every overlapping file, keeps its rows whose `_window_start` lies outside the
//! span being written, and stores the union as one file; see `write_window`.

use super::{FILE_TIME_FORMAT, SinkError};
use crate::io::store::Location;
use arrow::array::{Array, ArrayRef, BooleanArray, TimestampMillisecondArray, new_null_array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The column every row carries with the start of the window it was extracted in.
pub const WINDOW_START_COLUMN: &str = "_window_start";

/// A Parquet file of a partition and the span its name says it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanFile {
    pub rel: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl SpanFile {
    pub fn overlaps(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.start < end && self.end > start
    }

    /// Inside `[start, end)`, the same span included.
    pub fn within(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.start >= start && self.end <= end
    }
}

/// Reads `<start>_<end>.parquet` back into its span; `None` for any other name (files
/// this tool did not write are left alone).
pub fn parse_span(file_name: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let stem = file_name.strip_suffix(".parquet")?;
    let (a, b) = stem.split_once('_')?;
    let parse = |s: &str| {
        NaiveDateTime::parse_from_str(s, FILE_TIME_FORMAT)
            .ok()
            .map(|t| t.and_utc())
    };
    let (start, end) = (parse(a)?, parse(b)?);
    (start < end).then_some((start, end))
}

/// Files strictly inside another file's span. Only an interrupted write leaves such a
/// file behind: a wider file is stored first and the files it replaces are deleted
/// after, and nothing is ever written inside an existing wider file (it is rewritten
/// instead). So the inner file is the stale one.
pub fn superseded(files: &[SpanFile]) -> Vec<&SpanFile> {
    files
        .iter()
        .filter(|f| {
            files.iter().any(|g| {
                g.rel != f.rel && f.within(g.start, g.end) && (g.start, g.end) != (f.start, f.end)
            })
        })
        .collect()
}

/// Reads a whole file, with its columns arranged as `schema` says: a column the file
/// lacks (the schema gained one since) is null, a column the schema dropped is left out.
pub async fn read_file(
    loc: &Location,
    rel: &str,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, SinkError> {
    let shown = loc.display(rel);
    let read_err = |message: String| SinkError::Read {
        path: shown.clone(),
        message,
    };
    let bytes = super::fetch(loc, rel).await?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| read_err(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| read_err(e.to_string()))?;
        out.push(project(&batch, schema).map_err(read_err)?);
    }
    Ok(out)
}

fn project(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(col) if col.data_type() == field.data_type() => Ok(col.clone()),
            Some(col) => Err(format!(
                "column {} is {} in the file but {} in the schema",
                field.name(),
                col.data_type(),
                field.data_type()
            )),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// Splits a file's rows into those of windows before `start` and those from `end` on;
/// rows of windows inside `[start, end)` are dropped (the new rows replace them).
pub fn outside(
    batch: &RecordBatch,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(RecordBatch, RecordBatch), String> {
    let col = batch
        .column_by_name(WINDOW_START_COLUMN)
        .ok_or_else(|| format!("no {WINDOW_START_COLUMN} column"))?;
    let ws = col
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(|| {
            format!(
                "{WINDOW_START_COLUMN} is {}, not a timestamp",
                col.data_type()
            )
        })?;
    let (s, e) = (start.timestamp_millis(), end.timestamp_millis());
    let mask = |keep: &dyn Fn(i64) -> bool| -> BooleanArray {
        ws.iter()
            .map(|v| Some(v.is_some_and(keep)))
            .collect::<BooleanArray>()
    };
    let before = filter_record_batch(batch, &mask(&|v| v < s)).map_err(|e| e.to_string())?;
    let after = filter_record_batch(batch, &mask(&|v| v >= e)).map_err(|e| e.to_string())?;
    Ok((before, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(h.into())
    }

    fn f(a: u32, b: u32) -> SpanFile {
        SpanFile {
            rel: format!("{a}-{b}"),
            start: t(a),
            end: t(b),
        }
    }

    #[test]
    fn span_names_round_trip_and_foreign_names_are_ignored() {
        assert_eq!(
            parse_span("20240301T000000Z_20240301T010000Z.parquet"),
            Some((t(0), t(1)))
        );
        assert_eq!(parse_span("part-0001.parquet"), None);
        assert_eq!(
            parse_span("20240301T010000Z_20240301T000000Z.parquet"),
            None
        );
        assert_eq!(
            parse_span("20240301T000000Z_20240301T010000Z.parquet#3"),
            None
        );
    }

    #[test]
    fn only_files_strictly_inside_another_are_superseded() {
        let files = vec![f(0, 24), f(3, 4), f(23, 24)];
        let stale: Vec<&str> = superseded(&files).iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(stale, vec!["3-4", "23-24"]);
        assert!(superseded(&[f(0, 12), f(12, 24)]).is_empty());
    }

    #[test]
    fn rows_outside_the_span_are_kept_in_order() {
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        use std::sync::Arc;
        let schema = Arc::new(Schema::new(vec![Field::new(
            WINDOW_START_COLUMN,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        )]));
        let ws: Vec<i64> = (0..6).map(|h| t(h).timestamp_millis()).collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(
                TimestampMillisecondArray::from(ws).with_timezone("UTC"),
            )],
        )
        .unwrap();
        let (before, after) = outside(&batch, t(2), t(4)).unwrap();
        assert_eq!((before.num_rows(), after.num_rows()), (2, 2));
    }
}
