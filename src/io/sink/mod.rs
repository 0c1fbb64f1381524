//! Parquet files for one window: a deterministic name per (table, dt, window), written
//! whole or not at all.
//!
//! A window's file is encoded in memory (a window is bounded) and stored with a single
//! put: the local store stages to a temporary name and renames, an S3 PUT is atomic, so a
//! reader listing `<table>/**/*.parquet` never meets half a file.

pub mod merge;
pub mod unchanged;

use crate::io::store::Location;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use merge::SpanFile;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};

/// Rows per row group. Windows rarely reach it; when they do, groups of this size keep
/// readers' memory bounded while statistics still prune well.
pub const MAX_ROW_GROUP_ROWS: usize = 1_000_000;

/// ZSTD level 1: measured on talk data it is both faster and smaller than level 3.
const ZSTD_LEVEL: i32 = 1;

/// Compact UTC timestamps make file names sortable and free of `:` (awkward on some
/// filesystems and in URLs).
pub(crate) const FILE_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

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
            "{}/{}_{}.parquet",
            crate::core::layout::partition(&self.table, self.dt),
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
    #[error("cannot read {path} to merge it: {message}")]
    Read { path: String, message: String },
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

/// Writes `batch` (already de-duplicated and sorted by the caller) as the rows of
/// `file`'s span, which may cover one window or a run of consecutive windows, and returns
/// what was stored (`None` when no rows are left in the span's file).
///
/// Rows of the span's windows found in earlier files are replaced: a file with exactly
/// this span is overwritten, files inside the span are deleted, and a file that overlaps
/// the span without lying inside it (a backfill's wider file, when one window of it is
/// rerun) is rewritten together with the new rows, keeping its rows of other windows.
/// The new file is stored before any file it replaces is deleted, so a reader never
/// misses rows; an interrupted write can leave a replaced file behind for a moment, and
/// the next write to the partition removes it (see `merge::superseded`).
pub async fn write_window(
    loc: &Location,
    file: &WindowFile,
    batch: &RecordBatch,
) -> Result<Option<Written>, SinkError> {
    let overlapping = overlapping_files(loc, file).await?;
    if needs_merge(file, &overlapping) {
        return merge_and_put(loc, file, overlapping, batch.clone()).await;
    }
    let encoded = if batch.num_rows() == 0 {
        None
    } else {
        Some(encode_off_thread(loc.display(&file.relative_path()), batch.clone()).await?)
    };
    put_and_replace(loc, file, overlapping, encoded).await
}

/// Like [`write_window`], but the file records its rows' content hash, and with
/// `skip_unchanged` nothing is written (`None`) when the span's own file already holds
/// exactly these rows ([`unchanged::unchanged`]): a re-fetch that found nothing new costs
/// no write (on S3, no PUT).
pub async fn write_window_unless_unchanged(
    loc: &Location,
    file: &WindowFile,
    batch: &RecordBatch,
    skip_unchanged: bool,
) -> Result<Option<Written>, SinkError> {
    let shown = loc.display(&file.relative_path());
    let rows = batch.clone();
    let encode_err = |source| SinkError::Encode {
        path: shown.clone(),
        source,
    };
    let (hash, encoded) = tokio::task::spawn_blocking(move || {
        let mut encoder = FileEncoder::new(rows.schema())?.with_content_hash();
        encoder.write(&rows)?;
        let hash = encoder.content_hash();
        Ok::<_, parquet::errors::ParquetError>((hash, encoder.finish()?))
    })
    .await
    .map_err(|join| encode_err(parquet::errors::ParquetError::External(Box::new(join))))?
    .map_err(encode_err)?;
    if skip_unchanged
        && let Some(hash) = hash
        && unchanged::unchanged(loc, file, &hash).await?
    {
        tracing::debug!(path = %shown, "rows unchanged; nothing written");
        return Ok(None);
    }
    write_encoded(loc, file, encoded).await
}

/// A file already encoded by a [`FileEncoder`].
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub rows: usize,
}

/// Encodes a file batch by batch, so a file of many windows never exists as one Arrow
/// batch in memory: only its encoded, compressed pages do.
pub struct FileEncoder {
    writer: ArrowWriter<Vec<u8>>,
    rows: usize,
    /// Kept only when asked for ([`FileEncoder::with_content_hash`]): hashing costs CPU a
    /// backfill's files, which no lookback compares against, need not pay.
    hasher: Option<unchanged::ContentHasher>,
}

impl FileEncoder {
    pub fn new(schema: SchemaRef) -> Result<Self, parquet::errors::ParquetError> {
        Ok(Self {
            writer: ArrowWriter::try_new(Vec::new(), schema, Some(writer_properties()?))?,
            rows: 0,
            hasher: None,
        })
    }

    /// Also hashes the rows written, and records the hash in the file's key-value
    /// metadata, so a later run can tell its rows unchanged ([`unchanged::unchanged`]).
    pub fn with_content_hash(mut self) -> Self {
        self.hasher = Some(unchanged::ContentHasher::default());
        self
    }

    /// Appends rows; batches must come in the file's sort order.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), parquet::errors::ParquetError> {
        if let Some(h) = self.hasher.as_mut() {
            h.update(batch)
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        }
        self.rows += batch.num_rows();
        self.writer.write(batch)
    }

    /// The content hash of the rows written so far, when the encoder keeps one.
    pub fn content_hash(&self) -> Option<String> {
        self.hasher.as_ref().map(|h| h.hex())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Memory held by the pages encoded so far.
    pub fn buffered_bytes(&self) -> usize {
        self.writer.memory_size()
    }

    pub fn finish(mut self) -> Result<Encoded, parquet::errors::ParquetError> {
        let rows = self.rows;
        if let Some(hash) = self.content_hash() {
            self.writer
                .append_key_value_metadata(parquet::file::metadata::KeyValue::new(
                    unchanged::CONTENT_HASH_KEY.to_string(),
                    hash,
                ));
        }
        Ok(Encoded {
            bytes: self.writer.into_inner()?,
            rows,
        })
    }
}

/// Stores an encoded file as the rows of `file`'s span, with the same replacement rules
/// as [`write_window`]. `encoded` with no rows removes the span's rows.
pub async fn write_encoded(
    loc: &Location,
    file: &WindowFile,
    encoded: Encoded,
) -> Result<Option<Written>, SinkError> {
    let overlapping = overlapping_files(loc, file).await?;
    if needs_merge(file, &overlapping) {
        // Rare: a wider file holds some of this span (a rerun inside a backfill's file).
        // Merging needs the rows themselves, so read them back.
        let rel = file.relative_path();
        let read_err = |message: String| SinkError::Read {
            path: loc.display(&rel),
            message,
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(encoded.bytes))
            .and_then(|b| b.build())
            .map_err(|e| read_err(e.to_string()))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read_err(e.to_string()))?;
        let batch = arrow::compute::concat_batches(&schema, &batches)
            .map_err(|e| read_err(e.to_string()))?;
        return merge_and_put(loc, file, overlapping, batch).await;
    }
    let encoded = (encoded.rows > 0).then_some(encoded);
    put_and_replace(loc, file, overlapping, encoded).await
}

/// The partition's files overlapping `file`'s span, after removing files an interrupted
/// write left inside wider ones.
async fn overlapping_files(loc: &Location, file: &WindowFile) -> Result<Vec<SpanFile>, SinkError> {
    let mut files = partition_files(loc, &file.table, file.dt).await?;
    let stale: Vec<SpanFile> = merge::superseded(&files).into_iter().cloned().collect();
    for f in &stale {
        tracing::info!(path = %loc.display(&f.rel), "removing a file an interrupted write left inside a wider one");
        delete(loc, &f.rel).await?;
    }
    files.retain(|f| !stale.contains(f) && f.overlaps(file.start, file.end));
    Ok(files)
}

fn needs_merge(file: &WindowFile, overlapping: &[SpanFile]) -> bool {
    overlapping.iter().any(|f| !f.within(file.start, file.end))
}

/// The common case: nothing outside the span to keep. Stores the new file (if it has
/// rows) under the span's name, then deletes the files it replaces.
async fn put_and_replace(
    loc: &Location,
    file: &WindowFile,
    overlapping: Vec<SpanFile>,
    encoded: Option<Encoded>,
) -> Result<Option<Written>, SinkError> {
    let rel = file.relative_path();
    let written = match encoded {
        Some(e) => Some(put_bytes(loc, &rel, e).await?),
        None => None,
    };
    replace(loc, &rel, written.as_ref(), overlapping).await?;
    Ok(written)
}

/// Deletes the files a write replaced: every overlapping file and the span's own name,
/// except the file just written.
async fn replace(
    loc: &Location,
    own: &str,
    written: Option<&Written>,
    overlapping: Vec<SpanFile>,
) -> Result<(), SinkError> {
    // The span's own name may not be among the listed files (it never existed, or an
    // earlier empty run removed it); deleting a missing file is fine.
    let mut replaced: Vec<String> = overlapping.into_iter().map(|f| f.rel).collect();
    replaced.push(own.to_string());
    replaced.sort();
    replaced.dedup();
    for old in replaced {
        if written.is_none_or(|w| w.path != old) {
            delete(loc, &old).await?;
        }
    }
    Ok(())
}

/// Rewrites the wider files overlapping `file`'s span together with `batch`: their rows
/// outside the span are kept around the new rows, all in one file covering the union.
async fn merge_and_put(
    loc: &Location,
    file: &WindowFile,
    overlapping: Vec<SpanFile>,
    batch: RecordBatch,
) -> Result<Option<Written>, SinkError> {
    let mut target = file.clone();
    let mut before = Vec::new();
    let mut after = Vec::new();
    for f in overlapping
        .iter()
        .filter(|f| !f.within(file.start, file.end))
    {
        target.start = target.start.min(f.start);
        target.end = target.end.max(f.end);
        for rows in merge::read_file(loc, &f.rel, &batch.schema()).await? {
            let (b, a) =
                merge::outside(&rows, file.start, file.end).map_err(|message| SinkError::Read {
                    path: loc.display(&f.rel),
                    message,
                })?;
            before.push(b);
            after.push(a);
        }
    }
    let rel = target.relative_path();
    let parts: Vec<&RecordBatch> = before.iter().chain([&batch]).chain(after.iter()).collect();
    let combined =
        arrow::compute::concat_batches(&batch.schema(), parts).map_err(|e| SinkError::Encode {
            path: loc.display(&rel),
            source: e.into(),
        })?;
    let written = if combined.num_rows() == 0 {
        None
    } else {
        Some(put_file(loc, &rel, combined).await?)
    };
    replace(loc, &file.relative_path(), written.as_ref(), overlapping).await?;
    Ok(written)
}

/// The span files of one `dt` partition of a table.
async fn partition_files(
    loc: &Location,
    table: &str,
    dt: NaiveDate,
) -> Result<Vec<SpanFile>, SinkError> {
    let folder = crate::core::layout::partition(table, dt);
    let metas: Vec<_> = loc
        .store()
        .list(loc.list_prefix(&folder).as_ref())
        .try_collect()
        .await
        .map_err(|source| SinkError::List {
            path: loc.display(&folder),
            source,
        })?;
    let mut files: Vec<SpanFile> = metas
        .iter()
        .filter_map(|m| {
            let rel = loc.relative(&m.location)?;
            let (start, end) = merge::parse_span(m.location.filename()?)?;
            Some(SpanFile { rel, start, end })
        })
        .collect();
    files.sort_by_key(|f| (f.start, f.end));
    Ok(files)
}

/// The span files of one `dt` partition of a table that overlap `[start, end)`, each with
/// a tag that changes when the file is replaced (its size and time), so that a reader
/// may keep what it decoded from a file while the tag stays the same.
pub async fn spans_overlapping(
    loc: &Location,
    table: &str,
    dt: NaiveDate,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<(SpanFile, String)>, SinkError> {
    let folder = crate::core::layout::partition(table, dt);
    let metas: Vec<_> = loc
        .store()
        .list(loc.list_prefix(&folder).as_ref())
        .try_collect()
        .await
        .map_err(|source| SinkError::List {
            path: loc.display(&folder),
            source,
        })?;
    let mut files: Vec<(SpanFile, String)> = metas
        .iter()
        .filter_map(|m| {
            let rel = loc.relative(&m.location)?;
            let (start, end) = merge::parse_span(m.location.filename()?)?;
            let tag = format!(
                "{}:{}:{}",
                m.size,
                m.last_modified.timestamp_millis(),
                m.e_tag.as_deref().unwrap_or_default()
            );
            Some((SpanFile { rel, start, end }, tag))
        })
        .filter(|(f, _)| f.overlaps(start, end))
        .collect();
    files.sort_by_key(|(f, _)| (f.start, f.end));
    let spans: Vec<SpanFile> = files.iter().map(|(f, _)| f.clone()).collect();
    // A file an interrupted write left inside a wider one holds rows the wider one has
    // too; a reader takes the wider one (the next write removes the stale one).
    let stale: Vec<SpanFile> = merge::superseded(&spans).into_iter().cloned().collect();
    files.retain(|(f, _)| !stale.contains(f));
    Ok(files)
}

async fn delete(loc: &Location, rel: &str) -> Result<(), SinkError> {
    match loc.store().delete(&loc.path(rel)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {
            tracing::debug!(path = %loc.display(rel), "removed");
            Ok(())
        }
        Err(source) => Err(SinkError::Delete {
            path: loc.display(rel),
            source,
        }),
    }
}

/// Encodes and stores one file with a single put.
async fn put_file(loc: &Location, rel: &str, batch: RecordBatch) -> Result<Written, SinkError> {
    let encoded = encode_off_thread(loc.display(rel), batch).await?;
    put_bytes(loc, rel, encoded).await
}

/// Encodes a batch on the blocking pool: encoding is CPU-bound for tens of milliseconds
/// per window, and on the runtime's worker threads it would stall API requests of other
/// pipelines. `shown` names the file in errors.
async fn encode_off_thread(shown: String, batch: RecordBatch) -> Result<Encoded, SinkError> {
    let rows = batch.num_rows();
    let bytes = tokio::task::spawn_blocking(move || encode(&batch))
        .await
        .map_err(|join| SinkError::Encode {
            path: shown.clone(),
            source: parquet::errors::ParquetError::External(Box::new(join)),
        })?
        .map_err(|source| SinkError::Encode {
            path: shown.clone(),
            source,
        })?;
    Ok(Encoded { bytes, rows })
}

/// The bytes of a stored file; errors name the file.
pub async fn fetch(loc: &Location, rel: &str) -> Result<bytes::Bytes, SinkError> {
    let read_err = |message: String| SinkError::Read {
        path: loc.display(rel),
        message,
    };
    loc.store()
        .get(&loc.path(rel))
        .await
        .map_err(|e| read_err(e.to_string()))?
        .bytes()
        .await
        .map_err(|e| read_err(e.to_string()))
}

/// Stores encoded bytes with a single put: whole or not at all.
async fn put_bytes(loc: &Location, rel: &str, encoded: Encoded) -> Result<Written, SinkError> {
    let key = loc.path(rel);
    let shown = loc.display(rel);
    let size = encoded.bytes.len();
    loc.store()
        .put_opts(
            &key,
            PutPayload::from(encoded.bytes),
            PutOptions::from(PutMode::Overwrite),
        )
        .await
        .map_err(|source| SinkError::Put {
            path: shown.clone(),
            source,
        })?;
    tracing::debug!(path = %shown, rows = encoded.rows, bytes = size, "file written");
    remove_stale_staging(loc, rel);
    Ok(Written {
        path: rel.to_string(),
        rows: encoded.rows,
        bytes: size,
    })
}

/// On a local warehouse, removes `<file>#<digits>` staging files that a process killed
/// mid-write left next to this window's file. Readers never see them (they do not end in
/// `.parquet`, and listings skip them), but they would pile up. Best effort: the
/// pipeline lock means no live writer of this window is using them.
fn remove_stale_staging(loc: &Location, rel: &str) {
    let Some(full) = loc.local_path(rel) else {
        return;
    };
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
