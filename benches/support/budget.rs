//! Requests per endpoint, seen from both ends: what the simulator served between two
//! snapshots of its counters, and what each run recorded of itself (`status --json`,
//! `last_run.api_requests`). Both are keyed by the simulator's endpoint names.

use super::BenchError;
use sobot_sync::io::api::ApiUsage;
use sobot_sync::sim::SimStats;
use std::collections::{BTreeMap, BTreeSet};

/// The simulator's name of the talk list (`POST …/maincdrs/_search`).
pub const TALK_LIST: &str = "maincdrs";
/// The simulator's name of the party request (`GET …/maincdrs/{id}/partycdrs`).
pub const PARTY: &str = "partycdrs";
/// The simulator's name of the token endpoint, kept apart from the data requests.
pub const TOKEN: &str = "token";

/// Requests by the simulator's endpoint name.
pub type ByEndpoint = BTreeMap<String, u64>;

/// The simulator's name of a client endpoint label (`src/sim/gate.rs`); labels of other
/// endpoints keep their label, so they still count and still show in a mismatch.
fn sim_name(label: &str) -> String {
    if label == "/tokens/company" {
        TOKEN.into()
    } else if label.ends_with("/partycdrs") {
        PARTY.into()
    } else if label.contains("/maincdrs/") {
        TALK_LIST.into()
    } else {
        label.into()
    }
}

/// Requests the simulator served between two snapshots, any status, token included.
pub fn served(before: &SimStats, after: &SimStats) -> ByEndpoint {
    let names: BTreeSet<&str> = after
        .by_endpoint_status
        .keys()
        .filter_map(|k| k.rsplit_once(' ').map(|(e, _)| e))
        .collect();
    names
        .into_iter()
        .map(|e| (e.to_string(), after.count(e) - before.count(e)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A run's own count of its requests, by the simulator's endpoint names.
pub fn by_sim_name(usage: &ApiUsage) -> ByEndpoint {
    let mut out = ByEndpoint::new();
    for (label, u) in &usage.0 {
        *out.entry(sim_name(label)).or_insert(0) += u.requests;
    }
    out.retain(|_, n| *n > 0);
    out
}

/// Adds `b` into `a`.
pub fn add(a: &mut ByEndpoint, b: &ByEndpoint) {
    for (e, n) in b {
        *a.entry(e.clone()).or_insert(0) += n;
    }
}

pub fn get(counts: &ByEndpoint, endpoint: &str) -> u64 {
    counts.get(endpoint).copied().unwrap_or(0)
}

/// Every request but the token's.
pub fn data_requests(counts: &ByEndpoint) -> u64 {
    counts
        .iter()
        .filter(|(e, _)| e.as_str() != TOKEN)
        .map(|(_, n)| n)
        .sum()
}

/// What `status --json` says of one pipeline's last run.
#[derive(Debug, Clone, Default)]
pub struct LastRun {
    pub requests: ByEndpoint,
    pub watermark: Option<String>,
}

/// Reads `pipeline`'s row of `status --json` output.
pub fn last_run(status_json: &str, pipeline: &str) -> Result<LastRun, BenchError> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(status_json)
        .map_err(|e| BenchError::Setup(format!("status --json is not a list of rows: {e}")))?;
    let row = rows
        .iter()
        .find(|r| r["pipeline"] == pipeline)
        .ok_or_else(|| BenchError::Setup(format!("status --json has no row for {pipeline}")))?;
    let usage: ApiUsage = match row["last_run"].get("api_requests") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            BenchError::Setup(format!("{pipeline}: last_run.api_requests {v}: {e}"))
        })?,
        None => ApiUsage::default(),
    };
    Ok(LastRun {
        requests: by_sim_name(&usage),
        watermark: row["watermark"].as_str().map(str::to_string),
    })
}
