//! Sharded backfill: `backfill PIPELINE --from --to --shard I/N` (or `--shards N` with the
//! index from `JOB_COMPLETION_INDEX`, as a Kubernetes indexed Job sets it) loads the I-th
//! of N contiguous sub-ranges of `[from, to)`, so that N processes load a long range at
//! once.
//!
//! Why this is safe while every shard and the live incremental run write the same table
//! and the same state:
//! - **Files**: the sub-ranges are cut at local midnights, so two shards never write into
//!   the same `dt` partition (a backfill writes a day file; two shards sharing a day would
//!   replace each other's file). The whole range must end before the incremental run's
//!   reach (its lookback before the watermark, and everything after), so no shard writes
//!   a partition the live run writes.
//! - **Locks**: a shard does not take the pipeline lock (all but one shard would be
//!   busy); it takes the lock of its own sub-range (`StateStore::acquire_range_lock`),
//!   which keeps out only a second process on the same shard (a retried pod whose
//!   predecessor still runs).
//! - **State**: every writer's commit re-reads and re-applies its change on a version
//!   conflict (`state::rebase`). A shard adds ledger spans and its own backfill record
//!   (keyed by its sub-range, so a rerun of the same shard resumes where it stopped) and
//!   never moves the watermark.
//!
//! Only `search` and `children` pipelines can be sharded: reports, reference lists,
//! snapshots and recordings have drivers of their own that rely on the pipeline lock.

use crate::core::pipeline::{Kind, Pipeline};
use crate::core::timeutil;
use crate::engine::run::{Engine, Mode, Report, RunError};
use crate::io::state::model::PipelineState;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Environment variable a Kubernetes indexed Job sets to the pod's index (0-based).
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// More shards than this is a typo, not a plan: each one is a process with its own
/// rate cap.
pub const MAX_SHARDS: u32 = 1000;

/// Which shard this process runs: `index` of `count`, from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// From `--shard I/N`, or `--shards N` plus the job index (`JOB_COMPLETION_INDEX`).
    /// Errors name the flag or variable and what is wrong with it.
    pub fn from_args(
        shard: Option<&str>,
        shards: Option<&str>,
        job_index: Option<&str>,
    ) -> Result<Shard, String> {
        let (index, count) = match (shard, shards) {
            (Some(_), Some(_)) => return Err("give --shard I/N or --shards N, not both".into()),
            (None, None) => return Err("no shard given (--shard I/N or --shards N)".into()),
            (Some(spec), None) => {
                let (i, n) = spec.split_once('/').ok_or_else(|| {
                    format!("--shard {spec:?}: expected I/N, e.g. 0/3 (I counts from 0)")
                })?;
                (
                    parse_number(i, &format!("--shard {spec:?}: index"))?,
                    parse_number(n, &format!("--shard {spec:?}: count"))?,
                )
            }
            (None, Some(n)) => {
                let count = parse_number(n, &format!("--shards {n:?}"))?;
                let index = job_index.ok_or_else(|| {
                    format!(
                        "--shards needs {INDEX_ENV} (set by a Kubernetes indexed Job) to say which shard this is; or give --shard I/N"
                    )
                })?;
                (
                    parse_number(index, &format!("{INDEX_ENV}={index:?}"))?,
                    count,
                )
            }
        };
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "shard count {count} is out of range: use 1 to {MAX_SHARDS}"
            ));
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is out of range for {count} shards: use 0 to {}",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

fn parse_number(s: &str, what: &str) -> Result<u32, String> {
    s.trim()
        .parse::<u32>()
        .map_err(|_| format!("{what}: not a whole number"))
}

/// The sub-range of `[from, to)` that `shard` loads: the local days the range touches
/// (in `tz`), split into `shard.count` runs of consecutive days as even as possible; the
/// cuts between shards are local midnights, the outer ends are `from` and `to` as given.
/// `None` when there are fewer days than shards and this one has none.
pub fn split(
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    shard: Shard,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if from >= to {
        return None;
    }
    let first = timeutil::local_date(tz, from);
    let last = timeutil::local_date(tz, to - Duration::milliseconds(1));
    let days: Vec<NaiveDate> = first.iter_days().take_while(|d| *d <= last).collect();
    let n = days.len() as u64;
    let (count, index) = (u64::from(shard.count), u64::from(shard.index));
    let a = (index * n / count) as usize;
    let b = ((index + 1) * n / count) as usize;
    if a >= b {
        return None;
    }
    let start = if a == 0 {
        from
    } else {
        timeutil::local_midnight(tz, days[a])
    };
    let end = if b == days.len() {
        to
    } else {
        timeutil::local_midnight(tz, days[b])
    };
    Some((start, end))
}

/// What one shard did: its sub-range and the run's report, or `None` for a shard that
/// had no day of the range.
#[derive(Debug)]
pub struct ShardReport {
    pub shard: Shard,
    pub range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub report: Option<Report>,
}

/// Checks the whole range (so every shard of a job refuses alike, before any writes),
/// then loads this shard's sub-range under its range lock.
pub async fn run(
    engine: &Engine,
    p: &Pipeline,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    shard: Shard,
) -> Result<ShardReport, RunError> {
    let config = |message: String| RunError::Config {
        pipeline: p.name.clone(),
        message,
    };
    if !matches!(p.kind, Kind::Search | Kind::Children) {
        return Err(config(format!(
            "a sharded backfill loads search and children pipelines only, and {} is of another kind; run backfill without --shard/--shards",
            p.name
        )));
    }
    if from >= to {
        return Err(config(format!(
            "backfill range is empty: --from {} is not before --to {}",
            from.to_rfc3339(),
            to.to_rfc3339()
        )));
    }
    let grid = engine.grid(p);
    let (from, to) = (grid.floor(from), grid.ceil(to));
    let state_err = |source| RunError::State {
        pipeline: p.name.clone(),
        source,
    };
    let st = match engine
        .state
        .load::<PipelineState>(&p.name)
        .await
        .map_err(state_err)?
    {
        Some(v) => v.value,
        None => engine.initial_state(p),
    };
    // The live run rewrites the windows from `floor(watermark - lookback)` on (and loads
    // everything after the watermark): a shard writing a day file there could replace
    // the live run's files, or be replaced by them.
    let reach = grid.floor(st.watermark - Duration::seconds(p.lookback_secs as i64));
    if to > reach {
        return Err(config(format!(
            "sharded backfill --to {} reaches into the incremental run's range, which starts at {} (lookback_secs {} before the watermark {}); end the range at or before {}, or load the rest with backfill without --shard (it takes the pipeline lock)",
            to.to_rfc3339(),
            reach.to_rfc3339(),
            p.lookback_secs,
            st.watermark.to_rfc3339(),
            reach.to_rfc3339()
        )));
    }
    let Some((sub_from, sub_to)) = split(engine.settings.timezone, from, to, shard) else {
        return Ok(ShardReport {
            shard,
            range: None,
            report: None,
        });
    };
    let run_id = Engine::new_run_id();
    let scope = format!(
        "{}_{}",
        sub_from.format("%Y%m%dT%H%M%SZ"),
        sub_to.format("%Y%m%dT%H%M%SZ")
    );
    let lock = engine
        .state
        .acquire_range_lock(
            &p.name,
            &scope,
            &format!("{run_id}/{}/shard-{shard}", p.name),
            engine.settings.lock_ttl,
        )
        .await
        .map_err(state_err)?;
    tracing::info!(pipeline = %p.name, %shard, from = %sub_from.to_rfc3339(), to = %sub_to.to_rfc3339(), "shard of a sharded backfill");
    // Renewed in the background like the pipeline lock (`engine::run::claim`); the
    // run stops committing once a renewal fails.
    let lock = RenewedLock::start(lock, engine.settings.lock_ttl);
    if let Err(e) = exclude(engine, &p.name, &scope).await {
        lock.release().await;
        return Err(state_err(e));
    }
    let result = engine
        .run_locked(
            p,
            Mode::Backfill {
                from: sub_from,
                to: sub_to,
            },
            &run_id,
            &lock.lost,
        )
        .await;
    lock.release().await;
    Ok(ShardReport {
        shard,
        range: Some((sub_from, sub_to)),
        report: Some(result?),
    })
}

/// The range-lock scope `compact` holds while it rewrites a pipeline's partitions. A
/// shard writing a day file into a partition being swapped would lose that file with the
/// old folder, so the two never work on one pipeline at once (see [`exclude`]).
pub const COMPACT_SCOPE: &str = "compact";

/// Refuses to go on (`Busy`) while the other side of the shard/compact exclusion holds
/// its range lock: for a shard, `compact`; for `compact` (`own` = [`COMPACT_SCOPE`]), any
/// shard. Called after taking one's own range lock, so of two starting together at
/// least one sees the other and steps back.
pub async fn exclude(
    engine: &Engine,
    pipeline: &str,
    own: &str,
) -> Result<(), crate::io::state::store::StateError> {
    let compacting = own == COMPACT_SCOPE;
    for (scope, busy) in engine.state.held_range_locks(pipeline).await? {
        if scope != own && (compacting || scope == COMPACT_SCOPE) {
            return Err(busy);
        }
    }
    Ok(())
}

/// A range lock renewed in the background every third of its TTL until released;
/// `lost` turns true when a renewal fails (another process may have taken over), and
/// the holder must stop committing.
pub struct RenewedLock {
    pub lost: Arc<AtomicBool>,
    stop: tokio::sync::oneshot::Sender<()>,
    renewer: tokio::task::JoinHandle<crate::io::state::store::Lock>,
}

impl RenewedLock {
    pub fn start(mut lock: crate::io::state::store::Lock, ttl: std::time::Duration) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let renewer = {
            let lost = lost.clone();
            let every = ttl / 3;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => return lock,
                        _ = tokio::time::sleep(every) => {}
                    }
                    if let Err(e) = lock.renew().await {
                        tracing::error!(pipeline = %lock.pipeline(), "lost the range lock: {e}");
                        lost.store(true, Ordering::SeqCst);
                        return lock;
                    }
                }
            })
        };
        Self {
            lost,
            stop,
            renewer,
        }
    }

    /// Stops renewing and releases the lock (a lost one is left to expire).
    pub async fn release(self) {
        let _ = self.stop.send(());
        match self.renewer.await {
            Ok(lock) if !self.lost.load(Ordering::SeqCst) => {
                let pipeline = lock.pipeline().to_string();
                if let Err(e) = lock.release().await {
                    tracing::warn!(pipeline = %pipeline, "could not release the range lock (it expires by itself): {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("range lock renewer stopped: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn shard(index: u32, count: u32) -> Shard {
        Shard { index, count }
    }

    #[test]
    fn shard_arguments() {
        assert_eq!(Shard::from_args(Some("1/3"), None, None), Ok(shard(1, 3)));
        assert_eq!(
            Shard::from_args(None, Some("4"), Some("3")),
            Ok(shard(3, 4))
        );
        for (s, n, idx, needle) in [
            (Some("3/3"), None, None, "out of range"),
            (Some("1"), None, None, "expected I/N"),
            (Some("a/3"), None, None, "index"),
            (Some("0/0"), None, None, "1 to"),
            (None, Some("3"), None, INDEX_ENV),
            (None, Some("3"), Some("x"), INDEX_ENV),
            (Some("0/3"), Some("3"), None, "not both"),
        ] {
            let err = Shard::from_args(s, n, idx).unwrap_err();
            assert!(err.contains(needle), "{s:?} {n:?} {idx:?}: {err}");
        }
    }

    /// The shards' sub-ranges are contiguous, cover the range exactly, and every cut is
    /// a local midnight, so no two shards share a local day.
    #[test]
    fn split_covers_the_range_in_whole_local_days() {
        for tz in [
            chrono_tz::Asia::Singapore,
            chrono_tz::America::New_York,
            chrono_tz::America::Sao_Paulo,
        ] {
            for (from, to) in [
                ("2024-03-01T05:00:00Z", "2024-03-17T13:00:00Z"),
                ("2018-10-30T00:00:00Z", "2018-11-09T00:00:00Z"), // Sao Paulo DST at midnight
                ("2024-11-01T00:00:00Z", "2024-11-05T00:00:00Z"),
            ] {
                let (from, to) = (t(from), t(to));
                for n in 1..=20 {
                    let parts: Vec<_> = (0..n)
                        .filter_map(|i| split(tz, from, to, shard(i, n)))
                        .collect();
                    assert_eq!(parts.first().unwrap().0, from);
                    assert_eq!(parts.last().unwrap().1, to);
                    for pair in parts.windows(2) {
                        assert_eq!(pair[0].1, pair[1].0, "contiguous");
                        let cut = pair[0].1;
                        let date = timeutil::local_date(tz, cut);
                        assert_eq!(timeutil::local_midnight(tz, date), cut, "{tz} {cut}");
                    }
                    let mut days = std::collections::BTreeSet::new();
                    for (a, b) in &parts {
                        assert!(a < b);
                        let (d0, d1) = (
                            timeutil::local_date(tz, *a),
                            timeutil::local_date(tz, *b - Duration::milliseconds(1)),
                        );
                        for d in d0.iter_days().take_while(|d| *d <= d1) {
                            assert!(days.insert(d), "{tz}: day {d} in two shards");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn more_shards_than_days_leaves_some_empty() {
        let tz = chrono_tz::Asia::Singapore;
        let (from, to) = (
            t("2024-03-01T00:00:00+08:00"),
            t("2024-03-03T00:00:00+08:00"),
        );
        let parts: Vec<_> = (0..5).map(|i| split(tz, from, to, shard(i, 5))).collect();
        assert_eq!(parts.iter().flatten().count(), 2);
        assert_eq!(split(tz, to, from, shard(0, 1)), None);
    }
}
