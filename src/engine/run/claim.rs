//! The pipeline locks a run holds, taken all or none and renewed in the background.

use crate::engine::run::{Engine, RunError};
use crate::io::state::store::Lock;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Pipeline locks held together by one run, renewed in the background.
pub struct Claim {
    locks: Arc<tokio::sync::Mutex<Vec<Lock>>>,
    /// Set when a renewal failed: another run may have taken over, so stop committing.
    pub(crate) lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Claim {
    /// Whether a renewal failed, so another process may hold a lock now (issue 4: `compact`).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops renewing and gives every lock up, so the next run need not wait for expiry.
    pub async fn release(self) {
        self.renewer.abort();
        let held: Vec<Lock> = std::mem::take(&mut *self.locks.lock().await);
        for l in held {
            let name = l.pipeline().to_string();
            if let Err(e) = l.release().await {
                tracing::warn!(pipeline = %name, "could not release the lock (it expires by itself): {e}");
            }
        }
    }
}

impl Engine {
    /// Takes the locks of every named pipeline, in name order, all or none, and keeps
    /// them renewed until [`Claim::release`]. Two processes started on the same pipelines
    /// at the same moment therefore meet on the first name: one gets everything and the
    /// other is refused as busy, instead of each taking some pipelines and both failing.
    pub async fn claim(&self, names: &[&str], run_id: &str) -> Result<Claim, RunError> {
        let mut names = names.to_vec();
        names.sort_unstable();
        names.dedup();
        let mut held = Vec::with_capacity(names.len());
        for name in names {
            let taken = self
                .state
                .acquire_lock(name, &format!("{run_id}/{name}"), self.settings.lock_ttl)
                .await;
            match taken {
                Ok(lock) => held.push(lock),
                Err(source) => {
                    for lock in held {
                        if let Err(e) = lock.release().await {
                            tracing::warn!("could not release a lock (it expires by itself): {e}");
                        }
                    }
                    return Err(RunError::State {
                        pipeline: name.to_string(),
                        source,
                    });
                }
            }
        }
        let locks = Arc::new(tokio::sync::Mutex::new(held));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let locks = locks.clone();
            let lost = lost.clone();
            let every = self.settings.lock_ttl / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let mut guard = locks.lock().await;
                    for l in guard.iter_mut() {
                        if let Err(e) = l.renew().await {
                            tracing::error!(pipeline = %l.pipeline(), "lost the pipeline lock: {e}");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        };
        Ok(Claim {
            locks,
            lost,
            renewer,
        })
    }
}
