//! What the simulator observed, for tests and benchmarks to assert on: request counts
//! per endpoint and status, peak request rate, and peak concurrency.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A snapshot of the counters (`GET /_sim/stats`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SimStats {
    /// Data requests (everything except the token endpoint and `/_sim/*`).
    pub requests: u64,
    pub token_requests: u64,
    /// `"maincdrs 200"` -> count, by endpoint and HTTP status.
    pub by_endpoint_status: BTreeMap<String, u64>,
    /// The most data requests that arrived within any one second.
    pub max_requests_in_one_second: u64,
    /// The most data requests being served at once.
    pub max_in_flight: u64,
    /// issue 13: `"agent-table static"` -> count: authenticated data requests by endpoint
    /// and token kind (`static`: the configured static token, which stands for an agent
    /// token; `company`: a token from `/tokens/company`).
    #[serde(default)]
    pub by_endpoint_token: BTreeMap<String, u64>,
}

impl SimStats {
    /// issue 13: authenticated requests to `endpoint` with token kind `kind`
    /// (`"static"` or `"company"`).
    pub fn count_token(&self, endpoint: &str, kind: &str) -> u64 {
        self.by_endpoint_token
            .get(&format!("{endpoint} {kind}"))
            .copied()
            .unwrap_or(0)
    }

    /// Requests to `endpoint` (e.g. `"agent-table"`, `"maincdrs"`) with any status.
    pub fn count(&self, endpoint: &str) -> u64 {
        self.by_endpoint_status
            .iter()
            .filter(|(k, _)| k.rsplit_once(' ').is_some_and(|(e, _)| e == endpoint))
            .map(|(_, n)| *n)
            .sum()
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) struct StatsRecorder {
    requests: AtomicU64,
    token_requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    by_endpoint_status: Mutex<HashMap<(&'static str, u16), u64>>,
    by_endpoint_token: Mutex<HashMap<(&'static str, &'static str), u64>>,
    rate: Mutex<RateWindow>,
}

/// Arrival times over the last second: all arrivals (for the peak-rate statistic) and the
/// ones admitted under `max_rps` (for the server-side limit).
#[derive(Debug, Default)]
struct RateWindow {
    arrived: VecDeque<Instant>,
    admitted: VecDeque<Instant>,
    max_arrived: u64,
}

fn prune(q: &mut VecDeque<Instant>, now: Instant) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= SECOND) {
        q.pop_front();
    }
}

/// Keeps the in-flight count right even when a client hangs up mid-request.
#[derive(Debug)]
pub(crate) struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl StatsRecorder {
    /// Counts a data request's arrival and returns whether `max_rps` admits it.
    pub(crate) fn arrive(&self, max_rps: Option<u32>) -> (InFlight<'_>, bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now_in = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now_in, Ordering::Relaxed);
        let now = Instant::now();
        let mut w = self.rate.lock().unwrap_or_else(PoisonError::into_inner);
        prune(&mut w.arrived, now);
        w.arrived.push_back(now);
        w.max_arrived = w.max_arrived.max(w.arrived.len() as u64);
        prune(&mut w.admitted, now);
        let admitted = match max_rps {
            Some(cap) if w.admitted.len() >= cap as usize => false,
            _ => {
                w.admitted.push_back(now);
                true
            }
        };
        (InFlight(&self.in_flight), admitted)
    }

    pub(crate) fn token_request(&self) -> u64 {
        self.token_requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn record(&self, endpoint: &'static str, status: u16) {
        let mut m = self
            .by_endpoint_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *m.entry((endpoint, status)).or_insert(0) += 1;
    }

    pub(crate) fn token_used(&self, endpoint: &'static str, kind: &'static str) {
        let mut m = self
            .by_endpoint_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *m.entry((endpoint, kind)).or_insert(0) += 1;
    }

    pub(crate) fn snapshot(&self) -> SimStats {
        let tokens: BTreeMap<String, u64> = self
            .by_endpoint_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|((e, k), n)| (format!("{e} {k}"), *n))
            .collect();
        let by = self
            .by_endpoint_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let rate = self.rate.lock().unwrap_or_else(PoisonError::into_inner);
        SimStats {
            requests: self.requests.load(Ordering::Relaxed),
            token_requests: self.token_requests.load(Ordering::Relaxed),
            by_endpoint_status: by
                .iter()
                .map(|((e, s), n)| (format!("{e} {s}"), *n))
                .collect(),
            max_requests_in_one_second: rate.max_arrived,
            max_in_flight: self.max_in_flight.load(Ordering::Relaxed),
            by_endpoint_token: tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rate_and_concurrency() {
        let s = StatsRecorder::default();
        let mut admitted = 0;
        let mut guards = Vec::new();
        for _ in 0..5 {
            let (g, ok) = s.arrive(Some(3));
            admitted += usize::from(ok);
            guards.push(g);
        }
        assert_eq!(admitted, 3);
        drop(guards);
        s.record("maincdrs", 200);
        s.record("maincdrs", 200);
        let snap = s.snapshot();
        assert_eq!(snap.requests, 5);
        assert_eq!(snap.max_in_flight, 5);
        assert_eq!(snap.max_requests_in_one_second, 5);
        assert_eq!(snap.by_endpoint_status.get("maincdrs 200"), Some(&2));
        assert_eq!(snap.count("maincdrs"), 2);
        assert_eq!(snap.count("cdrs"), 0);
        assert_eq!(s.in_flight.load(Ordering::Relaxed), 0);
    }
}
