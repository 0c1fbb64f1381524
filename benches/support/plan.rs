//! The requests a backfill of a range makes, derived from the simulator's ground truth
//! rather than from parsing answers, so the replay can issue them with bodies unread.

use chrono::{DateTime, Utc};
use sobot_sync::core::plan::{Grid, Window};
use sobot_sync::sim::Dataset;

/// One window of the range: how many talks it holds and which calls have legs to fetch.
#[derive(Debug, Clone)]
pub struct WindowPlan {
    pub window: Window,
    pub talks: u64,
    /// Trimmed call IDs of the window's talks, in the order the search serves them.
    pub call_ids: Vec<String>,
    pub parties: u64,
}

#[derive(Debug, Clone, Default)]
pub struct RangePlan {
    pub windows: Vec<WindowPlan>,
}

impl RangePlan {
    /// The windows `grid` cuts `[from, to)` into, with their ground-truth contents.
    pub fn new(dataset: &Dataset, grid: &Grid, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        let windows = grid
            .windows(from, to)
            .into_iter()
            .map(|window| {
                let talks = dataset.talks(window.start, window.end);
                let call_ids: Vec<String> = talks
                    .iter()
                    .filter_map(|t| t["callID"].as_str().map(|s| s.trim().to_string()))
                    .collect();
                let parties = call_ids
                    .iter()
                    .map(|id| dataset.parties(id).len() as u64)
                    .sum();
                WindowPlan {
                    window,
                    talks: talks.len() as u64,
                    call_ids,
                    parties,
                }
            })
            .collect();
        Self { windows }
    }

    pub fn talks(&self) -> u64 {
        self.windows.iter().map(|w| w.talks).sum()
    }

    pub fn parties(&self) -> u64 {
        self.windows.iter().map(|w| w.parties).sum()
    }

    /// Search pages a complete pass needs: one even for an empty window, since the
    /// total is only known from the first page.
    pub fn search_requests(&self, page_size: u32) -> u64 {
        self.windows.iter().map(|w| pages(w.talks, page_size)).sum()
    }

    pub fn child_requests(&self) -> u64 {
        self.windows.iter().map(|w| w.call_ids.len() as u64).sum()
    }
}

/// Pages of `size` needed to read `n` records, at least one.
pub fn pages(n: u64, size: u32) -> u64 {
    n.div_ceil(u64::from(size.max(1))).max(1)
}
