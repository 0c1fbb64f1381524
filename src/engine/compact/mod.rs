//! `compact`: merges the window files of closed `dt` partitions into fewer, larger files.
//!
//! A partition is closed when no incremental or lookback run will write it again: its
//! whole local day ends at or before `watermark - lookback_secs`, and it is before
//! `--before` (default: today). The pipeline's lock is held throughout, so no run of the
//! pipeline writes while files are merged; a backfill later over a compacted day simply
//! rewrites the wider file around its windows (`sink::merge`), as over a backfill's file.
//!
//! Output files keep the span scheme `<start>_<end>.parquet`: a merged file's span runs
//! from its first input's start to its last input's end, so it holds whole windows, and
//! its rows keep their `_window_start`. Consecutive files are merged until their size on
//! storage reaches `SOBOT_SYNC_COMPACT_TARGET_BYTES`.
//!
//! How the swap is made atomic for readers listing `<table>/**/*.parquet`:
//! - Local warehouse: the new partition is built as a folder outside the table,
//!   `<warehouse>/_compact/<table>/dt=X` (merged files written there, every other file of
//!   the partition hard-linked), then exchanged with `<table>/dt=X` in one
//!   `renameat2(RENAME_EXCHANGE)`. Readers see the old folder or the new one, never a
//!   mix. The old files (now in `_compact`) are deleted once a short grace has passed
//!   since the swap, so a listing in progress finishes against a folder that still exists.
//!   Where the exchange is not available (not Linux/glibc, or a filesystem without it)
//!   two renames are used, and for that instant the partition is absent.
//! - S3: one PUT per merged file, then one batch delete of its inputs. Between the two,
//!   a listing sees the merged file and its inputs (those rows twice).
//!
//! Crash safety: the live partition is complete at every instant (old or new). A rerun
//! first restores `dt=X` from `_compact/<table>/dt=X.old` if a two-rename swap was cut
//! between its renames, then deletes whatever `_compact/<table>/` holds (a half-built
//! partition, or old files already swapped out), and on S3 deletes inputs lying inside a
//! merged file's span (a cut batch delete), exactly as the sink does before any write.
//! Each partition is recorded in state (`PipelineState::compacted`) after its swap; a
//! rerun finds a swapped but unrecorded partition already compact and records it.

mod local;
mod merge;
mod plan;
mod s3;

pub use local::exchange;
use local::{local_dirs, recover_staging, remove_dir, swap_local};
use merge::merge_group;
pub use plan::first_open_day;
use plan::{SizedFile, list_partitions, plan_groups};
use s3::{drop_superseded, replace_remote};

use crate::core::pipeline::{Kind, Pipeline};
use crate::core::timeutil;
use crate::engine::run::{Engine, RunError};
use crate::io::sink::SinkError;
use crate::io::state::model::{CompactedPartition, PipelineState, Span};
use chrono::{NaiveDate, Utc};
use std::path::{Path, PathBuf};

/// The folder, under the warehouse, where new partitions are built and old ones retired.
pub const STAGING_DIR: &str = "_compact";

/// How long retired partitions stay before deletion: a reader that opened the old folder
/// just before the swap finishes listing it meanwhile.
const RETIRE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Bad usage or a table that cannot be compacted (exit 2).
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Run(Box<RunError>),
    #[error("compact {table}: {source}")]
    Sink {
        table: String,
        #[source]
        source: Box<SinkError>,
    },
    #[error("compact {table}: {path}: {message}")]
    Io {
        table: String,
        path: String,
        message: String,
    },
    #[error("compact {table}: the pipeline lock of {pipeline} was lost; stopped (rerun compact)")]
    LockLost { table: String, pipeline: String },
}

impl From<RunError> for CompactError {
    fn from(e: RunError) -> Self {
        CompactError::Run(Box::new(e))
    }
}

fn io_err(table: &str, path: &Path, e: impl std::fmt::Display) -> CompactError {
    CompactError::Io {
        table: table.to_string(),
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// What one `compact` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactReport {
    pub table: String,
    pub pipeline: String,
    /// Closed partitions looked at.
    pub partitions: u64,
    /// Partitions whose files were merged.
    pub compacted: u64,
    pub files_before: u64,
    pub files_after: u64,
    /// Rows in the merged files.
    pub rows_merged: u64,
    /// Partitions from this date on are still open (`None`: nothing is closed).
    pub closed_before: Option<NaiveDate>,
}

/// Compacts the closed partitions of `table` before `before` (default: today in
/// `SOBOT_TIMEZONE`).
pub async fn compact(
    engine: &Engine,
    table: &str,
    before: Option<NaiveDate>,
) -> Result<CompactReport, CompactError> {
    let p = pipeline_for(engine, table)?;
    let run_id = Engine::new_run_id();
    let claim = engine.claim(&[p.name.as_str()], &run_id).await?;
    // The pipeline lock keeps out runs and plain backfills; shards of a sharded backfill
    // take only range locks, so they are kept out by compaction's own range lock.
    let result = match exclude_shards(engine, &p, &run_id).await {
        Ok(range) => {
            let r = compact_locked(engine, &p, before, &run_id, &claim, &range.lost).await;
            range.release().await;
            r
        }
        Err(e) => Err(e),
    };
    claim.release().await;
    result
}

/// Takes compaction's range lock of the pipeline and makes sure no shard of a sharded
/// backfill holds one (it could be writing a day file into a partition being swapped).
async fn exclude_shards(
    engine: &Engine,
    p: &Pipeline,
    run_id: &str,
) -> Result<crate::engine::shard::RenewedLock, CompactError> {
    let state_err = |source| {
        CompactError::Run(Box::new(RunError::State {
            pipeline: p.name.clone(),
            source,
        }))
    };
    let lock = engine
        .state
        .acquire_range_lock(
            &p.name,
            crate::engine::shard::COMPACT_SCOPE,
            &format!("{run_id}/{}/compact", p.name),
            engine.settings.lock_ttl,
        )
        .await
        .map_err(state_err)?;
    let lock = crate::engine::shard::RenewedLock::start(lock, engine.settings.lock_ttl);
    if let Err(e) =
        crate::engine::shard::exclude(engine, &p.name, crate::engine::shard::COMPACT_SCOPE).await
    {
        lock.release().await;
        return Err(state_err(e));
    }
    Ok(lock)
}

fn pipeline_for(engine: &Engine, table: &str) -> Result<Pipeline, CompactError> {
    if crate::core::push::PushKind::ALL
        .iter()
        .any(|k| k.table() == table)
    {
        // `receive` writes any partition a late push belongs to, at any time, and takes
        // no pipeline lock: a partition swap could lose a file it writes meanwhile.
        return Err(CompactError::Config(format!(
            "table {table} is written by receive, which compact cannot keep out of a partition, so compact does not merge it; for fewer, larger files raise SOBOT_SYNC_RECEIVE_FLUSH_SECS and SOBOT_SYNC_RECEIVE_FLUSH_ROWS"
        )));
    }
    let p = engine
        .catalog
        .pipelines
        .values()
        .find(|p| p.table == table)
        .ok_or_else(|| {
            let known: Vec<&str> = engine
                .catalog
                .pipelines
                .values()
                .map(|p| p.table.as_str())
                .collect();
            CompactError::Config(format!(
                "unknown table {table:?}; defined: {}",
                known.join(", ")
            ))
        })?;
    match p.kind {
        Kind::Search | Kind::Children | Kind::Snapshot | Kind::Recordings => Ok(p.clone()),
        Kind::Report => Err(CompactError::Config(format!(
            "table {table} is a report table: it is already written as one file per day (or per week or month period), so there is nothing to compact"
        ))),
        Kind::Reference => Err(CompactError::Config(format!(
            "table {table} holds one current file that every run replaces; there is nothing to compact"
        ))),
    }
}

async fn compact_locked(
    engine: &Engine,
    p: &Pipeline,
    before: Option<NaiveDate>,
    run_id: &str,
    claim: &crate::engine::run::claim::Claim,
    range_lost: &std::sync::atomic::AtomicBool,
) -> Result<CompactReport, CompactError> {
    let lost = || claim.is_lost() || range_lost.load(std::sync::atomic::Ordering::SeqCst);
    let tz = engine.settings.timezone;
    let table = p.table.clone();
    let state_err = |source| {
        CompactError::Run(Box::new(RunError::State {
            pipeline: p.name.clone(),
            source,
        }))
    };
    let mut report = CompactReport {
        table: table.clone(),
        pipeline: p.name.clone(),
        ..Default::default()
    };
    let loc = &engine.warehouse;
    recover_staging(loc, &table).await?;
    let Some(st) = engine
        .state
        .load::<PipelineState>(&p.name)
        .await
        .map_err(state_err)?
    else {
        tracing::info!(pipeline = %p.name, "no state yet: no partition is closed");
        return Ok(report);
    };
    let before = before.unwrap_or_else(|| timeutil::local_date(tz, engine.clock.now()));
    let limit = st.value.watermark - chrono::Duration::seconds(p.lookback_secs as i64);
    let closed_before = first_open_day(tz, limit, before);
    report.closed_before = Some(closed_before);

    let partitions = list_partitions(loc, &table).await?;
    // Old partitions swapped out, with when; deleted once the grace has passed, so disk
    // use stays near one partition's worth above the table's size.
    let mut retired: Vec<(PathBuf, std::time::Instant)> = Vec::new();
    for (dt, files) in partitions.range(..closed_before) {
        if lost() {
            return Err(CompactError::LockLost {
                table,
                pipeline: p.name.clone(),
            });
        }
        report.partitions += 1;
        let files = drop_superseded(loc, &table, files.clone()).await?;
        report.files_before += files.len() as u64;
        let groups = plan_groups(&files, engine.settings.compact_target_bytes);
        report.files_after += groups.len() as u64;
        let merging: Vec<&Vec<SizedFile>> = groups.iter().filter(|g| g.len() > 1).collect();
        let merged_inputs: u64 = merging.iter().map(|g| g.len() as u64).sum();
        if !merging.is_empty() {
            let mut outputs = Vec::new();
            for g in &merging {
                let (name, encoded) = merge_group(loc, p, *dt, g).await?;
                report.rows_merged += encoded.rows as u64;
                outputs.push((name, encoded, (*g).clone()));
            }
            // The merge may have taken a while: make sure no other process took the
            // lock (and may be writing this partition) before replacing its files.
            if lost() {
                return Err(CompactError::LockLost {
                    table,
                    pipeline: p.name.clone(),
                });
            }
            match local_dirs(loc, &table) {
                Some(dirs) => {
                    let old = swap_local(dirs, &table, *dt, outputs).await?;
                    retired.push((old, std::time::Instant::now()));
                }
                None => replace_remote(loc, &table, outputs).await?,
            }
            report.compacted += 1;
            tracing::info!(table = %table, dt = %dt, files_before = files.len(), files_after = groups.len(), "partition compacted");
        }
        let spans: Vec<Span> = groups
            .iter()
            .map(|g| Span {
                start: g[0].file.start,
                end: g[g.len() - 1].file.end,
            })
            .collect();
        record(engine, p, *dt, spans, merged_inputs, run_id).await?;
        while let Some((dir, at)) = retired.first().cloned() {
            if at.elapsed() < RETIRE_GRACE {
                break;
            }
            remove_dir(&table, &dir).await?;
            retired.remove(0);
        }
    }
    if let Some((_, last)) = retired.last() {
        tokio::time::sleep(RETIRE_GRACE.saturating_sub(last.elapsed())).await;
    }
    let cleaned = !retired.is_empty() || report.compacted > 0;
    for (dir, _) in retired {
        remove_dir(&table, &dir).await?;
    }
    if cleaned && let (Some(root), Some((_, staging))) = (loc.local_dir(), local_dirs(loc, &table))
    {
        // Leave no empty folders behind; a folder another compaction uses stays.
        let _ = std::fs::remove_dir(&staging);
        if let Some(parent) = staging.parent()
            && parent != root.join(STAGING_DIR)
        {
            let _ = std::fs::remove_dir(parent);
        }
        let _ = std::fs::remove_dir(root.join(STAGING_DIR));
    }
    Ok(report)
}

/// Records a partition's files in state, replacing an earlier record of the same day.
async fn record(
    engine: &Engine,
    p: &Pipeline,
    dt: NaiveDate,
    files: Vec<Span>,
    merged_files: u64,
    run_id: &str,
) -> Result<(), CompactError> {
    let state_err = |source| {
        CompactError::Run(Box::new(RunError::State {
            pipeline: p.name.clone(),
            source,
        }))
    };
    let Some(v) = engine
        .state
        .load::<PipelineState>(&p.name)
        .await
        .map_err(state_err)?
    else {
        return Ok(());
    };
    let mut st = v.value;
    if merged_files == 0 && st.compacted.iter().any(|c| c.dt == dt && c.files == files) {
        return Ok(());
    }
    st.compacted.retain(|c| c.dt != dt);
    st.compacted.push(CompactedPartition {
        dt,
        files,
        merged_files,
        run_id: run_id.to_string(),
        at: Utc::now(),
    });
    st.compacted.sort_by_key(|c| c.dt);
    // A shard of a sharded backfill may commit meanwhile (it does not take the pipeline
    // lock): re-apply on top of its commit instead of failing.
    crate::io::state::rebase::commit(&engine.state, &p.name, Some(v.version), &mut st)
        .await
        .map_err(state_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::plan::partition_of;
    use super::*;
    use crate::io::sink::merge::SpanFile;
    use chrono::{DateTime, TimeZone};

    fn sized(h0: u32, h1: u32, bytes: u64) -> SizedFile {
        let t = |h: u32| {
            Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(h.into())
        };
        SizedFile {
            file: SpanFile {
                rel: format!("t/dt=2024-03-01/{h0}"),
                start: t(h0),
                end: t(h1),
            },
            bytes,
        }
    }

    #[test]
    fn groups_stay_under_the_target_and_take_at_least_one_file() {
        let files: Vec<SizedFile> = (0..6).map(|h| sized(h, h + 1, 40)).collect();
        let g = plan_groups(&files, 100);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 2]);
        let g = plan_groups(&files, 1_000);
        assert_eq!(g.len(), 1);
        let big = vec![sized(0, 1, 500), sized(1, 2, 10), sized(2, 3, 10)];
        let g = plan_groups(&big, 100);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn a_day_is_closed_once_its_end_is_at_or_before_the_limit_and_before_the_cut() {
        let tz = chrono_tz::Asia::Singapore;
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let far = d("2030-01-01");
        // Limit exactly at local midnight of 03-03: 03-02 and earlier are closed.
        assert_eq!(
            first_open_day(tz, at("2024-03-03T00:00:00+08:00"), far),
            d("2024-03-03")
        );
        // One hour later: the same (03-03 is still open).
        assert_eq!(
            first_open_day(tz, at("2024-03-03T01:00:00+08:00"), far),
            d("2024-03-03")
        );
        // One hour earlier: 03-02 is still open.
        assert_eq!(
            first_open_day(tz, at("2024-03-02T23:00:00+08:00"), far),
            d("2024-03-02")
        );
        assert_eq!(
            first_open_day(tz, at("2024-03-03T00:00:00+08:00"), d("2024-03-02")),
            d("2024-03-02")
        );
    }

    #[test]
    fn partitions_are_read_from_paths() {
        let d = NaiveDate::from_ymd_opt(2024, 3, 1);
        assert_eq!(partition_of("talks", "talks/dt=2024-03-01/a.parquet"), d);
        assert_eq!(
            partition_of("talks", "talks_x/dt=2024-03-01/a.parquet"),
            None
        );
        assert_eq!(
            partition_of("talks", "talks/dt=2024-03-01/sub/a.parquet"),
            None
        );
        assert_eq!(partition_of("talks", "talks/other/a.parquet"), None);
    }

    #[test]
    fn exchange_swaps_two_folders() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(a.join("x"), b"a").unwrap();
        std::fs::write(b.join("y"), b"b").unwrap();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            exchange(&a, &b).unwrap();
            assert!(a.join("y").exists() && b.join("x").exists());
            assert!(!a.join("x").exists());
        } else {
            assert!(exchange(&a, &b).is_err());
        }
    }
}
