//! Pending pushes -> Parquet in the warehouse, de-duplicated by key.
//!
//! A flush takes every acknowledged push from the WAL (rotating it), groups them by
//! table and `dt` (the local date, in `SOBOT_TIMEZONE`, of the table's time column, or
//! of the arrival when the record has no usable time), converts each group with the
//! tables' schemas (`convert`, the same column rules as polled tables), drops rows whose
//! key is already in that partition, and writes one new file per group:
//! `<table>/dt=YYYY-MM-DD/push-<first segment>-<last segment>-<uuid>.parquet`.
//! Only when every group is stored are the WAL segments deleted.
//!
//! Exactly once: each partition's keys are known in memory (loaded from its files, key
//! columns only, the first time a flush touches it), so a push already in the warehouse
//! — a Sobot retry, or a WAL replayed after a crash that came between storing a file and
//! deleting its segments — is dropped, and a key appears once per table. The first
//! copy wins (retries are identical). Files get fresh names, so a flush never overwrites
//! rows of another. This assumes one receiver writes a warehouse's push tables.
//! Memory: 16 bytes (a hash) plus set overhead per key of the partitions held; at most
//! [`MAX_PARTITIONS`] are held, the least recently used dropped and reloaded on demand.

use super::PushKind;
use super::wal::{Entry, Wal};
use crate::convert::{BatchBuilder, RowMeta, assemble, record_time};
use crate::record::parse_record;
use crate::schema::TableSchema;
use crate::store::Location;
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMillisecondType};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use futures::TryStreamExt;
use md5::{Digest, Md5};
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Partitions whose keys stay in memory.
pub const MAX_PARTITIONS: usize = 16;

/// What one flush stored.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Flushed {
    pub rows: usize,
    pub duplicates: usize,
    pub files: Vec<String>,
}

pub struct Flusher {
    loc: Location,
    schemas: Arc<HashMap<PushKind, TableSchema>>,
    tz: Tz,
    pii_key: Option<crate::privacy::PiiKey>,
    /// Pushes taken from the WAL and not yet stored (kept across a failed flush).
    pending: Vec<Entry>,
    index: HashMap<(PushKind, NaiveDate), Partition>,
    tick: u64,
}

struct Partition {
    keys: HashSet<u128>,
    used: u64,
}

impl Flusher {
    /// `replayed`: the pushes the WAL held at start.
    pub fn new(
        loc: Location,
        schemas: Arc<HashMap<PushKind, TableSchema>>,
        tz: Tz,
        pii_key: Option<crate::privacy::PiiKey>,
        replayed: Vec<Entry>,
    ) -> Self {
        Self {
            loc,
            schemas,
            tz,
            pii_key,
            pending: replayed,
            index: HashMap::new(),
            tick: 0,
        }
    }

    /// Pushes waiting here (taken from the WAL but not stored).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes the WAL's pushes, stores them, then deletes the segments they came from.
    pub async fn flush(&mut self, wal: &Wal, now: DateTime<Utc>) -> Result<Flushed, String> {
        let (taken, closed) = wal.rotate().await.map_err(|e| e.to_string())?;
        self.pending.extend(taken);
        let flushed = if self.pending.is_empty() {
            Flushed::default()
        } else {
            self.store_pending(now).await?
        };
        self.pending.clear();
        self.pending.shrink_to(1024);
        wal.delete_through(closed).map_err(|e| e.to_string())?;
        Ok(flushed)
    }

    /// Converts, de-duplicates and stores the pending pushes. The CPU work (parsing,
    /// conversion, hashing, sorting, encoding) runs on blocking threads, so a flush of
    /// tens of thousands of pushes never stalls the tasks acknowledging new ones.
    async fn store_pending(&mut self, now: DateTime<Utc>) -> Result<Flushed, String> {
        let pending = std::mem::take(&mut self.pending);
        let (schemas, tz) = (self.schemas.clone(), self.tz);
        let (pending, built) = tokio::task::spawn_blocking(move || {
            let built = build_groups(&pending, &schemas, tz, now);
            (pending, built)
        })
        .await
        .map_err(|e| format!("cannot convert pushes: {e}"))?;
        self.pending = pending;
        let (first_seg, last_seg, groups) = built?;
        let mut out = Flushed::default();
        for ((kind, dt), batch) in groups {
            let Some(schema) = self.schemas.get(&kind).cloned() else {
                continue;
            };
            let table = kind.table();
            self.ensure_loaded(kind, dt, &schema).await?;
            self.tick += 1;
            let mut part = self
                .index
                .remove(&(kind, dt))
                .ok_or_else(|| format!("the keys of {table} dt={dt} are not loaded"))?;
            part.used = self.tick;
            let pii = self.pii_key.clone();
            let shown = self.loc.display(&format!("{table}/dt={dt}"));
            let (part, prepared) = tokio::task::spawn_blocking(move || {
                let prepared = prepare(&schema, &part.keys, batch, pii.as_ref());
                (part, prepared)
            })
            .await
            .map_err(|e| format!("cannot encode rows of {shown}: {e}"))?;
            let mut part = part;
            let prepared = match prepared {
                Ok(p) => p,
                Err(e) => {
                    self.index.insert((kind, dt), part);
                    return Err(format!("{shown}: {e}"));
                }
            };
            out.duplicates += prepared.duplicates;
            let Some(bytes) = prepared.bytes else {
                self.index.insert((kind, dt), part);
                continue;
            };
            let rel = format!(
                "{table}/dt={}/push-{first_seg:020}-{last_seg:020}-{}.parquet",
                dt.format("%Y-%m-%d"),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            let put = self
                .loc
                .store()
                .put(&self.loc.path(&rel), PutPayload::from(bytes))
                .await;
            if let Err(e) = put {
                self.index.insert((kind, dt), part);
                return Err(format!("cannot write {}: {e}", self.loc.display(&rel)));
            }
            part.keys.extend(prepared.fresh);
            self.index.insert((kind, dt), part);
            metrics::counter!(super::server::ROWS_FLUSHED, "table" => table)
                .increment(prepared.rows as u64);
            out.rows += prepared.rows;
            out.files.push(rel);
        }
        Ok(out)
    }

    /// Loads the keys of partition `(kind, dt)` from its files unless held; drops the
    /// least recently used partition beyond [`MAX_PARTITIONS`].
    async fn ensure_loaded(
        &mut self,
        kind: PushKind,
        dt: NaiveDate,
        schema: &TableSchema,
    ) -> Result<(), String> {
        if self.index.contains_key(&(kind, dt)) {
            return Ok(());
        }
        let folder = format!("{}/dt={}", kind.table(), dt.format("%Y-%m-%d"));
        let prefix = self.loc.list_prefix(&format!("{folder}/"));
        let metas: Vec<_> = self
            .loc
            .store()
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| format!("cannot list {}: {e}", self.loc.display(&folder)))?;
        let mut keys = HashSet::new();
        for m in metas
            .iter()
            .filter(|m| m.location.extension() == Some("parquet"))
        {
            let rel = self.loc.relative(&m.location).unwrap_or_default();
            let bytes = crate::sink::fetch(&self.loc, &rel)
                .await
                .map_err(|e| e.to_string())?;
            let schema = schema.clone();
            let shown = self.loc.display(&rel);
            let found = tokio::task::spawn_blocking(move || file_keys(&schema, bytes))
                .await
                .map_err(|e| format!("cannot read {shown}: {e}"))?
                .map_err(|e| format!("cannot read {shown}: {e}"))?;
            keys.extend(found);
        }
        if self.index.len() >= MAX_PARTITIONS
            && let Some(oldest) = self
                .index
                .iter()
                .min_by_key(|(_, p)| p.used)
                .map(|(k, _)| *k)
        {
            self.index.remove(&oldest);
        }
        self.index.insert((kind, dt), Partition { keys, used: 0 });
        Ok(())
    }
}

type Groups = Vec<((PushKind, NaiveDate), RecordBatch)>;

/// The pending pushes as one converted batch per (table, `dt`), rows in arrival order;
/// also the first and last WAL segment they came from.
fn build_groups(
    pending: &[Entry],
    schemas: &HashMap<PushKind, TableSchema>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<(u64, u64, Groups), String> {
    let first_seg = pending.iter().map(|e| e.segment).min().unwrap_or(0);
    let last_seg = pending.iter().map(|e| e.segment).max().unwrap_or(0);
    let mut groups: BTreeMap<(PushKind, NaiveDate), Vec<usize>> = BTreeMap::new();
    for (i, e) in pending.iter().enumerate() {
        let Some(schema) = schemas.get(&e.kind) else {
            continue;
        };
        let record = match parse_record(&e.json) {
            Ok(r) => r,
            Err(why) => {
                // Cannot happen: the receiver logs only JSON objects.
                tracing::error!(push = e.kind.path(), error = %why, "an unreadable record in the write-ahead log was skipped");
                continue;
            }
        };
        let ms = record_time(schema, &record, tz).unwrap_or(e.received_ms);
        let dt = DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or(now)
            .with_timezone(&tz)
            .date_naive();
        groups.entry((e.kind, dt)).or_default().push(i);
    }
    let mut out = Vec::new();
    for ((kind, dt), rows) in groups {
        let Some(schema) = schemas.get(&kind) else {
            continue;
        };
        let mut builder = BatchBuilder::new(schema, tz, rows.len());
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for &i in &rows {
            let e = &pending[i];
            if let Ok(record) = parse_record(&e.json) {
                builder.push(&record);
                lo = lo.min(e.received_ms);
                hi = hi.max(e.received_ms);
            }
        }
        let meta = RowMeta {
            run_id: format!("receive-{first_seg}-{last_seg}"),
            extracted_at_ms: now.timestamp_millis(),
            window_start_ms: lo,
            window_end_ms: hi.saturating_add(1),
        };
        let batch = builder
            .finish(&meta)
            .map_err(|e| format!("cannot build rows of {}: {e}", kind.table()))?;
        out.push(((kind, dt), batch));
    }
    Ok((first_seg, last_seg, out))
}

/// One partition's rows ready to store.
struct Prepared {
    /// The Parquet file; `None` when every row was a duplicate.
    bytes: Option<Vec<u8>>,
    rows: usize,
    duplicates: usize,
    /// Keys of the rows kept, to add to the partition's once the file is stored.
    fresh: HashSet<u128>,
}

/// Drops rows whose key is in `known` or earlier in the batch (first copy wins), then
/// protects `pii` columns, sorts by time and key, and encodes.
fn prepare(
    schema: &TableSchema,
    known: &HashSet<u128>,
    batch: RecordBatch,
    pii: Option<&crate::privacy::PiiKey>,
) -> Result<Prepared, String> {
    let keys = batch_keys(schema, &batch);
    let mut fresh: HashSet<u128> = HashSet::new();
    let mask: BooleanArray = keys
        .iter()
        .map(|k| {
            Some(match k {
                Some(h) => !known.contains(h) && fresh.insert(*h),
                None => true,
            })
        })
        .collect();
    let kept =
        filter_record_batch(&batch, &mask).map_err(|e| format!("cannot filter rows: {e}"))?;
    let duplicates = batch.num_rows() - kept.num_rows();
    if kept.num_rows() == 0 {
        return Ok(Prepared {
            bytes: None,
            rows: 0,
            duplicates,
            fresh,
        });
    }
    let kept = crate::privacy::protect(schema, pii, kept).map_err(|e| e.to_string())?;
    let kept = assemble(schema, &[kept]).map_err(|e| format!("cannot sort rows: {e}"))?;
    let rows = kept.num_rows();
    let bytes = crate::sink::encode(&kept).map_err(|e| format!("cannot encode Parquet: {e}"))?;
    Ok(Prepared {
        bytes: Some(bytes),
        rows,
        duplicates,
        fresh,
    })
}

/// The key hashes of every row of a Parquet file (reading the key columns only).
fn file_keys(schema: &TableSchema, bytes: bytes::Bytes) -> Result<Vec<u128>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn talk(id: &str) -> String {
        serde_json::json!({"companyId": "c", "callID": id, "startTime": 1_709_251_200_000_i64})
            .to_string()
    }

    /// A crash after a file was stored but before its WAL segments were deleted replays
    /// the same pushes: the second flush must store none of them again.
    #[tokio::test]
    async fn a_replayed_wal_already_flushed_adds_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("wh").display());
        let loc = Location::parse(&url, &Default::default()).unwrap();
        let schemas = Arc::new(super::super::tables::load(Path::new("/nonexistent")).unwrap());
        let tz = chrono_tz::Asia::Singapore;
        let entries: Vec<Entry> = ["a", "b", "a", "c"]
            .iter()
            .map(|id| Entry {
                kind: PushKind::Talk,
                received_ms: 1,
                json: talk(id),
                segment: 1,
            })
            .collect();
        let (wal, _) = Wal::open(&dir.path().join("wal")).unwrap();
        let mut f = Flusher::new(loc.clone(), schemas.clone(), tz, None, entries.clone());
        let first = f.flush(&wal, Utc::now()).await.unwrap();
        assert_eq!((first.rows, first.duplicates, first.files.len()), (3, 1, 1));
        // A new process (empty key memory) replays the same records, plus a new one.
        let mut again = entries;
        again.push(Entry {
            json: talk("d"),
            ..again[0].clone()
        });
        let mut f = Flusher::new(loc, schemas, tz, None, again);
        let second = f.flush(&wal, Utc::now()).await.unwrap();
        assert_eq!((second.rows, second.duplicates), (1, 4));
    }
}
