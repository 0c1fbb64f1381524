//! Seeing and breaking locks by hand (issue 13: `status` shows a lock, `unlock` releases
//! one whose run is gone, like Terraform's `force-unlock`).

use super::error::StateError;
use super::lock::{LockRecord, LockView, lock_dir};
use super::sequence::{LOCK_ATTEMPTS, StateStore};
use crate::io::state::holder::Liveness;
use chrono::Utc;

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

impl StateStore {
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
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    use super::super::testing::dead_process;
    use super::super::testing::{TTL, store_with_lock};
    use super::*;
    use crate::io::state::holder::HolderProcess;

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
}
