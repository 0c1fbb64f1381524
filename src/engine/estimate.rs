//! issue 15 part 4: what a run or a backfill would cost, before it is paid.
//!
//! The windows come from the same planning the drivers use (`core::plan`, and the
//! committed state and backfill ledger, read and never written). The record counts come
//! from probes: one `pageSize=1` search per local day of windows (one per window when a
//! window is longer than a day), whose `total` is the day's record count. A day's count
//! is spread evenly over its windows to count their pages; this is the one place the
//! estimate can be short (a busy hour needs more pages than an even share says), along
//! with retries and token requests, which no probe can foresee.

use crate::core::pipeline::{Kind, Pipeline};
use crate::core::plan::{self, Window};
use crate::engine::extract::{self, child_path};
use crate::engine::run::{Engine, Mode, RunError, WindowError};
use crate::io::api::{ApiUsage, RequestMeter};
use crate::io::obs::metrics::endpoint_label;
use crate::io::state::model::PipelineState;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;

/// A pipeline's estimated cost.
#[derive(Debug, Clone, Default)]
pub struct Estimate {
    pub pipeline: String,
    /// The windows the run would load (for snapshots and references: one).
    pub windows: usize,
    /// The first window's start and the last window's end.
    pub range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Estimated requests per endpoint (label shape, as the run summary names them).
    pub requests: BTreeMap<String, u64>,
    /// The records the probes counted (`None`: the kind is not probed).
    pub records: Option<u64>,
    /// The requests the probes made, per endpoint.
    pub probes: ApiUsage,
}

impl Estimate {
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }
}

/// Pages needed for `records` records at `page_size` a page: an empty window still
/// asks once.
fn pages(records: u64, page_size: u64) -> u64 {
    records.div_ceil(page_size.max(1)).max(1)
}

/// Windows grouped for probing: consecutive windows of one local day (`dt`).
fn probe_groups(grid: &plan::Grid, windows: &[Window]) -> Vec<(Window, usize)> {
    let mut groups: Vec<(Window, usize, chrono::NaiveDate)> = Vec::new();
    for w in windows {
        let dt = grid.dt(w);
        match groups.last_mut() {
            Some((g, n, d)) if *d == dt && g.end == w.start => {
                g.end = w.end;
                *n += 1;
            }
            _ => groups.push((*w, 1, dt)),
        }
    }
    groups.into_iter().map(|(g, n, _)| (g, n)).collect()
}

impl Engine {
    /// The windows `mode` would load for `p` and their estimated requests. Takes no lock
    /// and commits nothing: the state is only read.
    pub async fn estimate(&self, p: &Pipeline, mode: Mode) -> Result<Estimate, RunError> {
        let meter = RequestMeter::default();
        let client = self.client.metered(meter.clone());
        let grid = self.grid(p);
        let now = self.clock.now();
        let mut st = match self.state.load::<PipelineState>(&p.name).await {
            Ok(Some(v)) => v.value,
            // A report or snapshot state of another shape: planned from the start.
            Ok(None) | Err(_) => self.initial_state(p),
        };
        let windows: Vec<Window> = match (p.kind, mode) {
            (Kind::Reference | Kind::Snapshot | Kind::Recordings, _) => {
                vec![grid.window_at(now)]
            }
            // Search, children and report pipelines: planned as the search driver plans
            // (on a copy of the state: the ledger entry a backfill opens is not kept).
            _ => crate::engine::search::plan_tasks(p, &grid, &mut st, mode, now)?
                .0
                .into_iter()
                .map(|task| task.window)
                .collect(),
        };
        let mut est = Estimate {
            pipeline: p.name.clone(),
            windows: windows.len(),
            range: windows
                .first()
                .zip(windows.last())
                .map(|(a, b)| (a.start, b.end)),
            ..Default::default()
        };
        let lister = match p.kind {
            Kind::Search => Some(p),
            Kind::Children => self.parent_of(p)?,
            _ => None,
        };
        let Some(lister) = lister else {
            // Not probed: one request per window (a report's period, a snapshot's pages).
            if !windows.is_empty() {
                est.requests
                    .insert(endpoint_label(&p.endpoint), windows.len() as u64);
            }
            return Ok(est);
        };
        let page_size = u64::from(lister.page_size.max(1));
        let (mut list_pages, mut records) = (0u64, 0u64);
        // issue 15: a child's lookback window that committed a parent digest fetches the
        // children of the parents the digest does not know (and of changed or settling
        // ones, which no probe can see): probed alone, it costs its total less the
        // digest's parents. A backfill fetches every parent's children.
        let digests = match (p.kind, mode) {
            (Kind::Children, Mode::Incremental) => st.parents.clone(),
            _ => Default::default(),
        };
        let (known, windows): (Vec<Window>, Vec<Window>) =
            windows.iter().partition(|w| digests.contains_key(&w.start));
        let mut children = 0u64;
        for w in &known {
            let total = extract::probe_total(&client, lister, w, self.settings.timezone)
                .await
                .map_err(|source| RunError::Window {
                    pipeline: p.name.clone(),
                    window: *w,
                    source: WindowError::Extract(source),
                })?;
            records += total;
            let recorded = digests
                .get(&w.start)
                .and_then(|d| crate::core::parents::Digest::decode(&d.digest).ok())
                .map_or(0, |d| d.len() as u64);
            children += total.saturating_sub(recorded);
        }
        for (group, n) in probe_groups(&grid, &windows) {
            let total = extract::probe_total(&client, lister, &group, self.settings.timezone)
                .await
                .map_err(|source| RunError::Window {
                    pipeline: p.name.clone(),
                    window: group,
                    source: WindowError::Extract(source),
                })?;
            records += total;
            children += total;
            let n = n as u64;
            // The day's total spread evenly: the first `total % n` windows hold one more.
            let (each, extra) = (total / n, total % n);
            list_pages += extra * pages(each + 1, page_size) + (n - extra) * pages(each, page_size);
        }
        est.records = Some(records);
        // A child takes its parents from the parent's committed table (issue 15): it
        // lists no parent page.
        if p.kind == Kind::Search {
            *est.requests
                .entry(endpoint_label(&lister.endpoint))
                .or_default() += list_pages;
        }
        if p.kind == Kind::Children {
            let field = p.parent_field.clone().unwrap_or_default();
            let path = endpoint_label(&child_path(&p.endpoint, &field, "1"));
            *est.requests.entry(path).or_default() += children;
        }
        est.probes = meter.usage();
        Ok(est)
    }
}

/// The time `requests` take at `rps` requests a second.
pub fn duration_at(requests: u64, rps: u32) -> Duration {
    Duration::milliseconds((requests as f64 * 1000.0 / f64::from(rps.max(1))).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_window_still_costs_a_page_and_pages_round_up() {
        assert_eq!(pages(0, 50), 1);
        assert_eq!(pages(50, 50), 1);
        assert_eq!(pages(51, 50), 2);
    }

    #[test]
    fn windows_are_probed_once_per_local_day() {
        let grid = plan::Grid::new(chrono_tz::UTC, 3600);
        let from = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let windows = grid.windows(from, from + Duration::hours(48));
        let groups = probe_groups(&grid, &windows);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].1, 24);
        assert_eq!(groups[1].0.end, from + Duration::hours(48));
    }

    #[test]
    fn time_follows_the_rate_cap() {
        assert_eq!(duration_at(7_400_000, 10).num_hours(), 205);
    }
}
