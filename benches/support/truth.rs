//! What the simulator holds for talks and parties over a committed range at an instant,
//! and the fewest requests that can bring a warehouse up to it. Taken from the ground
//! truth, not from answers, so the bench judges the engine by something it did not make.

use super::plan::pages;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sobot_sync::core::plan::Window;
use sobot_sync::sim::Dataset;
use std::collections::BTreeSet;

/// The API fields the keys come from: each table's key column's field (`callID`, `partyId`).
#[derive(Debug, Clone, Copy)]
pub struct KeyFields<'a> {
    pub talk: &'a str,
    pub party: &'a str,
}

/// The calls and legs the API shows at `now` for talks starting in a range.
#[derive(Debug, Clone, Default)]
pub struct Visible {
    pub talks: BTreeSet<String>,
    pub parties: BTreeSet<String>,
}

fn key(v: &Value, field: &str) -> Option<String> {
    match &v[field] {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A talk shows in searches once it has ended (the simulator without lateness faults),
/// and its legs with it.
fn shown(talk: &Value, now: DateTime<Utc>) -> bool {
    talk["endTime"]
        .as_i64()
        .is_some_and(|end| end <= now.timestamp_millis())
}

/// The visible talks with startTime in `[from, to)` and their legs.
pub fn visible(
    ds: &Dataset,
    fields: KeyFields,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Visible {
    let mut out = Visible::default();
    for talk in ds.talks(from, to).iter().filter(|t| shown(t, now)) {
        let Some(call) = key(talk, fields.talk) else {
            continue;
        };
        out.parties.extend(
            ds.parties(&call)
                .iter()
                .filter_map(|p| key(p, fields.party)),
        );
        out.talks.insert(call);
    }
    out
}

/// Talk-list pages a run listing `windows` at `now` cannot do without: each window's
/// visible talks in pages of `page_size`, one page even for an empty window.
pub fn list_pages(ds: &Dataset, windows: &[Window], now: DateTime<Utc>, page_size: u32) -> u64 {
    windows
        .iter()
        .map(|w| {
            let n = ds
                .talks(w.start, w.end)
                .iter()
                .filter(|t| shown(t, now))
                .count() as u64;
            pages(n, page_size)
        })
        .sum()
}

/// How a table compares with the truth: keys it lacks, keys it should not have, and
/// rows repeating a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Diff {
    pub missing: u64,
    pub extra: u64,
    pub duplicated: u64,
}

impl Diff {
    pub fn of(table: &super::warehouse::Keys, truth: &BTreeSet<String>) -> Self {
        Self {
            missing: truth.difference(&table.keys).count() as u64,
            extra: table.keys.difference(truth).count() as u64,
            duplicated: table.duplicates,
        }
    }

    pub fn exact(&self) -> bool {
        *self == Self::default()
    }
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} missing, {} extra, {} duplicated",
            self.missing, self.extra, self.duplicated
        )
    }
}
