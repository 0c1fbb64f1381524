//! `sobot-sync unlock PIPELINE [--force] [--range SCOPE]` (issue 13), like Terraform's
//! `force-unlock`: releases a lock left behind, so the next run need not wait for its
//! lease to expire.
//!
//! A lock whose holder process is known to be gone (same host and boot, and no process
//! with the recorded pid and start time) is released without `--force`; runs take such
//! a lock over by themselves too. A lock whose lease is still fresh and whose holder may
//! be alive (it runs, or it is on another host, or an older version wrote the lock) is
//! released only with `--force`; without it the command refuses and exits 1, as a run
//! refused as busy does. Exit 2 is kept for bad usage (an unknown pipeline or scope).
//!
//! Without `--range` the pipeline lock is released, which runs, reports, snapshots and
//! plain backfills take. Range locks (one per shard of a sharded backfill, and `compact`)
//! are listed and left alone; `--range SCOPE` releases one of them instead.

use crate::app::settings::Settings;
use crate::core::error::CommandError;
use crate::io::state::holder::Liveness;
use crate::io::state::store::{LockView, StateError, StateStore, Unlock};
use chrono::Utc;
use std::path::Path;

/// The command line of `unlock`.
#[derive(Debug, Clone)]
pub struct Args {
    pub pipeline: String,
    pub force: bool,
    /// A range lock's scope (`compact`, or a shard's `<from>_<to>`) instead of the
    /// pipeline lock.
    pub range: Option<String>,
    pub tenant: Option<String>,
}

pub async fn run(config: Option<&Path>, args: &Args) -> Result<(), CommandError> {
    let settings =
        crate::app::tenant::one(&Settings::load(config)?, args.tenant.as_deref(), "unlock")?;
    let (_, state) = crate::app::setup::locations(&settings)?;
    let label = crate::app::tenant::label(settings.tenant.as_deref());
    let name = &args.pipeline;
    let what = match &args.range {
        Some(scope) => format!("{label}range lock {scope} of pipeline {name}"),
        None => format!("{label}lock of pipeline {name}"),
    };
    let outcome = state
        .unlock(name, args.range.as_deref(), args.force)
        .await
        .map_err(|e| state_error(&label, e))?;
    let result = match outcome {
        Unlock::NeverLocked => {
            known_pipeline(&settings, name)?;
            println!(
                "{what}: never taken (nothing under {}); nothing to release",
                state.location().url()
            );
            Ok(())
        }
        Unlock::NotHeld(v) => {
            let how = if v.released {
                "already released".to_string()
            } else {
                format!("its lease expired at {}", v.expires_at.to_rfc3339())
            };
            println!("{what}: not held ({how}); last holder {}", v.shown_holder());
            Ok(())
        }
        Unlock::Released { was, forced } => {
            let why = if forced {
                "forced; if that run is still alive it stops at its next lock renewal, without committing further"
            } else {
                "its holder's process no longer exists"
            };
            println!(
                "{what}: released; it was held by {} until {} ({why})",
                was.shown_holder(),
                was.expires_at.to_rfc3339()
            );
            Ok(())
        }
        Unlock::Refused(v) => Err(CommandError::Failed(format!(
            "{what} is held by {} until {} and {}; not released. Make sure that run is gone, then use --force (or wait for the lease to expire)",
            v.shown_holder(),
            v.expires_at.to_rfc3339(),
            match v.liveness {
                Liveness::Alive => "that process is running",
                _ =>
                    "whether that process still runs cannot be told from here (another host, or a lock written by an older version)",
            }
        ))),
    };
    if args.range.is_none() {
        list_range_locks(&state, name, &label).await;
    }
    result
}

/// Range locks are not touched without `--range`; say which are held, so that a user
/// who meant one of them knows its scope.
async fn list_range_locks(state: &StateStore, name: &str, label: &str) {
    let views: Vec<LockView> = match state.range_lock_views(name).await {
        Ok(views) => views,
        Err(e) => {
            tracing::warn!(pipeline = %name, "cannot list range locks: {e}");
            return;
        }
    };
    let now = Utc::now();
    for v in views.iter().filter(|v| v.is_held(now)) {
        println!(
            "{label}range lock {} of pipeline {name}: held by {} until {} (left alone; release it with --range {})",
            v.scope.as_deref().unwrap_or("?"),
            v.shown_holder(),
            v.expires_at.to_rfc3339(),
            v.scope.as_deref().unwrap_or("?"),
        );
    }
}

/// A pipeline that was never locked may be a typo: say so when the definitions load
/// and do not name it. Definitions that do not load do not stop `unlock`.
fn known_pipeline(settings: &Settings, name: &str) -> Result<(), CommandError> {
    let Ok(catalog) = crate::app::setup::load_catalog(settings) else {
        return Ok(());
    };
    if catalog.get(name).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = catalog.pipelines.keys().map(String::as_str).collect();
    Err(CommandError::Config(format!(
        "unknown pipeline {name:?}; defined: {}",
        known.join(", ")
    )))
}

fn state_error(label: &str, e: StateError) -> CommandError {
    match e {
        StateError::InvalidPipeline { .. } => CommandError::Config(format!("{label}{e}")),
        e => CommandError::Failed(format!("{label}{e}")),
    }
}
