//! One Parquet file decoded whole, for every suite that reads the warehouse back. A file
//! that does not parse to its end fails the test: readers must only ever see whole files.

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// All rows of the file in `bytes` as one batch; `shown` names the file in failures.
pub fn decode(bytes: bytes::Bytes, shown: &str) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap_or_else(|e| panic!("{shown}: not a whole Parquet file: {e}"))
        .build()
        .unwrap_or_else(|e| panic!("{shown}: reader: {e}"));
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{shown}: unreadable data: {e}"));
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| panic!("{shown} holds no rows"));
    arrow::compute::concat_batches(&schema, &batches)
        .unwrap_or_else(|e| panic!("{shown}: batches of one file differ: {e}"))
}
