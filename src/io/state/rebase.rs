//! Commits that survive another writer's commit of the same pipeline by re-reading the
//! newest state and re-applying this run's change on top of it (optimistic concurrency,
//! as object_store's `PutMode::Update` loop and delta-rs' commit retry).
//!
//! Two kinds of writer share a pipeline's state since sharded backfills (`crate::engine::shard`):
//! the holder of the pipeline lock (an incremental run or a plain backfill), and shards,
//! each holding only the lock of its own range. Every change any of them makes is
//! additive, which is what makes re-applying safe:
//! - the ledger of completed spans only grows, and a span is only added after its file
//!   was written, so the union of two writers' ledgers is true;
//! - the watermark only moves forward, and only the pipeline lock's holder moves it;
//! - a backfill record belongs to the one run working on its range (the range lock, or the
//!   pipeline lock), and its `done` ledger only grows;
//! - a compaction record (`compacted`, one per `dt`) is written only by `compact` under the
//!   pipeline lock; the newer record of a date wins.

use crate::io::state::model::{BackfillState, PipelineState};
use crate::io::state::store::{StateError, StateStore};
use std::time::Duration;

/// Re-reads and re-applies at most this often per commit. N shards committing once per
/// day file collide rarely more than N - 1 times in a row; a jittered pause between
/// attempts spreads them out.
const ATTEMPTS: usize = 32;

/// Commits `st` as the version after `expected`. When another writer committed first,
/// merges `st` onto the newest state ([`rebase`]), keeps the merge in `st` and tries
/// again as the version after the newest. Other errors are returned as they are.
pub async fn commit(
    store: &StateStore,
    pipeline: &str,
    expected: Option<u64>,
    st: &mut PipelineState,
) -> Result<u64, StateError> {
    let mut expected = expected;
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        match store.commit(pipeline, expected, st).await {
            Ok(v) => return Ok(v),
            Err(e @ StateError::Conflict { .. }) => {
                last = Some(e);
                let latest = store.load::<PipelineState>(pipeline).await?;
                if let Some(latest) = latest {
                    if latest.value.window_secs != st.window_secs
                        || latest.value.timezone != st.timezone
                    {
                        // Another grid: merging would make files overlap; let it fail.
                        break;
                    }
                    rebase(st, &latest.value);
                    expected = Some(latest.version);
                } else {
                    expected = None;
                }
                tracing::debug!(
                    pipeline,
                    attempt,
                    "state changed by another writer; re-applying this run's change"
                );
                let pause = rand::random_range(5..50u64) * (attempt as u64 + 1).min(8);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(StateError::Conflict {
        pipeline: pipeline.to_string(),
        expected,
    }))
}

/// Merges this writer's state `mine` with the newest committed state `latest`, in place.
/// `mine` keeps its last run and the order of its backfills (a run holds its backfill by
/// index); ledgers are united; the watermark is the later one; backfills only `latest`
/// knows are appended; of two compaction records of one date the later one is kept.
pub fn rebase(mine: &mut PipelineState, latest: &PipelineState) {
    for theirs in &latest.compacted {
        match mine.compacted.iter_mut().find(|c| c.dt == theirs.dt) {
            Some(c) if c.at < theirs.at => *c = theirs.clone(),
            Some(_) => {}
            None => mine.compacted.push(theirs.clone()),
        }
    }
    mine.compacted.sort_by_key(|c| c.dt);
    // issue 15: a window's parent digest is written by the run that committed the
    // window; this writer's own digests are its newest, the other's fill in the rest.
    for (start, d) in &latest.parents {
        mine.parents.entry(*start).or_insert_with(|| d.clone());
    }
    for s in &latest.completed.0 {
        mine.completed.add(*s);
    }
    mine.watermark = mine.watermark.max(latest.watermark);
    mine.origin = mine.origin.min(latest.origin);
    for theirs in &latest.backfills {
        match mine
            .backfills
            .iter_mut()
            .find(|b| b.from == theirs.from && b.to == theirs.to)
        {
            Some(b) => merge_backfill(b, theirs),
            None => mine.backfills.push(theirs.clone()),
        }
    }
}

fn merge_backfill(mine: &mut BackfillState, theirs: &BackfillState) {
    for s in &theirs.done.0 {
        mine.done.add(*s);
    }
    mine.started_at = mine.started_at.min(theirs.started_at);
    mine.updated_at = mine.updated_at.max(theirs.updated_at);
    if mine.finished_at.is_none() {
        mine.finished_at = theirs.finished_at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::state::model::{CompactedPartition, Ledger, Span};
    use chrono::{DateTime, Utc};

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + h * 3600, 0).unwrap()
    }

    fn span(a: i64, b: i64) -> Span {
        Span {
            start: t(a),
            end: t(b),
        }
    }

    fn backfill(from: i64, to: i64, done: &[(i64, i64)]) -> BackfillState {
        let mut l = Ledger::default();
        for &(a, b) in done {
            l.add(span(a, b));
        }
        BackfillState {
            from: t(from),
            to: t(to),
            done: l,
            started_at: t(0),
            updated_at: t(0),
            finished_at: None,
        }
    }

    #[test]
    fn rebase_unites_ledgers_and_keeps_the_order_of_own_backfills() {
        let base = PipelineState::new("talks", 3600, "UTC", t(100));
        // Shard A (range 0..24) has done 0..5; shard B (24..48) committed 24..30 meanwhile,
        // and the live run moved the watermark to 102.
        let mut mine = base.clone();
        mine.backfills.push(backfill(0, 24, &[(0, 5)]));
        mine.completed.add(span(0, 5));
        let mut latest = base.clone();
        latest.backfills.push(backfill(24, 48, &[(24, 30)]));
        latest.completed.add(span(24, 30));
        latest.completed.add(span(100, 102));
        latest.watermark = t(102);
        rebase(&mut mine, &latest);
        assert_eq!(
            mine.completed.0,
            vec![span(0, 5), span(24, 30), span(100, 102)]
        );
        assert_eq!(mine.watermark, t(102));
        assert_eq!(mine.backfills.len(), 2);
        assert_eq!(
            (mine.backfills[0].from, mine.backfills[0].to),
            (t(0), t(24))
        );
        assert_eq!(mine.backfills[1].done.0, vec![span(24, 30)]);

        // The same record on both sides: done ledgers united, a finish kept.
        let mut theirs = latest.clone();
        let mut b = backfill(0, 24, &[(5, 9)]);
        b.finished_at = Some(t(50));
        theirs.backfills = vec![b];
        rebase(&mut mine, &theirs);
        assert_eq!(mine.backfills[0].done.0, vec![span(0, 9)]);
        assert_eq!(mine.backfills[0].finished_at, Some(t(50)));
        // A watermark never moves back.
        theirs.watermark = t(90);
        rebase(&mut mine, &theirs);
        assert_eq!(mine.watermark, t(102));
    }

    fn compacted(day: u32, at: i64) -> CompactedPartition {
        CompactedPartition {
            dt: chrono::NaiveDate::from_ymd_opt(2024, 3, day).unwrap(),
            files: vec![span(0, 24)],
            merged_files: 24,
            run_id: format!("compact-{day}-{at}"),
            at: t(at),
        }
    }

    /// A shard committing after `compact` must not erase its records: without them a
    /// later lookback of a compacted day would not know the day's files are wider.
    #[test]
    fn rebase_keeps_compaction_records_of_either_side() {
        let base = PipelineState::new("talks", 3600, "UTC", t(100));
        let mut mine = base.clone();
        mine.compacted = vec![compacted(2, 10)];
        let mut latest = base.clone();
        latest.compacted = vec![compacted(1, 5), compacted(2, 20), compacted(3, 5)];
        rebase(&mut mine, &latest);
        let ids: Vec<&str> = mine.compacted.iter().map(|c| c.run_id.as_str()).collect();
        assert_eq!(ids, ["compact-1-5", "compact-2-20", "compact-3-5"]);
        // The newer record of a date stays when it is ours.
        let mut older = base;
        older.compacted = vec![compacted(2, 1)];
        rebase(&mut mine, &older);
        assert_eq!(mine.compacted[1].run_id, "compact-2-20");
    }
}
