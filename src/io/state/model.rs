//! What a pipeline's committed state says: the watermark, a ledger of every committed
//! range (so gaps are visible, not only a high-water mark), backfills and the last run.
//! Serialized as versioned JSON by `state::store`; `format` allows migrations.

use crate::core::plan::Window;
use crate::io::api::ApiUsage;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl From<Window> for Span {
    fn from(w: Window) -> Self {
        Span {
            start: w.start,
            end: w.end,
        }
    }
}

/// Sorted, non-overlapping, non-touching spans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ledger(pub Vec<Span>);

impl Ledger {
    pub fn add(&mut self, s: Span) {
        if s.start >= s.end {
            return;
        }
        self.0.push(s);
        self.0.sort();
        let mut merged: Vec<Span> = Vec::with_capacity(self.0.len());
        for s in self.0.drain(..) {
            match merged.last_mut() {
                Some(last) if s.start <= last.end => last.end = last.end.max(s.end),
                _ => merged.push(s),
            }
        }
        self.0 = merged;
    }

    pub fn covers(&self, s: Span) -> bool {
        self.0.iter().any(|c| c.start <= s.start && s.end <= c.end)
    }

    /// Holes between the first committed instant and `until`.
    pub fn gaps(&self, until: DateTime<Utc>) -> Vec<Span> {
        let mut out = Vec::new();
        for pair in self.0.windows(2) {
            if pair[0].end < pair[1].start && pair[0].end < until {
                out.push(Span {
                    start: pair[0].end,
                    end: pair[1].start.min(until),
                });
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Success,
    Failed,
    /// issue 13: never committed; `status` shows a run that is still recorded as running
    /// but holds no live lock (its process crashed or was killed) as interrupted.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    /// "run" or "backfill".
    pub kind: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Outcome,
    pub windows: u64,
    pub rows: u64,
    pub files: u64,
    pub error: Option<String>,
    /// issue 15: the API requests the run made, per endpoint, and the retries among
    /// them (`status --json` shows them). Absent from state written before it: empty.
    #[serde(default)]
    pub api_requests: ApiUsage,
    /// issue 15, `children` pipelines: windows this run left for a later one because the
    /// parent had not committed them yet (`status` says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

/// issue 15: child windows held back until their parent commits them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub parent: String,
    pub windows: u64,
    /// The first such window's start.
    pub from: DateTime<Utc>,
}

impl RunRecord {
    /// The record a run commits before its first window, so `status` shows it running
    /// (and a crash leaves it visible as never ended).
    pub fn running(run_id: &str, kind: &str, started_at: DateTime<Utc>) -> Self {
        Self {
            run_id: run_id.to_string(),
            kind: kind.to_string(),
            started_at,
            ended_at: None,
            outcome: Outcome::Running,
            windows: 0,
            rows: 0,
            files: 0,
            error: None,
            api_requests: ApiUsage::default(),
            waiting: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillState {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub done: Ledger,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl BackfillState {
    pub fn is_open(&self) -> bool {
        self.finished_at.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineState {
    pub format: u32,
    pub pipeline: String,
    /// The grid the ledger was cut on: a change would make old files overlap new ones.
    pub window_secs: u64,
    pub timezone: String,
    /// Everything before it is committed (up to the ledger's gaps before `origin`).
    pub watermark: DateTime<Utc>,
    /// Where incremental loading began.
    pub origin: DateTime<Utc>,
    pub completed: Ledger,
    #[serde(default)]
    pub backfills: Vec<BackfillState>,
    pub last_run: Option<RunRecord>,
    /// issue 4: closed `dt` partitions `compact` has processed and the files it left
    /// there, one entry per partition, by date (`crate::engine::compact`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compacted: Vec<CompactedPartition>,
    /// issue 15, `children` pipelines: per window start, what the window's commit recorded
    /// of its parents (`core::parents::Digest`), so that a lookback fetches only the
    /// children of new, changed or settling parents. Kept for the lookback horizon only.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub parents: std::collections::BTreeMap<DateTime<Utc>, ParentsDigest>,
}

/// issue 15: one committed child window's parent digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentsDigest {
    pub end: DateTime<Utc>,
    /// `core::parents::Digest::encode`: base64 of 14 bytes a parent.
    pub digest: String,
}

/// What `compact` left in one closed partition: the spans of its files afterwards.
/// A later lookback or backfill of a window inside one of them rewrites that file
/// around the window (`sink::merge`), so the record stays true about which spans the
/// files cover even though their rows may be replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactedPartition {
    pub dt: chrono::NaiveDate,
    /// The partition's files after compaction, in order (their names are these spans).
    pub files: Vec<Span>,
    /// How many window files were merged into them by the run that recorded this.
    pub merged_files: u64,
    pub run_id: String,
    pub at: DateTime<Utc>,
}

/// Finished backfills kept in state; open ones are always kept.
pub const KEEP_FINISHED_BACKFILLS: usize = 20;

impl PipelineState {
    /// issue 15: puts a run's API requests on `last_run` (if any).
    pub fn record_requests(&mut self, usage: ApiUsage) {
        if let Some(r) = self.last_run.as_mut() {
            r.api_requests = usage;
        }
    }

    /// Closes `last_run` (if any) now, as a success or with `failure`'s message.
    pub fn close_run(&mut self, failure: Option<String>) {
        if let Some(r) = self.last_run.as_mut() {
            r.ended_at = Some(Utc::now());
            r.outcome = if failure.is_some() {
                Outcome::Failed
            } else {
                Outcome::Success
            };
            r.error = failure;
        }
    }

    /// issue 15: records a committed child window's parent digest, and forgets those no
    /// lookback will load again (ending at or before `horizon`).
    pub fn record_parents(&mut self, w: Window, digest: String, horizon: DateTime<Utc>) {
        self.parents.retain(|_, d| d.end > horizon);
        if w.end > horizon {
            self.parents
                .insert(w.start, ParentsDigest { end: w.end, digest });
        }
    }

    /// Keeps the backfill list short: every open backfill and the
    /// [`KEEP_FINISHED_BACKFILLS`] newest finished ones.
    pub fn trim_backfills(&mut self) {
        let finished = self.backfills.iter().filter(|b| !b.is_open()).count();
        let mut drop_n = finished.saturating_sub(KEEP_FINISHED_BACKFILLS);
        self.backfills.retain(|b| {
            if !b.is_open() && drop_n > 0 {
                drop_n -= 1;
                return false;
            }
            true
        });
    }

    pub fn new(pipeline: &str, window_secs: u64, timezone: &str, start: DateTime<Utc>) -> Self {
        Self {
            format: FORMAT,
            pipeline: pipeline.to_string(),
            window_secs,
            timezone: timezone.to_string(),
            watermark: start,
            origin: start,
            completed: Ledger::default(),
            backfills: Vec::new(),
            last_run: None,
            compacted: Vec::new(),
            parents: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + h * 3600, 0).unwrap()
    }

    #[test]
    fn ledger_merges_and_reports_gaps() {
        let mut l = Ledger::default();
        l.add(Span {
            start: t(0),
            end: t(1),
        });
        l.add(Span {
            start: t(1),
            end: t(2),
        });
        l.add(Span {
            start: t(5),
            end: t(6),
        });
        l.add(Span {
            start: t(3),
            end: t(4),
        });
        assert_eq!(l.0.len(), 3);
        assert!(l.covers(Span {
            start: t(0),
            end: t(2)
        }));
        assert!(!l.covers(Span {
            start: t(1),
            end: t(3)
        }));
        assert_eq!(
            l.gaps(t(10)),
            vec![
                Span {
                    start: t(2),
                    end: t(3)
                },
                Span {
                    start: t(4),
                    end: t(5)
                }
            ]
        );
        l.add(Span {
            start: t(2),
            end: t(5),
        });
        assert_eq!(
            l.0,
            vec![Span {
                start: t(0),
                end: t(6)
            }]
        );
        assert!(l.gaps(t(10)).is_empty());
    }

    /// issue 15: parent digests are kept for windows a lookback may load again, and
    /// state written before them loads without any.
    #[test]
    fn parent_digests_are_kept_for_the_lookback_horizon_only() {
        let mut st = PipelineState::new("p", 3600, "UTC", t(0));
        let w = |h: i64| Window {
            start: t(h),
            end: t(h + 1),
        };
        st.record_parents(w(0), "a".into(), t(0));
        st.record_parents(w(1), "b".into(), t(0));
        assert_eq!(st.parents.len(), 2);
        // The horizon moved past window 0: it is forgotten; a window already past it is
        // not recorded at all.
        st.record_parents(w(2), "c".into(), t(1));
        st.record_parents(w(-5), "old".into(), t(1));
        assert_eq!(
            st.parents.keys().copied().collect::<Vec<_>>(),
            vec![t(1), t(2)]
        );
        let json = serde_json::to_string(&st).unwrap_or_default();
        let back: PipelineState = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.parents, st.parents);
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("parents");
        }
        let old: PipelineState = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        assert!(old.parents.is_empty());
    }

    /// issue 15: a last run recorded before requests were counted still loads, empty.
    #[test]
    fn old_last_runs_load_without_request_counts() -> Result<(), serde_json::Error> {
        let old = r#"{"run_id": "r", "kind": "run", "started_at": "2024-03-02T00:00:00Z",
            "ended_at": null, "outcome": "success", "windows": 1, "rows": 2, "files": 1,
            "error": null}"#;
        let r: RunRecord = serde_json::from_str(old)?;
        assert!(r.api_requests.is_empty());
        let mut st = PipelineState::new("p", 3600, "UTC", t(0));
        st.last_run = Some(r);
        let usage = ApiUsage(
            [(
                "/x".to_string(),
                crate::io::api::EndpointUsage {
                    requests: 3,
                    retries: 1,
                },
            )]
            .into(),
        );
        st.record_requests(usage.clone());
        let back: PipelineState = serde_json::from_str(&serde_json::to_string(&st)?)?;
        assert_eq!(back.last_run.map(|r| r.api_requests), Some(usage));
        Ok(())
    }
}
