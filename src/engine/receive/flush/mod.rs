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
//! Exactly once: before a partition's rows are written, each row's key (an md5 of its key
//! columns) is looked up in that partition's key index (`keyindex`), so a push already in
//! the warehouse — a Sobot retry, or a WAL replayed after a crash that came between
//! storing a file and deleting its segments — is dropped, and a key appears once per
//! table. The first copy wins (retries are identical). Files get fresh names, so a flush
//! never overwrites rows of another. This assumes one receiver writes a warehouse's push
//! tables.
//!
//! Memory: the key index keeps a partition's keys on local disk
//! (`<SOBOT_SYNC_RECEIVE_WAL>/keys/<table>/dt=YYYY-MM-DD/`) as sorted runs, holding in
//! memory one Bloom filter per run (about 1.25 bytes per key) and the keys of files
//! stored since its last spill (a partition spills after the flush that brings it to
//! [`keyindex::SPILL_KEYS`], and the largest spill while all hold more than
//! [`MAX_UNSPILLED`]), so key memory no longer grows with what was received. At most [`MAX_PARTITIONS`] partitions are open; the least
//! recently used, and any unused for [`IDLE`], are spilled and closed. The warehouse
//! stays the source of truth: when a partition is opened, the keys of every file its
//! manifest does not cover (a crash before the spill, a first start on an existing
//! warehouse, a lost local disk) are read from the file, and an index that names a file
//! no longer there, or that does not read back, is rebuilt from the partition's files.

use super::keyindex::{
    PartitionKeys, {self},
};
use super::wal::{Entry, Wal};
use crate::core::convert::{BatchBuilder, RowMeta, assemble, record_time};
use crate::core::push::PushKind;
use crate::core::record::parse_record;
use crate::core::schema::TableSchema;
use crate::io::store::Location;
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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Partitions whose key index is open (filters in memory).
pub const MAX_PARTITIONS: usize = 16;
/// An open partition unused this long is spilled and closed (its filters freed).
pub const IDLE: Duration = Duration::from_secs(600);
/// Keys held in memory (not yet spilled) over every open partition; beyond it the
/// partitions holding most are spilled.
pub const MAX_UNSPILLED: usize = 4 * keyindex::SPILL_KEYS;

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
    pii_key: Option<crate::core::privacy::PiiKey>,
    /// Pushes taken from the WAL and not yet stored (kept across a failed flush).
    pending: Vec<Entry>,
    /// Root of the partitions' key indexes.
    keys_dir: PathBuf,
    index: HashMap<(PushKind, NaiveDate), Partition>,
    tick: u64,
}

struct Partition {
    keys: PartitionKeys,
    /// Flush tick of the last use (least recently used is closed first).
    used: u64,
    touched: Instant,
}

/// Runs `f` on a partition's index on a blocking thread (its disk reads and writes must
/// not stall the tasks acknowledging pushes), handing the index back.
async fn on_index<T: Send + 'static>(
    keys: PartitionKeys,
    f: impl FnOnce(&mut PartitionKeys) -> T + Send + 'static,
) -> Result<(PartitionKeys, T), String> {
    tokio::task::spawn_blocking(move || {
        let mut keys = keys;
        let out = f(&mut keys);
        (keys, out)
    })
    .await
    .map_err(|e| format!("the key index task failed: {e}"))
}

impl Flusher {
    /// `keys_dir`: where the partitions' key indexes live (local disk);
    /// `replayed`: the pushes the WAL held at start.
    pub fn new(
        loc: Location,
        schemas: Arc<HashMap<PushKind, TableSchema>>,
        tz: Tz,
        pii_key: Option<crate::core::privacy::PiiKey>,
        keys_dir: &Path,
        replayed: Vec<Entry>,
    ) -> Self {
        Self {
            loc,
            schemas,
            tz,
            pii_key,
            pending: replayed,
            keys_dir: keys_dir.to_path_buf(),
            index: HashMap::new(),
            tick: 0,
        }
    }

    /// Spills and closes every open key index (at shutdown, so the next start reads no
    /// warehouse file again).
    pub async fn close_all(&mut self) {
        let open: Vec<_> = self.index.keys().copied().collect();
        for at in open {
            self.close(at).await;
        }
    }

    /// Partitions whose key index is open now.
    pub fn open_partitions(&self) -> usize {
        self.index.len()
    }

    /// Bytes the open key indexes hold in memory (filters, fences, unspilled keys).
    pub fn key_memory(&self) -> usize {
        self.index.values().map(|p| p.keys.memory()).sum()
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
            self.ensure_open(kind, dt, &schema).await?;
            self.tick += 1;
            let mut part = self
                .index
                .remove(&(kind, dt))
                .ok_or_else(|| format!("the key index of {table} dt={dt} is not open"))?;
            part.used = self.tick;
            part.touched = Instant::now();
            let pii = self.pii_key.clone();
            let shown = self.loc.display(&crate::core::layout::partition(table, dt));
            let (keys, prepared) =
                on_index(part.keys, move |k| prepare(&schema, k, batch, pii.as_ref())).await?;
            part.keys = keys;
            let prepared = match prepared {
                Ok(p) => p,
                // The partition stays closed: the next flush reopens its index from
                // disk (rebuilding it if it does not read back).
                Err(e) => return Err(format!("{shown}: {e}")),
            };
            out.duplicates += prepared.duplicates;
            let Some(bytes) = prepared.bytes else {
                self.index.insert((kind, dt), part);
                continue;
            };
            let name = format!(
                "push-{first_seg:020}-{last_seg:020}-{}.parquet",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            let rel = format!("{}/{name}", crate::core::layout::partition(table, dt));
            let put = self
                .loc
                .store()
                .put(&self.loc.path(&rel), PutPayload::from(bytes))
                .await;
            if let Err(e) = put {
                self.index.insert((kind, dt), part);
                return Err(format!("cannot write {}: {e}", self.loc.display(&rel)));
            }
            part.keys.add_file(name, prepared.fresh);
            let (keys, spilled) = on_index(part.keys, |k| k.spill_if_full()).await?;
            part.keys = keys;
            match spilled {
                Ok(()) => {
                    self.index.insert((kind, dt), part);
                }
                // The file is stored; its keys are not durable in the index, so it is
                // closed: reopening reads the keys of the file it does not cover.
                Err(e) => {
                    tracing::warn!(partition = %shown, error = %e, "cannot spill keys; the partition's index is reopened on its next use")
                }
            }
            metrics::counter!(super::server::ROWS_FLUSHED, "table" => table)
                .increment(prepared.rows as u64);
            out.rows += prepared.rows;
            out.files.push(rel);
        }
        self.close_idle().await;
        Ok(out)
    }

    /// Opens the key index of partition `(kind, dt)` unless open, closing the least
    /// recently used beyond [`MAX_PARTITIONS`]. The warehouse decides: the keys of every
    /// file the index does not cover are read from the file, and an index that names a
    /// file no longer there, or does not read back, is rebuilt from every file.
    async fn ensure_open(
        &mut self,
        kind: PushKind,
        dt: NaiveDate,
        schema: &TableSchema,
    ) -> Result<(), String> {
        if self.index.contains_key(&(kind, dt)) {
            return Ok(());
        }
        while self.index.len() >= MAX_PARTITIONS {
            let Some(oldest) = self
                .index
                .iter()
                .min_by_key(|(_, p)| p.used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.close(oldest).await;
        }
        let folder = crate::core::layout::partition(kind.table(), dt);
        let prefix = self.loc.list_prefix(&format!("{folder}/"));
        let metas: Vec<_> = self
            .loc
            .store()
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| format!("cannot list {}: {e}", self.loc.display(&folder)))?;
        let files: Vec<String> = metas
            .iter()
            .filter(|m| m.location.extension() == Some("parquet"))
            .filter_map(|m| m.location.filename().map(str::to_string))
            .collect();
        let dir = self.keys_dir.join(&folder);
        let shown = dir.display().to_string();
        let listed: HashSet<String> = files.iter().cloned().collect();
        let mut keys = tokio::task::spawn_blocking(move || {
            let opened = match PartitionKeys::open(&dir) {
                Ok(k) => {
                    let gone = k
                        .covered_files()
                        .find(|f| !listed.contains(*f))
                        .map(str::to_string);
                    match gone {
                        None => return Ok(k),
                        Some(gone) => {
                            format!("it covers {gone}, which is no longer in the warehouse")
                        }
                    }
                }
                Err(e) => e.to_string(),
            };
            tracing::warn!(index = %shown, reason = %opened, "rebuilding a partition's key index from the warehouse");
            PartitionKeys::reset(&dir)
        })
        .await
        .map_err(|e| format!("the key index task failed: {e}"))?
        .map_err(|e| e.to_string())?;
        let uncovered: Vec<String> = files.into_iter().filter(|f| !keys.covers(f)).collect();
        for name in uncovered {
            let rel = format!("{folder}/{name}");
            let bytes = crate::io::sink::fetch(&self.loc, &rel)
                .await
                .map_err(|e| e.to_string())?;
            let schema = schema.clone();
            let shown = self.loc.display(&rel);
            let (back, read) = on_index(keys, move |k| {
                let found = file_keys(&schema, bytes)?;
                k.add_file(name, found);
                k.spill_if_full().map_err(|e| e.to_string())
            })
            .await?;
            keys = back;
            read.map_err(|e| format!("cannot read the keys of {shown}: {e}"))?;
        }
        // What was read from the warehouse becomes durable now, not at a later spill.
        let (keys, spilled) = on_index(keys, |k| k.spill()).await?;
        spilled.map_err(|e| e.to_string())?;
        self.index.insert(
            (kind, dt),
            Partition {
                keys,
                used: 0,
                touched: Instant::now(),
            },
        );
        Ok(())
    }

    /// Spills and closes one partition's index. A failed spill only costs a re-read:
    /// the files it would have covered are read again when the partition reopens.
    async fn close(&mut self, at: (PushKind, NaiveDate)) {
        let Some(part) = self.index.remove(&at) else {
            return;
        };
        match on_index(part.keys, |k| k.spill()).await {
            Ok((_, Ok(()))) => {}
            Ok((_, Err(e))) => {
                tracing::warn!(table = at.0.table(), dt = %at.1, error = %e, "cannot spill keys while closing a partition's index")
            }
            Err(e) => {
                tracing::warn!(table = at.0.table(), dt = %at.1, error = %e, "cannot close a partition's key index")
            }
        }
    }

    /// Closes partitions unused for [`IDLE`], then spills the partitions holding most
    /// keys in memory while all together hold more than [`MAX_UNSPILLED`].
    async fn close_idle(&mut self) {
        let idle: Vec<_> = self
            .index
            .iter()
            .filter(|(_, p)| p.touched.elapsed() >= IDLE)
            .map(|(k, _)| *k)
            .collect();
        for at in idle {
            self.close(at).await;
        }
        while self
            .index
            .values()
            .map(|p| p.keys.unspilled())
            .sum::<usize>()
            > MAX_UNSPILLED
        {
            let Some(at) = self
                .index
                .iter()
                .max_by_key(|(_, p)| p.keys.unspilled())
                .map(|(k, _)| *k)
            else {
                break;
            };
            let Some(part) = self.index.remove(&at) else {
                break;
            };
            match on_index(part.keys, |k| k.spill()).await {
                Ok((keys, Ok(()))) => {
                    self.index.insert(
                        at,
                        Partition {
                            keys,
                            used: part.used,
                            touched: part.touched,
                        },
                    );
                }
                Ok((_, Err(e))) => {
                    tracing::warn!(table = at.0.table(), dt = %at.1, error = %e, "cannot spill keys; the partition's index is reopened on its next use")
                }
                Err(e) => tracing::warn!(error = %e, "cannot spill keys"),
            }
        }
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
    known: &PartitionKeys,
    batch: RecordBatch,
    pii: Option<&crate::core::privacy::PiiKey>,
) -> Result<Prepared, String> {
    let keys = batch_keys(schema, &batch);
    let mut fresh: HashSet<u128> = HashSet::new();
    let mut mask = Vec::with_capacity(keys.len());
    for k in &keys {
        mask.push(match k {
            Some(h) => {
                !fresh.contains(h)
                    && !known.contains(*h).map_err(|e| e.to_string())?
                    && fresh.insert(*h)
            }
            None => true,
        });
    }
    let mask = BooleanArray::from(mask);
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
    let kept = crate::core::privacy::protect(schema, pii, kept).map_err(|e| e.to_string())?;
    let kept = assemble(schema, &[kept]).map_err(|e| format!("cannot sort rows: {e}"))?;
    let rows = kept.num_rows();
    let bytes =
        crate::io::sink::encode(&kept).map_err(|e| format!("cannot encode Parquet: {e}"))?;
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

    struct Setup {
        dir: tempfile::TempDir,
        loc: Location,
        schemas: Arc<HashMap<PushKind, TableSchema>>,
        wal: Wal,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("wh").display());
        let loc = Location::parse(&url, &Default::default()).unwrap();
        let schemas = Arc::new(super::super::tables::load(Path::new("/nonexistent")).unwrap());
        let (wal, _) = Wal::open(&dir.path().join("wal")).unwrap();
        Setup {
            dir,
            loc,
            schemas,
            wal,
        }
    }

    impl Setup {
        /// A new flusher (a new process: nothing in memory) with these talks pending.
        fn flusher(&self, ids: &[&str]) -> Flusher {
            let entries = ids
                .iter()
                .map(|id| Entry {
                    kind: PushKind::Talk,
                    received_ms: 1,
                    json: talk(id),
                    segment: 1,
                })
                .collect();
            Flusher::new(
                self.loc.clone(),
                self.schemas.clone(),
                chrono_tz::Asia::Singapore,
                None,
                &self.keys(),
                entries,
            )
        }

        fn keys(&self) -> std::path::PathBuf {
            self.dir.path().join("wal/keys")
        }

        fn partition_keys(&self) -> std::path::PathBuf {
            self.keys().join("push_talks/dt=2024-03-01")
        }

        async fn flush(&self, ids: &[&str], close: bool) -> Flushed {
            let mut f = self.flusher(ids);
            let out = f.flush(&self.wal, Utc::now()).await.unwrap();
            if close {
                f.close_all().await;
            }
            out
        }

        fn files(&self) -> Vec<std::path::PathBuf> {
            let dir = self.dir.path().join("wh/push_talks/dt=2024-03-01");
            std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect()
        }
    }

    /// Shutdown spills: the next process answers from the index alone (nothing
    /// uncovered), and still drops every stored key.
    #[tokio::test]
    async fn keys_spilled_at_shutdown_are_found_by_the_next_process() {
        let s = setup();
        let first = s.flush(&["a", "b", "a", "c"], true).await;
        assert_eq!((first.rows, first.duplicates, first.files.len()), (3, 1, 1));
        let idx = keyindex::PartitionKeys::open(&s.partition_keys()).unwrap();
        assert_eq!(idx.durable_keys(), 3);
        assert_eq!(idx.covered_files().count(), 1);
        let second = s.flush(&["c", "d", "b"], true).await;
        assert_eq!((second.rows, second.duplicates), (1, 2));
    }

    /// The file of a flush whose keys never reached a run (a crash), and the files of a
    /// warehouse the index has never seen (a lost local disk, a first start), are read.
    #[tokio::test]
    async fn files_the_index_does_not_cover_are_read_from_the_warehouse() {
        let s = setup();
        s.flush(&["a", "b"], true).await;
        // Not closed: the keys of this flush's file are not in a run.
        s.flush(&["c"], false).await;
        let idx = keyindex::PartitionKeys::open(&s.partition_keys()).unwrap();
        assert_eq!(idx.covered_files().count(), 1);
        drop(idx);
        let third = s.flush(&["a", "c", "e"], true).await;
        assert_eq!((third.rows, third.duplicates), (1, 2));
        // The local disk is lost: every key is read again from the warehouse.
        std::fs::remove_dir_all(s.keys()).unwrap();
        let fourth = s.flush(&["a", "b", "c", "e", "f"], true).await;
        assert_eq!((fourth.rows, fourth.duplicates), (1, 4));
        let idx = keyindex::PartitionKeys::open(&s.partition_keys()).unwrap();
        assert_eq!(idx.durable_keys(), 5);
        assert_eq!(idx.covered_files().count(), s.files().len());
    }

    /// A file the index covers is gone from the warehouse (removed by hand, or rewritten
    /// by a tool): the index is rebuilt, so its keys are accepted again, not dropped.
    #[tokio::test]
    async fn an_index_naming_a_missing_file_is_rebuilt_from_the_warehouse() {
        let s = setup();
        s.flush(&["a", "b"], true).await;
        s.flush(&["c"], true).await;
        let first = s
            .files()
            .into_iter()
            .find(|p| {
                let b = std::fs::read(p).unwrap();
                file_keys(&s.schemas[&PushKind::Talk], b.into())
                    .unwrap()
                    .len()
                    == 2
            })
            .unwrap();
        std::fs::remove_file(first).unwrap();
        let again = s.flush(&["a", "b", "c", "d"], true).await;
        assert_eq!((again.rows, again.duplicates), (3, 1));
    }

    /// A truncated or corrupted run, or an unreadable manifest, is rebuilt from the
    /// warehouse: the answers stay exact, nothing panics.
    #[tokio::test]
    async fn a_damaged_index_is_rebuilt_from_the_warehouse() {
        let s = setup();
        s.flush(&["a", "b", "c"], true).await;
        let run = std::fs::read_dir(s.partition_keys())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "keys"))
            .unwrap();
        let bytes = std::fs::read(&run).unwrap();
        std::fs::write(&run, &bytes[..bytes.len() / 2]).unwrap();
        let second = s.flush(&["a", "d"], true).await;
        assert_eq!((second.rows, second.duplicates), (1, 1));
        std::fs::write(s.partition_keys().join("MANIFEST"), b"not json").unwrap();
        let third = s.flush(&["b", "d", "e"], true).await;
        assert_eq!((third.rows, third.duplicates), (1, 2));
        let idx = keyindex::PartitionKeys::open(&s.partition_keys()).unwrap();
        assert_eq!(idx.durable_keys(), 5);
    }

    /// More partitions than may stay open: the least recently used are spilled and
    /// closed (memory stays bounded), and reopening one still finds its keys.
    #[tokio::test]
    async fn closed_partitions_keep_their_keys() {
        let s = setup();
        let day = 86_400_000_i64;
        let entry = |id: &str, d: i64| {
            let start = 1_709_251_200_000_i64 + d * day;
            let json = serde_json::json!({"companyId": "c", "callID": id, "startTime": start});
            Entry {
                kind: PushKind::Talk,
                received_ms: 1,
                json: json.to_string(),
                segment: 1,
            }
        };
        let days = MAX_PARTITIONS as i64 + 4;
        let mut f = s.flusher(&[]);
        f.pending = (0..days).map(|d| entry(&format!("k{d}"), d)).collect();
        let first = f.flush(&s.wal, Utc::now()).await.unwrap();
        assert_eq!(
            (first.rows, first.files.len()),
            (days as usize, days as usize)
        );
        assert_eq!(f.open_partitions(), MAX_PARTITIONS);
        // The first day was closed: its key went to a run that covers its file.
        let closed = keyindex::PartitionKeys::open(&s.partition_keys()).unwrap();
        assert_eq!(
            (closed.durable_keys(), closed.covered_files().count()),
            (1, 1)
        );
        drop(closed);
        // Every day again (the first four were closed), plus one new key.
        f.pending = (0..days).map(|d| entry(&format!("k{d}"), d)).collect();
        f.pending.push(entry("new", 0));
        let second = f.flush(&s.wal, Utc::now()).await.unwrap();
        assert_eq!((second.rows, second.duplicates), (1, days as usize));
        assert!(f.open_partitions() <= MAX_PARTITIONS);
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
        let mut f = Flusher::new(
            loc.clone(),
            schemas.clone(),
            tz,
            None,
            &dir.path().join("keys"),
            entries.clone(),
        );
        let first = f.flush(&wal, Utc::now()).await.unwrap();
        assert_eq!((first.rows, first.duplicates, first.files.len()), (3, 1, 1));
        // A new process (empty key memory) replays the same records, plus a new one.
        let mut again = entries;
        again.push(Entry {
            json: talk("d"),
            ..again[0].clone()
        });
        let mut f = Flusher::new(loc, schemas, tz, None, &dir.path().join("keys"), again);
        let second = f.flush(&wal, Utc::now()).await.unwrap();
        assert_eq!((second.rows, second.duplicates), (1, 4));
    }
}
