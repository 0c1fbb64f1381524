//! Each client's request statistics, shared by the transport that counts requests and
//! the retry loop that counts retries, so neither has to reach into the other.

use super::ClientStats;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters behind [`ClientStats`]; relaxed atomics, they are only statistics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) token_refreshes: AtomicU64,
    /// The `tenant` label of this client's Prometheus series (none without tenants).
    pub(crate) tenant: Option<String>,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ClientStats {
        ClientStats {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            token_refreshes: self.token_refreshes.load(Ordering::Relaxed),
        }
    }
}
