//! issue 15: the request budget of one run. The client is shared by every pipeline of a
//! tenant, so its own counters ([`super::ClientStats`]) cannot say which run spent
//! what; a run hands its client a [`RequestMeter`] ([`super::ApiClient::metered`]),
//! and every attempt made through that handle (token requests, pages, child requests,
//! downloads, retries) is counted on it, by endpoint shape.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Requests to one endpoint: every HTTP attempt, and how many of them were retries
/// (attempts after the first of a logical request), so `requests - retries` is the
/// number of logical requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointUsage {
    pub requests: u64,
    pub retries: u64,
}

/// Requests per endpoint label (`io::obs::metrics::endpoint_label`: ids folded into
/// `{id}`, so a run of 20,000 party requests is one entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiUsage(pub BTreeMap<String, EndpointUsage>);

impl ApiUsage {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every endpoint together.
    pub fn total(&self) -> EndpointUsage {
        self.0
            .values()
            .fold(EndpointUsage::default(), |a, u| EndpointUsage {
                requests: a.requests + u.requests,
                retries: a.retries + u.retries,
            })
    }

    /// The share of all requests that were retries, 0 when there were none.
    pub fn retry_share(&self) -> f64 {
        let t = self.total();
        if t.requests == 0 {
            0.0
        } else {
            t.retries as f64 / t.requests as f64
        }
    }
}

/// A run's counter, shared by the clones of its client handle (spawned window tasks and
/// prefetches included). Cloning shares the counts.
#[derive(Debug, Clone, Default)]
pub struct RequestMeter {
    counts: Arc<Mutex<ApiUsage>>,
}

impl RequestMeter {
    /// One HTTP attempt to `endpoint` (a path; folded into its label here).
    pub(crate) fn request(&self, endpoint: &str) {
        self.add(endpoint, 1, 0);
    }

    /// The attempt about to be made to `endpoint` repeats one that failed.
    pub(crate) fn retry(&self, endpoint: &str) {
        self.add(endpoint, 0, 1);
    }

    fn add(&self, endpoint: &str, requests: u64, retries: u64) {
        let label = crate::io::obs::metrics::endpoint_label(endpoint);
        // Never held across an await; a panic elsewhere leaves counts worth reading.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let e = counts.0.entry(label).or_default();
        e.requests += requests;
        e.retries += retries;
    }

    /// The counts so far.
    pub fn usage(&self) -> ApiUsage {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fold_ids_and_add_up() {
        let m = RequestMeter::default();
        let shared = m.clone();
        m.request("/a/maincdrs/abc123/partycdrs");
        shared.request("/a/maincdrs/def456/partycdrs");
        shared.retry("/a/maincdrs/def456/partycdrs");
        m.request("/tokens/company");
        let u = m.usage();
        assert_eq!(
            u.0.get("/a/maincdrs/{id}/partycdrs"),
            Some(&EndpointUsage {
                requests: 2,
                retries: 1
            })
        );
        assert_eq!(
            u.total(),
            EndpointUsage {
                requests: 3,
                retries: 1
            }
        );
        assert!((u.retry_share() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(ApiUsage::default().retry_share(), 0.0);
        let json = serde_json::to_string(&u).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"/a/maincdrs/{id}/partycdrs":{"requests":2,"retries":1},"/tokens/company":{"requests":1,"retries":0}}"#
        );
    }
}
