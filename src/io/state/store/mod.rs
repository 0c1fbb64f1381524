//! Versioned JSON state per pipeline and a lock with an expiry, both built only on
//! `PutMode::Create` so that the local filesystem and S3 give the same guarantees.
//!
//! Nothing is ever overwritten. State is a sequence of immutable versions
//! (`<pipeline>/state/<version:020>.json`) and the lock a sequence of immutable generations
//! (`<pipeline>/lock/<gen:020>.json`); whoever creates number n+1 first wins, every other
//! writer gets `AlreadyExists`. The zero-padded names sort lexically in numeric order.

use crate::io::state::holder::{HolderProcess, Liveness};
use crate::io::store::Location;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Folder of a pipeline's state versions.
const STATE_DIR: &str = "state";
/// Folder of a pipeline's lock generations.
const LOCK_DIR: &str = "lock";
/// Folder of the range locks of a pipeline's sharded backfills, one sub-folder per range
/// (`crate::engine::shard`); apart from `lock/` because listings are recursive.
const RANGE_LOCK_DIR: &str = "range_lock";
/// Versions kept after a commit: enough history to inspect recent runs by hand, without
/// listings growing forever.
const KEEP_VERSIONS: usize = 20;
/// Lock generations kept: only the newest one matters, a few more help debugging.
const KEEP_GENERATIONS: usize = 5;
/// How often `acquire_lock`, `renew` and `release` re-read and retry after losing a race
/// for the next generation before giving up.
const LOCK_ATTEMPTS: usize = 5;
/// Pipeline names become folder names on every store; keep them portable.
const MAX_PIPELINE_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "pipeline {pipeline} is busy: locked by {holder} until {expires_at}; if that run is gone for good, `sobot-sync unlock` releases it"
    )]
    Busy {
        pipeline: String,
        holder: String,
        expires_at: DateTime<Utc>,
    },
    #[error(
        "state of pipeline {pipeline} changed under this run (expected version {expected:?}); another run committed first"
    )]
    Conflict {
        pipeline: String,
        expected: Option<u64>,
    },
    #[error("state of pipeline {pipeline} at {path} is unreadable: {reason}")]
    Corrupt {
        pipeline: String,
        path: String,
        reason: String,
    },
    #[error("state storage error at {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "invalid pipeline name {pipeline:?}: use 1-{MAX_PIPELINE_LEN} characters of a-z, 0-9 and _"
    )]
    InvalidPipeline { pipeline: String },
    #[error("cannot encode the state of pipeline {pipeline} as JSON: {reason}")]
    Encode { pipeline: String, reason: String },
}

/// One committed version of a pipeline's state.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub version: u64,
    pub value: T,
}

/// One lock generation as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockRecord {
    owner: String,
    expires_at: DateTime<Utc>,
    released: bool,
    /// issue 13: the process that wrote this generation, so that a crashed holder's lock
    /// is taken over at once (`state::holder`). Absent in generations written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holder: Option<HolderProcess>,
}

impl LockRecord {
    fn new(owner: &str, expires_at: DateTime<Utc>, released: bool) -> Self {
        Self {
            owner: owner.to_string(),
            expires_at,
            released,
            holder: Some(HolderProcess::current().clone()),
        }
    }

    /// Whether this generation keeps `owner` out at `now` by its lease alone.
    fn blocks(&self, owner: &str, now: DateTime<Utc>) -> bool {
        !self.released && self.owner != owner && self.expires_at > now
    }

    /// Whether the writer of this generation still runs (`Unknown` for old records).
    fn liveness(&self) -> Liveness {
        self.holder
            .as_ref()
            .map_or(Liveness::Unknown, HolderProcess::liveness)
    }

    /// The owner and, when recorded, its process: what messages show as the holder.
    fn shown_holder(&self) -> String {
        match &self.holder {
            Some(h) => format!("{} ({h})", self.owner),
            None => self.owner.clone(),
        }
    }

    /// `Busy` naming the owner (callers compare it with owners); `unlock` shows the
    /// holder's process.
    fn busy(&self, pipeline: &str) -> StateError {
        StateError::Busy {
            pipeline: pipeline.to_string(),
            holder: self.owner.clone(),
            expires_at: self.expires_at,
        }
    }

    fn view(&self, scope: Option<&str>, generation: u64) -> LockView {
        LockView {
            scope: scope.map(str::to_string),
            generation,
            owner: self.owner.clone(),
            expires_at: self.expires_at,
            released: self.released,
            holder: self.holder.clone(),
            liveness: self.liveness(),
        }
    }
}

/// What the newest generation of one lock says (issue 13: `unlock`, `status`).
#[derive(Debug, Clone, Serialize)]
pub struct LockView {
    /// `None`: the pipeline lock; else the scope of a range lock (`crate::engine::shard`).
    pub scope: Option<String>,
    pub generation: u64,
    /// `<run id>/<pipeline>[/...]` for locks taken by runs.
    pub owner: String,
    pub expires_at: DateTime<Utc>,
    pub released: bool,
    pub holder: Option<HolderProcess>,
    /// Whether the holder's process still runs, as seen from this process.
    pub liveness: Liveness,
}

impl LockView {
    /// Whether this lock keeps other runs out at `now`: neither released nor expired,
    /// and its holder not known to be dead (such a lock is taken over at once).
    pub fn is_held(&self, now: DateTime<Utc>) -> bool {
        !self.released && self.expires_at > now && self.liveness != Liveness::Dead
    }

    /// Whether it was taken by run `run_id` (owners are `<run id>/...`; `unlock` writes
    /// `unlocked:<owner>` when it releases one).
    pub fn is_of_run(&self, run_id: &str) -> bool {
        let owner = self.owner.strip_prefix("unlocked:").unwrap_or(&self.owner);
        owner
            .strip_prefix(run_id)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// `owner (pid P on host H)`, or the owner alone for records without a holder.
    pub fn shown_holder(&self) -> String {
        match &self.holder {
            Some(h) => format!("{} ({h})", self.owner),
            None => self.owner.clone(),
        }
    }
}

/// What [`StateStore::unlock`] did.
#[derive(Debug, Clone)]
pub enum Unlock {
    /// The lock was never taken.
    NeverLocked,
    /// Already released, expired or held by a dead process before: nothing written.
    NotHeld(LockView),
    /// Released now; `forced` when the holder was not known to be dead.
    Released { was: LockView, forced: bool },
    /// Left alone: the lease is fresh and the holder is not known to be dead.
    Refused(LockView),
}

/// A numbered object in a sequence folder.
#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    path: Path,
}

#[derive(Debug, Clone)]
pub struct StateStore {
    loc: Location,
}

impl StateStore {
    pub fn new(loc: Location) -> Self {
        Self { loc }
    }

    pub fn location(&self) -> &Location {
        &self.loc
    }

    /// The newest committed version, or `None` for a pipeline that never committed.
    /// A newest version that does not parse is `Corrupt`: falling back to an older one
    /// would silently re-extract (or skip) data.
    pub async fn load<T: DeserializeOwned>(
        &self,
        pipeline: &str,
    ) -> Result<Option<Versioned<T>>, StateError> {
        validate_pipeline(pipeline)?;
        let dir = format!("{pipeline}/{STATE_DIR}");
        // The newest version is never pruned by a commit, but a burst of commits between
        // our listing and our read could prune it; list again in that case.
        for _ in 0..LOCK_ATTEMPTS {
            let Some(latest) = self.list_seq(&dir).await?.pop() else {
                return Ok(None);
            };
            if let Some(value) = self.read_json(pipeline, &latest.path).await? {
                return Ok(Some(Versioned {
                    version: latest.seq,
                    value,
                }));
            }
        }
        Err(StateError::Conflict {
            pipeline: pipeline.to_string(),
            expected: None,
        })
    }

    /// Commits `value` as the version after `expected` (`None`: the first version).
    /// Fails with `Conflict` when any other writer committed that version first.
    pub async fn commit<T: Serialize>(
        &self,
        pipeline: &str,
        expected: Option<u64>,
        value: &T,
    ) -> Result<u64, StateError> {
        validate_pipeline(pipeline)?;
        let body = serde_json::to_vec_pretty(value).map_err(|e| StateError::Encode {
            pipeline: pipeline.to_string(),
            reason: e.to_string(),
        })?;
        let conflict = || StateError::Conflict {
            pipeline: pipeline.to_string(),
            expected,
        };
        let dir = format!("{pipeline}/{STATE_DIR}");
        // Creating `expected + 1` alone would accept a stale `expected` whenever that
        // version number happens to be free (e.g. after pruning); comparing with the
        // current newest first closes that gap.
        let latest = self.list_seq(&dir).await?.last().map(|e| e.seq);
        if latest != expected {
            return Err(conflict());
        }
        let version = expected.map_or(1, |v| v + 1);
        let rel = format!("{dir}/{}", seq_name(version));
        if !self.create(&rel, body).await? {
            return Err(conflict());
        }
        tracing::debug!(pipeline, version, "state committed");
        self.prune(&dir, KEEP_VERSIONS).await;
        Ok(version)
    }

    /// Pipelines that have any committed state, sorted.
    pub async fn pipelines(&self) -> Result<Vec<String>, StateError> {
        let root = self.loc.list_prefix("");
        let listing = self
            .loc
            .store()
            .list_with_delimiter(root.as_ref())
            .await
            .map_err(|source| self.storage_error("", source))?;
        let mut names = Vec::new();
        for folder in listing.common_prefixes {
            let Some(name) = folder.filename().map(str::to_string) else {
                continue;
            };
            if validate_pipeline(&name).is_err() {
                continue;
            }
            let inner = self
                .loc
                .store()
                .list_with_delimiter(Some(&folder))
                .await
                .map_err(|source| self.storage_error(&name, source))?;
            if inner
                .common_prefixes
                .iter()
                .any(|p| p.filename() == Some(STATE_DIR))
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Takes the pipeline's lock for `ttl` (wall-clock, not `--now`). A lock held by
    /// another owner and not yet expired gives `Busy`; an expired one is taken over.
    /// The same owner may take its own unexpired lock again (a restarted run reusing its
    /// id), so owners must be unique per run (host, pid, random suffix).
    pub async fn acquire_lock(
        &self,
        pipeline: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lock, StateError> {
        validate_pipeline(pipeline)?;
        self.acquire_lock_in(pipeline, format!("{pipeline}/{LOCK_DIR}"), owner, ttl)
            .await
    }

    /// Takes the lock of one range of a pipeline (`scope`: 1-64 of `[0-9A-Za-z_]`, e.g.
    /// `20240301T000000Z_20240308T000000Z`), with the same rules as [`Self::acquire_lock`].
    /// It keeps out only runs of the same range, not the pipeline lock's holder: sharded
    /// backfills of disjoint ranges run beside each other and beside the incremental run.
    pub async fn acquire_range_lock(
        &self,
        pipeline: &str,
        scope: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lock, StateError> {
        let dir = lock_dir(pipeline, Some(scope))?;
        self.acquire_lock_in(pipeline, dir, owner, ttl).await
    }

    /// The listing of `pipeline`'s range-lock folders (one common prefix per scope).
    async fn range_lock_folders(
        &self,
        pipeline: &str,
    ) -> Result<object_store::ListResult, StateError> {
        validate_pipeline(pipeline)?;
        let dir = format!("{pipeline}/{RANGE_LOCK_DIR}");
        let prefix = self.loc.list_prefix(&dir);
        self.loc
            .store()
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|source| self.storage_error(&dir, source))
    }

    /// The range locks of `pipeline` held right now (not released, not expired), by any
    /// owner: each range's scope and a `Busy` error naming it. `compact` and sharded backfills use it
    /// to keep out of each other (`crate::engine::shard::exclude_compaction`): each takes its own
    /// range lock first and then looks for the other's, so in every interleaving at
    /// least one of the two sees the other.
    pub async fn held_range_locks(
        &self,
        pipeline: &str,
    ) -> Result<Vec<(String, StateError)>, StateError> {
        let listing = self.range_lock_folders(pipeline).await?;
        let dir = format!("{pipeline}/{RANGE_LOCK_DIR}");
        let now = Utc::now();
        let mut held = Vec::new();
        for folder in listing.common_prefixes {
            let Some(scope) = folder.filename() else {
                continue;
            };
            let rel = format!("{dir}/{scope}");
            if let Some((_, record)) = self.newest_lock(pipeline, &rel).await?
                && !record.released
                && record.expires_at > now
                && record.liveness() != Liveness::Dead
            {
                let busy = record.busy(&format!("{pipeline} (range {scope})"));
                held.push((scope.to_string(), busy));
            }
        }
        Ok(held)
    }

    /// issue 13: the newest generation of the pipeline lock (`scope` `None`) or of one
    /// range lock, or `None` when it was never taken.
    pub async fn lock_view(
        &self,
        pipeline: &str,
        scope: Option<&str>,
    ) -> Result<Option<LockView>, StateError> {
        let dir = lock_dir(pipeline, scope)?;
        Ok(self
            .newest_lock(pipeline, &dir)
            .await?
            .map(|(generation, record)| record.view(scope, generation)))
    }

    /// issue 13: the newest generation of every range lock of `pipeline`, held or not,
    /// by scope.
    pub async fn range_lock_views(&self, pipeline: &str) -> Result<Vec<LockView>, StateError> {
        let listing = self.range_lock_folders(pipeline).await?;
        let mut views = Vec::new();
        for folder in listing.common_prefixes {
            let Some(scope) = folder.filename() else {
                continue;
            };
            if let Ok(view) = self.lock_view(pipeline, Some(scope)).await
                && let Some(view) = view
            {
                views.push(view);
            }
        }
        views.sort_by(|a, b| a.scope.cmp(&b.scope));
        Ok(views)
    }

    /// issue 13 (`sobot-sync unlock`, like Terraform's `force-unlock`): releases the
    /// pipeline lock (`scope` `None`) or one range lock by writing a released generation
    /// after the newest one. Without `force` a lock whose lease is fresh is left alone
    /// ([`Unlock::Refused`]) unless its holder's process is known to be gone. A holder
    /// that still runs notices at its next renewal (it fails as `Busy`) and stops
    /// committing; its state commits are conditional, so nothing it wrote is lost.
    pub async fn unlock(
        &self,
        pipeline: &str,
        scope: Option<&str>,
        force: bool,
    ) -> Result<Unlock, StateError> {
        let dir = lock_dir(pipeline, scope)?;
        for _ in 0..LOCK_ATTEMPTS {
            let Some((generation, record)) = self.newest_lock(pipeline, &dir).await? else {
                return Ok(Unlock::NeverLocked);
            };
            let now = Utc::now();
            let view = record.view(scope, generation);
            if record.released || record.expires_at <= now {
                return Ok(Unlock::NotHeld(view));
            }
            let dead = view.liveness == Liveness::Dead;
            if !dead && !force {
                return Ok(Unlock::Refused(view));
            }
            let next = LockRecord::new(&format!("unlocked:{}", record.owner), now, true);
            if self
                .create_lock(pipeline, &dir, generation + 1, &next)
                .await?
            {
                tracing::info!(
                    pipeline,
                    lock = %dir,
                    previous = %record.shown_holder(),
                    forced = !dead,
                    "lock released by unlock"
                );
                return Ok(Unlock::Released {
                    was: view,
                    forced: !dead,
                });
            }
        }
        // Lost every race: someone is renewing or taking the lock right now.
        match self.newest_lock(pipeline, &dir).await? {
            Some((_, record)) => Err(record.busy(pipeline)),
            None => Ok(Unlock::NeverLocked),
        }
    }

    /// [`Self::acquire_lock`] on the lock generations in folder `dir`.
    async fn acquire_lock_in(
        &self,
        pipeline: &str,
        dir: String,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lock, StateError> {
        let mut last_seen: Option<LockRecord> = None;
        for _ in 0..LOCK_ATTEMPTS {
            let newest = self.newest_lock(pipeline, &dir).await?;
            let now = Utc::now();
            if let Some((_, record)) = &newest
                && record.blocks(owner, now)
            {
                if record.liveness() != Liveness::Dead {
                    return Err(record.busy(pipeline));
                }
                tracing::info!(
                    pipeline,
                    lock = %dir,
                    previous = %record.shown_holder(),
                    lease_until = %record.expires_at.to_rfc3339(),
                    "taking the lock over at once: its holder's process no longer exists on this host"
                );
            }
            let generation = newest.as_ref().map_or(1, |(g, _)| g + 1);
            let record = LockRecord::new(owner, expiry(now, ttl), false);
            if self
                .create_lock(pipeline, &dir, generation, &record)
                .await?
            {
                let lock = Lock {
                    store: self.clone(),
                    pipeline: pipeline.to_string(),
                    dir: dir.clone(),
                    owner: owner.to_string(),
                    ttl,
                    generation,
                    expires_at: record.expires_at,
                };
                tracing::debug!(pipeline, owner, generation, "lock acquired");
                return Ok(lock);
            }
            last_seen = newest.map(|(_, r)| r);
        }
        // Lost every race: someone else is actively taking the lock.
        match self.newest_lock(pipeline, &dir).await? {
            Some((_, record)) => Err(record.busy(pipeline)),
            None => Err(last_seen.map_or_else(
                || StateError::Conflict {
                    pipeline: pipeline.to_string(),
                    expected: None,
                },
                |r| r.busy(pipeline),
            )),
        }
    }

    /// Creates lock generation `generation`, then checks that nothing newer exists: a
    /// writer that stalled long enough for its "next" generation to be pruned could
    /// otherwise re-create an old number and believe it holds the lock.
    async fn create_lock(
        &self,
        pipeline: &str,
        dir: &str,
        generation: u64,
        record: &LockRecord,
    ) -> Result<bool, StateError> {
        let body = serde_json::to_vec_pretty(record).map_err(|e| StateError::Encode {
            pipeline: pipeline.to_string(),
            reason: e.to_string(),
        })?;
        let rel = format!("{dir}/{}", seq_name(generation));
        if !self.create(&rel, body).await? {
            return Ok(false);
        }
        let newest = self.list_seq(dir).await?.last().map(|e| e.seq);
        if newest != Some(generation) {
            tracing::warn!(
                pipeline,
                generation,
                newest = ?newest,
                "lock generation created behind a newer one; treating as lost"
            );
            return Ok(false);
        }
        self.prune(dir, KEEP_GENERATIONS).await;
        Ok(true)
    }

    /// The newest lock generation in `dir` and its record, if it was ever locked.
    async fn newest_lock(
        &self,
        pipeline: &str,
        dir: &str,
    ) -> Result<Option<(u64, LockRecord)>, StateError> {
        for _ in 0..LOCK_ATTEMPTS {
            let Some(latest) = self.list_seq(dir).await?.pop() else {
                return Ok(None);
            };
            if let Some(record) = self.read_json(pipeline, &latest.path).await? {
                return Ok(Some((latest.seq, record)));
            }
        }
        Err(StateError::Conflict {
            pipeline: pipeline.to_string(),
            expected: None,
        })
    }

    /// The numbered objects of a folder, oldest first. Other names (editor backups,
    /// temporary files) are ignored.
    async fn list_seq(&self, rel_dir: &str) -> Result<Vec<Entry>, StateError> {
        let prefix = self.loc.list_prefix(rel_dir);
        let metas: Vec<_> = self
            .loc
            .store()
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|source| self.storage_error(rel_dir, source))?;
        let mut entries: Vec<Entry> = metas
            .into_iter()
            .filter_map(|m| {
                let seq = parse_seq(m.location.filename()?)?;
                Some(Entry {
                    seq,
                    path: m.location,
                })
            })
            .collect();
        entries.sort_by_key(|e| e.seq);
        Ok(entries)
    }

    /// Reads and parses one JSON object; `None` when it vanished since the listing.
    async fn read_json<T: DeserializeOwned>(
        &self,
        pipeline: &str,
        path: &Path,
    ) -> Result<Option<T>, StateError> {
        let shown = self.shown(path);
        let bytes = match self.loc.store().get(path).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => {
                return Err(StateError::Storage {
                    path: shown,
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                pipeline: pipeline.to_string(),
                path: shown,
                reason: e.to_string(),
            })
    }

    /// `PutMode::Create`; `false` when the object already exists (another writer won).
    async fn create(&self, rel: &str, body: Vec<u8>) -> Result<bool, StateError> {
        let path = self.loc.path(rel);
        match self
            .loc
            .store()
            .put_opts(
                &path,
                PutPayload::from(body),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(source) => Err(self.storage_error(rel, source)),
        }
    }

    /// Deletes all but the newest `keep` numbered objects. Best effort: a leftover old
    /// version is harmless, so failures are only logged.
    async fn prune(&self, rel_dir: &str, keep: usize) {
        let entries = match self.list_seq(rel_dir).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list old versions to prune");
                return;
            }
        };
        let excess = entries.len().saturating_sub(keep);
        if excess == 0 {
            return;
        }
        let old = entries.into_iter().take(excess).map(|e| Ok(e.path));
        let results: Vec<_> = self
            .loc
            .store()
            .delete_stream(futures::stream::iter(old).boxed())
            .collect()
            .await;
        for result in results {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(
                    folder = %self.loc.display(rel_dir),
                    error = %e,
                    "cannot delete an old version"
                ),
            }
        }
    }

    fn shown(&self, path: &Path) -> String {
        self.loc
            .relative(path)
            .map_or_else(|| path.to_string(), |rel| self.loc.display(&rel))
    }

    fn storage_error(&self, rel: &str, source: object_store::Error) -> StateError {
        StateError::Storage {
            path: self.loc.display(rel),
            source,
        }
    }
}

/// A held pipeline lock. Renew it before `ttl` runs out during long runs.
#[derive(Debug)]
pub struct Lock {
    store: StateStore,
    pipeline: String,
    /// Folder of this lock's generations: the pipeline lock's or a range lock's.
    dir: String,
    owner: String,
    ttl: Duration,
    generation: u64,
    expires_at: DateTime<Utc>,
}

impl Lock {
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Until when this holder may rely on the lock without renewing.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// The generation this holder last wrote (grows with every renew).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Extends the lock by its ttl; fails with `Busy` if another owner took it over.
    pub async fn renew(&mut self) -> Result<(), StateError> {
        let (generation, expires_at) = self.write_next(false).await?;
        self.generation = generation;
        self.expires_at = expires_at;
        Ok(())
    }

    /// Gives the lock up so the next run need not wait for the expiry. A lock that
    /// another owner already took over is left alone.
    pub async fn release(self) -> Result<(), StateError> {
        match self.write_next(true).await {
            Ok(_) => Ok(()),
            Err(StateError::Busy { holder, .. }) => {
                tracing::warn!(
                    pipeline = %self.pipeline,
                    owner = %self.owner,
                    %holder,
                    "lock was taken over before release; nothing to release"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the generation after the newest one if the newest is still ours (not
    /// released, same owner); returns the new generation and expiry.
    async fn write_next(&self, release: bool) -> Result<(u64, DateTime<Utc>), StateError> {
        for _ in 0..LOCK_ATTEMPTS {
            let newest = self.store.newest_lock(&self.pipeline, &self.dir).await?;
            let Some((generation, record)) = newest else {
                // Someone deleted the lock folder: the lock is not ours any more.
                return Err(StateError::Busy {
                    pipeline: self.pipeline.clone(),
                    holder: "nobody (lock missing)".to_string(),
                    expires_at: Utc::now(),
                });
            };
            if record.owner != self.owner || record.released {
                return Err(record.busy(&self.pipeline));
            }
            let now = Utc::now();
            let expires_at = if release { now } else { expiry(now, self.ttl) };
            let next = LockRecord::new(&self.owner, expires_at, release);
            if self
                .store
                .create_lock(&self.pipeline, &self.dir, generation + 1, &next)
                .await?
            {
                return Ok((generation + 1, next.expires_at));
            }
        }
        match self.store.newest_lock(&self.pipeline, &self.dir).await? {
            Some((_, record)) => Err(record.busy(&self.pipeline)),
            None => Err(StateError::Conflict {
                pipeline: self.pipeline.clone(),
                expected: Some(self.generation),
            }),
        }
    }
}

fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    now.checked_add_signed(ttl)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The folder of the pipeline lock (`scope` `None`) or of one range lock.
fn lock_dir(pipeline: &str, scope: Option<&str>) -> Result<String, StateError> {
    validate_pipeline(pipeline)?;
    let Some(scope) = scope else {
        return Ok(format!("{pipeline}/{LOCK_DIR}"));
    };
    let ok = !scope.is_empty()
        && scope.len() <= MAX_PIPELINE_LEN
        && scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(StateError::InvalidPipeline {
            pipeline: format!("{pipeline}/{RANGE_LOCK_DIR}/{scope}"),
        });
    }
    Ok(format!("{pipeline}/{RANGE_LOCK_DIR}/{scope}"))
}

fn validate_pipeline(pipeline: &str) -> Result<(), StateError> {
    let ok = !pipeline.is_empty()
        && pipeline.len() <= MAX_PIPELINE_LEN
        && pipeline
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidPipeline {
            pipeline: pipeline.to_string(),
        })
    }
}

fn seq_name(n: u64) -> String {
    format!("{n:020}.json")
}

fn parse_seq(filename: &str) -> Option<u64> {
    let digits = filename.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_names_round_trip_and_sort() {
        assert_eq!(seq_name(7), "00000000000000000007.json");
        assert_eq!(parse_seq(&seq_name(7)), Some(7));
        assert_eq!(parse_seq(&seq_name(u64::MAX)), Some(u64::MAX));
        assert!(seq_name(9) < seq_name(10));
        assert_eq!(parse_seq("7.json"), None);
        assert_eq!(parse_seq("0000000000000000000a.json"), None);
        assert_eq!(parse_seq("00000000000000000007.json.tmp"), None);
    }

    #[test]
    fn pipeline_names() {
        assert!(validate_pipeline("talks_sg1").is_ok());
        for bad in ["", "Talks", "a/b", "..", "a-b", &"x".repeat(65)] {
            assert!(validate_pipeline(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// issue 13: a store in memory with one lock generation written by hand, as a
    /// process described by `holder` (or an older version, without one) left it.
    async fn store_with_lock(holder: Option<HolderProcess>, scope: Option<&str>) -> StateStore {
        let mem: std::sync::Arc<dyn object_store::ObjectStore> =
            std::sync::Arc::new(object_store::memory::InMemory::new());
        let store = StateStore::new(Location::from_store(mem, "state", "memory://state"));
        let mut record = serde_json::json!({
            "owner": "20240101T000000Z-deadbeef/talks",
            "expires_at": (Utc::now() + chrono::Duration::minutes(2)).to_rfc3339(),
            "released": false,
        });
        if let Some(h) = holder {
            record["holder"] = serde_json::to_value(h).unwrap();
        }
        let dir = lock_dir("talks", scope).unwrap();
        let body = serde_json::to_vec(&record).unwrap();
        assert!(
            store
                .create(&format!("{dir}/{}", seq_name(7)), body)
                .await
                .unwrap()
        );
        store
    }

    /// A process of this host that has exited (reaped), with the start time it had.
    #[cfg(target_os = "linux")]
    fn dead_process() -> HolderProcess {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let start = match crate::io::state::holder::probe(pid) {
            crate::io::state::holder::Probe::Running { start_ticks } => start_ticks,
            other => panic!("a running child reads as {other:?}"),
        };
        child.kill().expect("kill sleep");
        child.wait().expect("reap sleep");
        HolderProcess {
            pid,
            start_ticks: start,
            ..HolderProcess::current().clone()
        }
    }

    const TTL: Duration = Duration::from_secs(120);

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_dead_holder_on_this_host_is_taken_over_at_once() {
        let store = store_with_lock(Some(dead_process()), None).await;
        let lock = store
            .acquire_lock("talks", "next/talks", TTL)
            .await
            .unwrap();
        assert_eq!(lock.generation(), 8);
        // The new generation records this process as the holder.
        let view = store.lock_view("talks", None).await.unwrap().unwrap();
        assert_eq!(view.holder.as_ref(), Some(HolderProcess::current()));
        assert_eq!(view.liveness, Liveness::Alive);
        assert!(view.is_of_run("next") && !view.is_of_run("nex"));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_reused_pid_is_not_the_holder() {
        // This very process's pid, but a start time it never had: the holder is gone.
        let reused = HolderProcess {
            start_ticks: HolderProcess::current().start_ticks.map(|t| t + 1),
            ..HolderProcess::current().clone()
        };
        let store = store_with_lock(Some(reused), None).await;
        store
            .acquire_lock("talks", "next/talks", TTL)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn another_host_or_an_old_record_waits_for_the_expiry() {
        let other_host = HolderProcess {
            host: format!("{}-elsewhere", HolderProcess::current().host),
            pid: 1,
            ..HolderProcess::current().clone()
        };
        for holder in [Some(other_host), None] {
            let shown = format!("{holder:?}");
            let store = store_with_lock(holder, None).await;
            let err = store
                .acquire_lock("talks", "next/talks", TTL)
                .await
                .unwrap_err();
            assert!(matches!(err, StateError::Busy { .. }), "{shown}: {err}");
            assert!(
                err.to_string().contains("20240101T000000Z-deadbeef/talks"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn a_live_holder_of_this_host_waits_and_is_named() {
        // This process, under another owner: alive, so busy.
        let store = store_with_lock(Some(HolderProcess::current().clone()), None).await;
        let err = store
            .acquire_lock("talks", "next/talks", TTL)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StateError::Busy { ref holder, .. } if holder == "20240101T000000Z-deadbeef/talks"),
            "{err}"
        );
        assert!(err.to_string().contains("sobot-sync unlock"), "{err}");
        let view = store.lock_view("talks", None).await.unwrap().unwrap();
        assert_eq!(view.liveness, Liveness::Alive);
        let pid = format!("pid {}", std::process::id());
        assert!(view.shown_holder().contains(&pid), "{view:?}");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn dead_range_lock_holders_do_not_count_as_held() {
        let store = store_with_lock(Some(dead_process()), Some("compact")).await;
        assert!(store.held_range_locks("talks").await.unwrap().is_empty());
        let views = store.range_lock_views("talks").await.unwrap();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].scope.as_deref(), Some("compact"));
        assert_eq!(views[0].liveness, Liveness::Dead);
    }

    #[tokio::test]
    async fn unlock_refuses_a_fresh_lease_unless_forced() {
        let store = store_with_lock(Some(HolderProcess::current().clone()), None).await;
        let refused = store.unlock("talks", None, false).await.unwrap();
        assert!(matches!(refused, Unlock::Refused(_)), "{refused:?}");
        let forced = store.unlock("talks", None, true).await.unwrap();
        assert!(
            matches!(forced, Unlock::Released { forced: true, .. }),
            "{forced:?}"
        );
        let again = store.unlock("talks", None, false).await.unwrap();
        assert!(
            matches!(again, Unlock::NotHeld(ref v) if v.released),
            "{again:?}"
        );
        store
            .acquire_lock("talks", "next/talks", TTL)
            .await
            .unwrap();
        let never = store.unlock("parties", None, false).await.unwrap();
        assert!(matches!(never, Unlock::NeverLocked), "{never:?}");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn unlock_releases_a_dead_holder_without_force() {
        let store = store_with_lock(Some(dead_process()), None).await;
        let done = store.unlock("talks", None, false).await.unwrap();
        assert!(
            matches!(done, Unlock::Released { forced: false, .. }),
            "{done:?}"
        );
    }

    #[test]
    fn expiry_saturates() {
        let now = Utc::now();
        assert_eq!(expiry(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            expiry(now, Duration::from_secs(30)),
            now + chrono::Duration::seconds(30)
        );
    }
}
