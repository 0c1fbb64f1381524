//! Range locks: one lock per time range of a pipeline (`crate::engine::shard`), so that
//! sharded backfills of disjoint ranges run beside each other and beside `compact`.

use super::error::{StateError, validate_pipeline};
use super::lock::{Lock, LockView, RANGE_LOCK_DIR, lock_dir};
use super::sequence::StateStore;
use crate::io::state::holder::Liveness;
use chrono::Utc;
use std::time::Duration;

impl StateStore {
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
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    use super::super::testing::{dead_process, store_with_lock};
    #[cfg(target_os = "linux")]
    use crate::io::state::holder::Liveness;

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
}
