//! A table of a local warehouse read back as its keys, the way a query engine would see
//! it: every `<table>/**/*.parquet` file whole, so a duplicate or a missing row shows.

use super::BenchError;
use arrow::array::{Array, AsArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The keys of one table: each distinct key once, and how many rows repeat one.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    pub keys: BTreeSet<String>,
    pub rows: u64,
    pub duplicates: u64,
}

/// Reads the key column `column` of every file of `table` under `warehouse`; a table
/// without files (not loaded yet) has no keys.
pub fn keys(warehouse: &Path, table: &str, column: &str) -> Result<Keys, BenchError> {
    let mut files = Vec::new();
    parquet_files(&warehouse.join(table), &mut files)?;
    let mut out = Keys::default();
    for file in &files {
        let what = || format!("{}", file.display());
        let f = std::fs::File::open(file).map_err(BenchError::io(format!("open {}", what())))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(|e| BenchError::Setup(format!("{}: not a Parquet file: {e}", what())))?;
        let schema = builder.parquet_schema();
        let leaf = (0..schema.num_columns())
            .find(|&i| schema.column(i).name() == column)
            .ok_or_else(|| BenchError::Setup(format!("{}: no column {column}", what())))?;
        let mask = ProjectionMask::leaves(schema, [leaf]);
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(|e| BenchError::Setup(format!("{}: {e}", what())))?;
        for batch in reader {
            let batch = batch.map_err(|e| BenchError::Setup(format!("{}: {e}", what())))?;
            let col = batch.column(0);
            let strings = col.as_string_opt::<i32>().ok_or_else(|| {
                BenchError::Setup(format!(
                    "{}: column {column} is {}, not a string",
                    what(),
                    col.data_type()
                ))
            })?;
            for i in 0..strings.len() {
                if !strings.is_valid(i) {
                    return Err(BenchError::Setup(format!(
                        "{}: a row without {column}",
                        what()
                    )));
                }
                out.rows += 1;
                if !out.keys.insert(strings.value(i).trim().to_string()) {
                    out.duplicates += 1;
                }
            }
        }
    }
    Ok(out)
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), BenchError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BenchError::io(format!("list {}", dir.display()))(e)),
    };
    for entry in entries {
        let path = entry
            .map_err(BenchError::io(format!("list {}", dir.display())))?
            .path();
        if path.is_dir() {
            parquet_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}
