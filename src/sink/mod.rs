//! Parquet files for one window: a deterministic name per (table, dt, window), written
//! whole or not at all.
//!
//! A window's file is encoded in memory (a window is bounded) and stored with a single
//! put: the local store stages to a temporary name and renames, an S3 PUT is atomic, so a
//! reader listing `<table>/**/*.parquet` never meets half a file.

use crate::store::Location;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};

/// Rows per row group. Windows rarely reach it; when they do, groups of this size keep
/// readers' memory bounded while statistics still prune well.
pub const MAX_ROW_GROUP_ROWS: usize = 1_000_000;

/// ZSTD level 1: measured on talk data it is both faster and smaller than level 3.
const ZSTD_LEVEL: i32 = 1;

/// Compact UTC timestamps make file names sortable and free of `:` (awkward on some
/// filesystems and in URLs).
const FILE_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Which file a window's rows go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowFile {
    pub table: String,
    pub dt: NaiveDate,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl WindowFile {
    /// `<table>/dt=YYYY-MM-DD/<start>_<end>.parquet`, start and end as compact UTC
    /// (`20240301T000000Z`), so a rerun of the window names the same file.
    pub fn relative_path(&self) -> String {
        format!(
            "{}/dt={}/{}_{}.parquet",
            self.table,
            self.dt.format("%Y-%m-%d"),
            self.start.format(FILE_TIME_FORMAT),
            self.end.format(FILE_TIME_FORMAT),
        )
    }
}

/// What one `write_window` stored. `path` is relative to the warehouse location, like the
/// names `list_files` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: String,
    pub rows: usize,
    pub bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot encode Parquet for {path}: {source}")]
    Encode {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("cannot write {path}: {source}")]
    Put {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot delete {path}: {source}")]
    Delete {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot list {path}: {source}")]
    List {
        path: String,
        #[source]
        source: object_store::Error,
    },
}

/// The writer settings every window file uses: ZSTD(1), page-level statistics (readers
/// prune pages by the time columns), row groups bounded by rows.
pub fn writer_properties() -> Result<WriterProperties, parquet::errors::ParquetError> {
    Ok(WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_created_by(concat!("sobot-sync ", env!("CARGO_PKG_VERSION")).to_string())
        .build())
}

/// Encodes one batch as a complete Parquet file in memory.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(writer_properties()?))?;
    writer.write(batch)?;
    writer.into_inner()
}

/// Writes `batch` (already de-duplicated and sorted by the caller) as the window's file,
/// replacing any earlier file of the same window. An empty batch removes the window's
/// file instead (a rerun that finds no rows must not leave old rows behind) and returns
/// `None`.
pub async fn write_window(
    loc: &Location,
    file: &WindowFile,
    batch: &RecordBatch,
) -> Result<Option<Written>, SinkError> {
    let rel = file.relative_path();
    let key = loc.path(&rel);
    let shown = loc.display(&rel);

    if batch.num_rows() == 0 {
        return match loc.store().delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                tracing::debug!(path = %shown, "empty window: removed any earlier file");
                Ok(None)
            }
            Err(source) => Err(SinkError::Delete {
                path: shown,
                source,
            }),
        };
    }

    // Encoding is CPU-bound for tens of milliseconds per window; keep it off the runtime's
    // worker threads so API requests of other pipelines keep flowing.
    let owned = batch.clone();
    let bytes = tokio::task::spawn_blocking(move || encode(&owned))
        .await
        .map_err(|join| SinkError::Encode {
            path: shown.clone(),
            source: parquet::errors::ParquetError::External(Box::new(join)),
        })?
        .map_err(|source| SinkError::Encode {
            path: shown.clone(),
            source,
        })?;
    let size = bytes.len();

    loc.store()
        .put_opts(
            &key,
            PutPayload::from(bytes),
            PutOptions::from(PutMode::Overwrite),
        )
        .await
        .map_err(|source| SinkError::Put {
            path: shown.clone(),
            source,
        })?;
    tracing::debug!(path = %shown, rows = batch.num_rows(), bytes = size, "window written");
    remove_stale_staging(loc, &rel);
    Ok(Some(Written {
        path: rel,
        rows: batch.num_rows(),
        bytes: size,
    }))
}

/// On a local warehouse, removes `<file>#<digits>` staging files that a process killed
/// mid-write left next to this window's file. Readers never see them (they do not end in
/// `.parquet`, and listings skip them), but they would pile up. Best effort: the
/// pipeline lock means no live writer of this window is using them.
fn remove_stale_staging(loc: &Location, rel: &str) {
    let Some(root) = loc.local_dir() else {
        return;
    };
    let full = root.join(rel);
    let (Some(dir), Some(name)) = (full.parent(), full.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let stale_prefix = format!("{name}#");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(other) = file_name.to_str() else {
            continue;
        };
        let is_staging = other
            .strip_prefix(&stale_prefix)
            .is_some_and(|suffix| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()));
        if is_staging {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::debug!(file = other, "removed a stale staging file"),
                Err(e) => {
                    tracing::warn!(file = other, "could not remove a stale staging file: {e}")
                }
            }
        }
    }
}

/// Relative paths (`talks/dt=2024-03-01/…parquet`) of every Parquet file of `table`,
/// sorted. Only complete files are ever visible under these names.
pub async fn list_files(loc: &Location, table: &str) -> Result<Vec<String>, SinkError> {
    let prefix = loc.list_prefix(table);
    let metas: Vec<_> = loc
        .store()
        .list(prefix.as_ref())
        .try_collect()
        .await
        .map_err(|source| SinkError::List {
            path: loc.display(table),
            source,
        })?;
    let mut files: Vec<String> = metas
        .iter()
        .filter(|m| m.location.extension() == Some("parquet"))
        .filter_map(|m| loc.relative(&m.location))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn window_file_name_is_deterministic() {
        let file = WindowFile {
            table: "talks".into(),
            dt: NaiveDate::from_ymd_opt(2024, 3, 1).expect("valid date"),
            start: Utc.with_ymd_and_hms(2024, 2, 29, 16, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2024, 2, 29, 17, 30, 5).unwrap(),
        };
        assert_eq!(
            file.relative_path(),
            "talks/dt=2024-03-01/20240229T160000Z_20240229T173005Z.parquet"
        );
    }

    #[tokio::test]
    async fn a_rewrite_removes_staging_files_left_by_a_killed_writer() {
        use arrow::array::Int64Array;
        use arrow::datatypes::{DataType, Field, Schema};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let loc = Location::parse(&url, &Default::default()).unwrap();
        let file = WindowFile {
            table: "t".into(),
            dt: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
            start: Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2024, 3, 1, 1, 0, 0).unwrap(),
        };
        let folder = dir.path().join("t/dt=2024-03-01");
        std::fs::create_dir_all(&folder).unwrap();
        let name = "20240301T000000Z_20240301T010000Z.parquet";
        std::fs::write(folder.join(format!("{name}#3")), b"half a file").unwrap();
        std::fs::write(folder.join("other.parquet#1"), b"another window's").unwrap();
        std::fs::write(folder.join(format!("{name}#notes")), b"not ours").unwrap();
        let schema =
            std::sync::Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![std::sync::Arc::new(Int64Array::from(vec![1]))])
                .unwrap();
        write_window(&loc, &file, &batch).await.unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                name.to_string(),
                format!("{name}#notes"),
                "other.parquet#1".to_string()
            ]
        );
    }
}
