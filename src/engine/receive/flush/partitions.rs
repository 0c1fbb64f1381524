//! The partitions whose key index is open: at most [`MAX_PARTITIONS`], so that key
//! memory stays bounded however many days and tables a receiver has seen.

use super::keys::file_keys;
use crate::core::push::PushKind;
use crate::core::schema::TableSchema;
use crate::engine::receive::keyindex::{self, PartitionKeys};
use crate::io::store::Location;
use chrono::NaiveDate;
use futures::TryStreamExt;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Partitions whose key index is open (filters in memory).
pub const MAX_PARTITIONS: usize = 16;
/// An open partition unused this long is spilled and closed (its filters freed).
pub const IDLE: Duration = Duration::from_secs(600);
/// Keys held in memory (not yet spilled) over every open partition; beyond it the
/// partitions holding most are spilled.
pub const MAX_UNSPILLED: usize = 4 * keyindex::SPILL_KEYS;

pub(super) struct Partition {
    pub(super) keys: PartitionKeys,
    /// Flush tick of the last use (least recently used is closed first).
    used: u64,
    touched: Instant,
}

/// Runs `f` on a partition's index on a blocking thread (its disk reads and writes must
/// not stall the tasks acknowledging pushes), handing the index back.
pub(super) async fn on_index<T: Send + 'static>(
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

/// Partition -> its open key index, with the use counter that orders them.
pub(super) struct OpenPartitions {
    /// Root of the partitions' key indexes.
    keys_dir: PathBuf,
    index: HashMap<(PushKind, NaiveDate), Partition>,
    tick: u64,
}

impl OpenPartitions {
    pub(super) fn new(keys_dir: &Path) -> Self {
        Self {
            keys_dir: keys_dir.to_path_buf(),
            index: HashMap::new(),
            tick: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Bytes the open key indexes hold in memory (filters, fences, unspilled keys).
    pub(super) fn memory(&self) -> usize {
        self.index.values().map(|p| p.keys.memory()).sum()
    }

    /// Takes the open index of `(kind, dt)` out to work on it, marking it used now;
    /// [`Self::put_back`] returns it (an index not put back stays closed).
    pub(super) fn take(&mut self, kind: PushKind, dt: NaiveDate) -> Result<Partition, String> {
        self.tick += 1;
        let mut part = self
            .index
            .remove(&(kind, dt))
            .ok_or_else(|| format!("the key index of {} dt={dt} is not open", kind.table()))?;
        part.used = self.tick;
        part.touched = Instant::now();
        Ok(part)
    }

    pub(super) fn put_back(&mut self, kind: PushKind, dt: NaiveDate, part: Partition) {
        self.index.insert((kind, dt), part);
    }

    /// Spills and closes every open key index (at shutdown, so the next start reads no
    /// warehouse file again).
    pub(super) async fn close_all(&mut self) {
        let open: Vec<_> = self.index.keys().copied().collect();
        for at in open {
            self.close(at).await;
        }
    }

    /// Opens the key index of partition `(kind, dt)` unless open, closing the least
    /// recently used beyond [`MAX_PARTITIONS`]. The warehouse decides: the keys of every
    /// file the index does not cover are read from the file, and an index that names a
    /// file no longer there, or does not read back, is rebuilt from every file.
    pub(super) async fn open(
        &mut self,
        loc: &Location,
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
        let prefix = loc.list_prefix(&format!("{folder}/"));
        let metas: Vec<_> = loc
            .store()
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| format!("cannot list {}: {e}", loc.display(&folder)))?;
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
            let bytes = crate::io::sink::fetch(loc, &rel)
                .await
                .map_err(|e| e.to_string())?;
            let schema = schema.clone();
            let shown = loc.display(&rel);
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
    pub(super) async fn close_idle(&mut self) {
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
