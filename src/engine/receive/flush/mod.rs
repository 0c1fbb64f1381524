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
//! [`SPILL_KEYS`](super::keyindex::SPILL_KEYS), and the largest spill while all hold more than
//! [`MAX_UNSPILLED`]), so key memory no longer grows with what was received. At most [`MAX_PARTITIONS`] partitions are open; the least
//! recently used, and any unused for [`IDLE`], are spilled and closed. The warehouse
//! stays the source of truth: when a partition is opened, the keys of every file its
//! manifest does not cover (a crash before the spill, a first start on an existing
//! warehouse, a lost local disk) are read from the file, and an index that names a file
//! no longer there, or that does not read back, is rebuilt from the partition's files.
//!
//! The parts: `prepare` (pushes to Parquet, duplicates dropped), `keys` (the row key
//! hash), `partitions` (the open key indexes); this file drives a flush through them.

mod keys;
mod partitions;
mod prepare;

pub use keys::batch_keys;
pub use partitions::{IDLE, MAX_PARTITIONS, MAX_UNSPILLED};

use super::wal::{Entry, Wal};
use crate::core::push::PushKind;
use crate::core::schema::TableSchema;
use crate::io::store::Location;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use object_store::{ObjectStoreExt, PutPayload};
use partitions::{OpenPartitions, on_index};
use prepare::{build_groups, prepare};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

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
    /// The partitions whose key index is open.
    partitions: OpenPartitions,
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
            partitions: OpenPartitions::new(keys_dir),
        }
    }

    /// Spills and closes every open key index (at shutdown, so the next start reads no
    /// warehouse file again).
    pub async fn close_all(&mut self) {
        self.partitions.close_all().await;
    }

    /// Partitions whose key index is open now.
    pub fn open_partitions(&self) -> usize {
        self.partitions.len()
    }

    /// Bytes the open key indexes hold in memory (filters, fences, unspilled keys).
    pub fn key_memory(&self) -> usize {
        self.partitions.memory()
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
            self.partitions.open(&self.loc, kind, dt, &schema).await?;
            let mut part = self.partitions.take(kind, dt)?;
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
                self.partitions.put_back(kind, dt, part);
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
                self.partitions.put_back(kind, dt, part);
                return Err(format!("cannot write {}: {e}", self.loc.display(&rel)));
            }
            part.keys.add_file(name, prepared.fresh);
            let (keys, spilled) = on_index(part.keys, |k| k.spill_if_full()).await?;
            part.keys = keys;
            match spilled {
                Ok(()) => {
                    self.partitions.put_back(kind, dt, part);
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
        self.partitions.close_idle().await;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::keys::file_keys;
    use super::*;
    use crate::engine::receive::keyindex;
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
