//! The backfill entries of a pipeline's state (`PipelineState::backfills`): one entry per
//! `--from`/`--to` range (after rounding to the grid), the windows it has done, and when
//! it finished, so that `status` lists it and a rerun of the same range resumes. Every
//! runner keeps them through here; report runs decide "finished" themselves, because
//! their range is cut in periods rather than on a `Grid`.

use crate::core::plan::{Grid, Window};
use crate::io::state::model::{BackfillState, Ledger, PipelineState, Span};
use chrono::{DateTime, Utc};

/// The entry of `[from, to)`, added if new: its index and the windows already done.
pub(crate) fn open(
    st: &mut PipelineState,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> (usize, Ledger) {
    let idx = match st
        .backfills
        .iter()
        .position(|b| b.from == from && b.to == to)
    {
        Some(i) => i,
        None => {
            let now = Utc::now();
            st.backfills.push(BackfillState {
                from,
                to,
                done: Ledger::default(),
                started_at: now,
                updated_at: now,
                finished_at: None,
            });
            st.backfills.len() - 1
        }
    };
    (idx, st.backfills[idx].done.clone())
}

/// Records window `w` of entry `idx` as done (its files are written).
pub(crate) fn done(st: &mut PipelineState, idx: usize, w: Window) {
    if let Some(b) = st.backfills.get_mut(idx) {
        b.done.add(Span::from(w));
        b.updated_at = Utc::now();
    }
}

/// At the end of a run: marks entry `idx` finished when the run succeeded and every
/// window of its range is done, then drops the oldest finished entries beyond
/// [`KEEP_FINISHED_BACKFILLS`].
pub(crate) fn close(st: &mut PipelineState, idx: usize, grid: &Grid, succeeded: bool) {
    if let Some(b) = st.backfills.get_mut(idx)
        && succeeded
        && grid
            .windows(b.from, b.to)
            .iter()
            .all(|w| b.done.covers(Span::from(*w)))
    {
        b.finished_at = Some(Utc::now());
    }
    st.trim_backfills();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::state::model::KEEP_FINISHED_BACKFILLS;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, h, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn entries_resume_finish_and_stay_few() {
        let grid = Grid::new(chrono_tz::UTC, 3600);
        let mut st = PipelineState::new("recordings", 3600, "UTC", t(0));
        let (i, done) = open(&mut st, t(0), t(3));
        assert!(done.0.is_empty());
        done_window(&mut st, i, 0);
        close(&mut st, i, &grid, false);
        assert!(st.backfills[i].is_open());
        // The same range again: the same entry, with its done window.
        let (j, done) = open(&mut st, t(0), t(3));
        assert_eq!(j, i);
        assert!(done.covers(Span {
            start: t(0),
            end: t(1)
        }));
        done_window(&mut st, j, 1);
        close(&mut st, j, &grid, true);
        assert!(st.backfills[j].is_open(), "window 2 is not done");
        done_window(&mut st, j, 2);
        close(&mut st, j, &grid, true);
        assert!(!st.backfills[j].is_open());
        for k in 0..25 {
            let (i, _) = open(
                &mut st,
                t(k % 3),
                t(k % 3) + chrono::Duration::minutes(i64::from(k) + 1),
            );
            st.backfills[i].finished_at = Some(Utc::now());
        }
        let (i, _) = open(&mut st, t(5), t(6));
        close(&mut st, i, &grid, false);
        assert_eq!(
            st.backfills.iter().filter(|b| !b.is_open()).count(),
            KEEP_FINISHED_BACKFILLS
        );
        assert_eq!(st.backfills.iter().filter(|b| b.is_open()).count(), 1);
    }

    fn done_window(st: &mut PipelineState, idx: usize, h: u32) {
        done(
            st,
            idx,
            Window {
                start: t(h),
                end: t(h + 1),
            },
        );
    }
}
