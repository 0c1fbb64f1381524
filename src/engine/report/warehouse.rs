//! Reading tables back from the warehouse, a few columns at a time: the old totals of a
//! report window before it is replaced (restatement log) and the `reconcile` command.

use crate::io::store::Location;
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use object_store::ObjectStoreExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The columns `names` of one file (those the file has; the others are left out), or
/// `None` when the file does not exist. Errors name the file.
pub async fn read_columns(
    loc: &Location,
    rel: &str,
    names: &[&str],
) -> Result<Option<Vec<RecordBatch>>, String> {
    let shown = loc.display(rel);
    let bytes = match loc.store().get(&loc.path(rel)).await {
        Ok(r) => r.bytes().await.map_err(|e| format!("{shown}: {e}"))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(format!("{shown}: {e}")),
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| format!("{shown}: {e}"))?;
    let indices: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| names.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| format!("{shown}: {e}"))?;
    let mut out = Vec::new();
    for batch in reader {
        out.push(batch.map_err(|e| format!("{shown}: {e}"))?);
    }
    Ok(Some(out))
}

/// The `dt` partition of a table file's relative path (`talks/dt=2024-03-01/x.parquet`).
pub fn dt_of(rel: &str) -> Option<NaiveDate> {
    rel.split('/')
        .find(|seg| seg.starts_with("dt="))
        .and_then(crate::core::layout::parse_dt_folder)
}

/// The columns `names` of every file of `table` whose `dt` passes `keep_dt`.
pub async fn read_table(
    loc: &Location,
    table: &str,
    names: &[&str],
    keep_dt: impl Fn(NaiveDate) -> bool,
) -> Result<Vec<RecordBatch>, String> {
    let files = crate::io::sink::list_files(loc, table)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for rel in files {
        if !dt_of(&rel).is_some_and(&keep_dt) {
            continue;
        }
        if let Some(batches) = read_columns(loc, &rel, names).await? {
            out.extend(batches);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dt_is_read_from_the_partition_folder() {
        assert_eq!(
            dt_of("talks/dt=2024-03-01/20240229T160000Z_20240301T160000Z.parquet"),
            NaiveDate::from_ymd_opt(2024, 3, 1)
        );
        assert_eq!(dt_of("talks/x.parquet"), None);
        assert_eq!(dt_of("talks/dt=soon/x.parquet"), None);
    }
}
