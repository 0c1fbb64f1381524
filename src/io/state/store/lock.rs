//! The pipeline lock: a sequence of lock generations in `<pipeline>/lock/`, each a lease
//! with an expiry; whoever creates the next generation first holds it.

use super::error::{MAX_PIPELINE_LEN, StateError, validate_pipeline};
use super::sequence::{LOCK_ATTEMPTS, StateStore, seq_name};
use crate::io::state::holder::{HolderProcess, Liveness};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Folder of a pipeline's lock generations.
const LOCK_DIR: &str = "lock";
/// Folder of the range locks of a pipeline's sharded backfills, one sub-folder per range
/// (`crate::engine::shard`); apart from `lock/` because listings are recursive.
pub(super) const RANGE_LOCK_DIR: &str = "range_lock";
/// Lock generations kept: only the newest one matters, a few more help debugging.
const KEEP_GENERATIONS: usize = 5;

/// One lock generation as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LockRecord {
    pub(super) owner: String,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) released: bool,
    /// issue 13: the process that wrote this generation, so that a crashed holder's lock
    /// is taken over at once (`state::holder`). Absent in generations written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holder: Option<HolderProcess>,
}

impl LockRecord {
    pub(super) fn new(owner: &str, expires_at: DateTime<Utc>, released: bool) -> Self {
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
    pub(super) fn liveness(&self) -> Liveness {
        self.holder
            .as_ref()
            .map_or(Liveness::Unknown, HolderProcess::liveness)
    }

    /// The owner and, when recorded, its process: what messages show as the holder.
    pub(super) fn shown_holder(&self) -> String {
        match &self.holder {
            Some(h) => format!("{} ({h})", self.owner),
            None => self.owner.clone(),
        }
    }

    /// `Busy` naming the owner (callers compare it with owners); `unlock` shows the
    /// holder's process.
    pub(super) fn busy(&self, pipeline: &str) -> StateError {
        StateError::Busy {
            pipeline: pipeline.to_string(),
            holder: self.owner.clone(),
            expires_at: self.expires_at,
        }
    }

    pub(super) fn view(&self, scope: Option<&str>, generation: u64) -> LockView {
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

impl StateStore {
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

    /// [`Self::acquire_lock`] on the lock generations in folder `dir`.
    pub(super) async fn acquire_lock_in(
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
    pub(super) async fn create_lock(
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
    pub(super) async fn newest_lock(
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
pub(super) fn lock_dir(pipeline: &str, scope: Option<&str>) -> Result<String, StateError> {
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

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    use super::super::testing::dead_process;
    use super::super::testing::{TTL, store_with_lock};
    use super::*;

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
