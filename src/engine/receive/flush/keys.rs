//! A row's key as one md5 hash, computed alike for rows converted now and rows read back
//! from a stored file, so that the two can be compared.

use crate::core::schema::TableSchema;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMillisecondType};
use md5::{Digest, Md5};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The key hashes of every row of a Parquet file (reading the key columns only).
pub(super) fn file_keys(schema: &TableSchema, bytes: bytes::Bytes) -> Result<Vec<u128>, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    let file_schema = builder.schema().clone();
    let mut roots = Vec::new();
    for &k in &schema.key {
        let name = &schema.columns[k].name;
        let i = file_schema
            .index_of(name)
            .map_err(|_| format!("no key column {name}"))?;
        roots.push(i);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let cols: Vec<&dyn Array> = (0..batch.num_columns())
            .map(|i| batch.column(i).as_ref())
            .collect();
        for row in 0..batch.num_rows() {
            if let Some(h) = row_key(&cols, row) {
                out.push(h);
            }
        }
    }
    Ok(out)
}

/// The key hash of every row of a converted batch (`None`: a key part is null).
pub fn batch_keys(schema: &TableSchema, batch: &RecordBatch) -> Vec<Option<u128>> {
    let cols: Vec<&dyn Array> = schema
        .key
        .iter()
        .map(|&k| batch.column(k).as_ref())
        .collect();
    (0..batch.num_rows()).map(|r| row_key(&cols, r)).collect()
}

/// md5 of the key parts' text joined by U+001F: the same for a row built now and the
/// same row read back from a file.
fn row_key(cols: &[&dyn Array], row: usize) -> Option<u128> {
    let mut h = Md5::new();
    for (i, c) in cols.iter().enumerate() {
        if c.is_null(row) {
            return None;
        }
        if i > 0 {
            h.update([0x1f]);
        }
        match c.data_type() {
            DataType::Utf8 => h.update(c.as_string::<i32>().value(row).as_bytes()),
            DataType::Int64 => h.update(c.as_primitive::<Int64Type>().value(row).to_string()),
            DataType::Float64 => h.update(c.as_primitive::<Float64Type>().value(row).to_string()),
            DataType::Boolean => h.update(if c.as_boolean().value(row) { "1" } else { "0" }),
            DataType::Timestamp(_, _) => h.update(
                c.as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .to_string(),
            ),
            _ => return None,
        }
    }
    Some(u128::from_le_bytes(h.finalize().into()))
}
