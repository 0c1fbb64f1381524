//! Whether a window's rows are already stored: a content hash of the rows, kept in the
//! Parquet file's key-value metadata, lets a lookback window that found nothing new skip
//! its write (on S3, its PUT).
//!
//! The hash lives in the file rather than in the state: it then always describes exactly
//! the bytes stored under the window's name, even after a crash between a write and its
//! commit, a compaction or a manual repair, and the state does not grow a hash per
//! window. Checking it costs a listing and a footer read, which a lookback window's
//! rewrite paid for anyway (the listing) and which is far cheaper than the PUT it saves.

use super::{SinkError, WindowFile, partition_files};
use crate::io::store::Location;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use sha2::{Digest, Sha256};

/// The key of the content hash in a file's Parquet key-value metadata.
pub const CONTENT_HASH_KEY: &str = "sobot_sync.content_hash";

/// Columns every run fills with its own values; two runs that fetched the same data differ
/// only there, so the hash leaves them out.
const PER_RUN_COLUMNS: &[&str] = &["_extracted_at", "_run_id"];

/// A SHA-256 over a file's rows in order, the per-run columns left out. Column names and
/// types are part of it, so a schema change never counts as unchanged.
#[derive(Clone, Default)]
pub struct ContentHasher {
    sha: Sha256,
    rows: u64,
}

impl ContentHasher {
    /// Adds a batch's rows. Arrow's row format encodes each value unambiguously (nulls,
    /// lengths), so equal hashes mean equal rows.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), arrow::error::ArrowError> {
        let schema = batch.schema();
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            if PER_RUN_COLUMNS.contains(&f.name().as_str()) {
                continue;
            }
            self.sha.update(f.name().as_bytes());
            self.sha.update([0]);
            self.sha.update(f.data_type().to_string().as_bytes());
            self.sha.update([0]);
            fields.push(SortField::new(f.data_type().clone()));
            columns.push(batch.column(i).clone());
        }
        let rows = RowConverter::new(fields)?.convert_columns(&columns)?;
        for row in rows.iter() {
            let bytes = row.as_ref();
            self.sha.update((bytes.len() as u64).to_le_bytes());
            self.sha.update(bytes);
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// The hash as lowercase hex, prefixed with the row count.
    pub fn hex(&self) -> String {
        let digest = self.sha.clone().finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{hex}", self.rows)
    }
}

/// True when `file`'s span is stored as exactly one file of that very span (not inside a
/// wider backfill or compacted file) whose recorded content hash is `hash`. Anything else
/// (no file, several, a wider one, an older file without a hash, an unreadable footer)
/// is "changed", and the caller writes as before.
pub async fn unchanged(loc: &Location, file: &WindowFile, hash: &str) -> Result<bool, SinkError> {
    let files = partition_files(loc, &file.table, file.dt).await?;
    let mut overlapping = files.iter().filter(|f| f.overlaps(file.start, file.end));
    let (Some(only), None) = (overlapping.next(), overlapping.next()) else {
        return Ok(false);
    };
    if only.start != file.start || only.end != file.end {
        return Ok(false);
    }
    let stored = match stored_hash(loc, &only.rel).await {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(path = %loc.display(&only.rel), "cannot read the stored file's footer; rewriting it: {e}");
            None
        }
    };
    Ok(stored.as_deref() == Some(hash))
}

/// The footer bytes read at first: a window file's footer is a few KiB, so one ranged GET
/// almost always holds it.
const FOOTER_GUESS: u64 = 64 << 10;

/// The content hash recorded in a stored file's footer, read with ranged GETs of its end
/// (bounded ranges: some S3 servers mishandle a suffix range longer than the object).
async fn stored_hash(loc: &Location, rel: &str) -> Result<Option<String>, String> {
    let path = loc.path(rel);
    let size = loc
        .store()
        .head(&path)
        .await
        .map_err(|e| e.to_string())?
        .size;
    let tail = last_bytes(loc, rel, size, FOOTER_GUESS).await?;
    let n = tail.len();
    let last: &[u8; 8] = tail
        .get(n.saturating_sub(8)..)
        .and_then(|s| s.try_into().ok())
        .ok_or("shorter than a Parquet footer")?;
    let meta_len = FooterTail::try_new(last)
        .map_err(|e| e.to_string())?
        .metadata_length();
    let tail = if meta_len + 8 > n {
        last_bytes(loc, rel, size, (meta_len + 8) as u64).await?
    } else {
        tail
    };
    let n = tail.len();
    let footer = tail
        .get(n.saturating_sub(meta_len + 8)..n - 8)
        .filter(|f| f.len() == meta_len)
        .ok_or("footer longer than the file")?;
    let meta = ParquetMetaDataReader::decode_metadata(footer).map_err(|e| e.to_string())?;
    Ok(meta
        .file_metadata()
        .key_value_metadata()
        .and_then(|kvs| kvs.iter().find(|kv| kv.key == CONTENT_HASH_KEY))
        .and_then(|kv| kv.value.clone()))
}

/// The last `n` bytes (or all) of a stored file of `size` bytes.
async fn last_bytes(loc: &Location, rel: &str, size: u64, n: u64) -> Result<bytes::Bytes, String> {
    let opts = GetOptions {
        range: Some(GetRange::Bounded(size.saturating_sub(n)..size)),
        ..Default::default()
    };
    loc.store()
        .get_opts(&loc.path(rel), opts)
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(values: &[i64], run_id: &str) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("_run_id", DataType::Utf8, false),
        ]));
        let ids: Vec<&str> = values.iter().map(|_| run_id).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(values.to_vec())),
            Arc::new(StringArray::from(ids)),
        ];
        RecordBatch::try_new(schema, columns).expect("a valid batch")
    }

    fn hash(b: &RecordBatch) -> String {
        let mut h = ContentHasher::default();
        h.update(b).expect("hashable");
        h.hex()
    }

    #[test]
    fn the_same_rows_of_another_run_hash_alike_and_other_rows_do_not() {
        assert_eq!(
            hash(&batch(&[1, 2], "run-a")),
            hash(&batch(&[1, 2], "run-b"))
        );
        assert_ne!(
            hash(&batch(&[1, 2], "run-a")),
            hash(&batch(&[1, 3], "run-a"))
        );
        assert_ne!(
            hash(&batch(&[1, 2], "run-a")),
            hash(&batch(&[1, 2, 3], "run-a"))
        );
    }

    #[tokio::test]
    async fn a_file_written_with_its_hash_is_recognised_and_a_changed_one_is_not() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("file://{}", dir.path().display());
        let loc = Location::parse(&url, &Default::default()).expect("a local location");
        let day = chrono::NaiveDate::from_ymd_opt(2024, 3, 1).expect("a date");
        let start = day.and_hms_opt(0, 0, 0).expect("a time").and_utc();
        let file = WindowFile {
            table: "t".into(),
            dt: day,
            start,
            end: start + chrono::Duration::hours(1),
        };
        let stored = batch(&[1, 2], "run-a");
        let mut enc = super::super::FileEncoder::new(stored.schema())
            .expect("an encoder")
            .with_content_hash();
        enc.write(&stored).expect("encoded");
        let encoded = enc.finish().expect("finished");
        super::super::write_encoded(&loc, &file, encoded)
            .await
            .expect("written");
        let same = hash(&batch(&[1, 2], "run-b"));
        assert!(unchanged(&loc, &file, &same).await.expect("checked"));
        let other = hash(&batch(&[1], "run-b"));
        assert!(!unchanged(&loc, &file, &other).await.expect("checked"));
    }
}
