//! What the lock tests share: a store in memory holding a lock left by a given process.

use super::lock::lock_dir;
use super::sequence::{StateStore, seq_name};
use crate::io::state::holder::HolderProcess;
use crate::io::store::Location;
use chrono::Utc;
use std::time::Duration;

pub(super) const TTL: Duration = Duration::from_secs(120);

/// issue 13: a store in memory with one lock generation written by hand, as a
/// process described by `holder` (or an older version, without one) left it.
pub(super) async fn store_with_lock(
    holder: Option<HolderProcess>,
    scope: Option<&str>,
) -> StateStore {
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
pub(super) fn dead_process() -> HolderProcess {
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
