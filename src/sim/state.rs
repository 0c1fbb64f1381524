//! The state every handler shares: fixed settings, the data set, tokens, counters, and
//! the two switches a running simulator can change (faults and the simulated "now").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::auth::TokenStore;
use super::config::{Faults, SimConfig};
use super::dataset::Dataset;
use super::stats::StatsRecorder;

#[derive(Debug)]
pub(crate) struct Shared {
    pub seed: u64,
    pub max_page_size: usize,
    pub default_tz: Tz,
    pub dataset: Dataset,
    pub tokens: TokenStore,
    pub stats: StatsRecorder,
    faults: RwLock<Arc<Faults>>,
    now: RwLock<Option<DateTime<Utc>>>,
    data_requests: AtomicU64,
}

/// What the gate resolved for one data request, handed to its handler.
#[derive(Debug, Clone)]
pub(crate) struct RequestCtx {
    /// Zone of local strings (`timezoneid` header or the configured default).
    pub tz: Tz,
    /// The fault switches as they were when the request arrived.
    pub faults: Arc<Faults>,
    /// The simulated now, in ms: only records visible by then are served.
    pub now_ms: i64,
}

impl Shared {
    pub(crate) fn new(config: SimConfig, base_url: &str) -> Self {
        let record_base = format!("{base_url}/callservice/v6/cc-audios/recordings/");
        Self {
            seed: config.seed,
            max_page_size: config.max_page_size.max(1),
            default_tz: config.timezone,
            dataset: Dataset::new(&config, record_base),
            tokens: TokenStore::new(config.app_id, config.app_secret, config.static_token),
            stats: StatsRecorder::default(),
            faults: RwLock::new(Arc::new(config.faults)),
            now: RwLock::new(config.now),
            data_requests: AtomicU64::new(0),
        }
    }

    pub(crate) fn faults(&self) -> Arc<Faults> {
        Arc::clone(&self.faults.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        *self.faults.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(faults);
    }

    /// The simulated now: the fixed instant if one is set, else the real clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.now
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or_else(Utc::now)
    }

    pub(crate) fn set_now(&self, now: Option<DateTime<Utc>>) {
        *self.now.write().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Numbers data requests from 1 in arrival order: the "N" of every-Nth faults.
    pub(crate) fn next_data_request(&self) -> u64 {
        self.data_requests.fetch_add(1, Ordering::Relaxed) + 1
    }
}
