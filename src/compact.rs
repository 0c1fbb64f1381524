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

use crate::cli::{self, CliError};
use crate::clock::{FixedClock, SharedClock, SystemClock};
use crate::pipeline::{Kind, Pipeline};
use crate::runner::{Engine, RunError};
use crate::sink::merge::{self, SpanFile};
use crate::sink::{self, FileEncoder, SinkError, WindowFile};
use crate::state::model::{CompactedPartition, PipelineState, Span};
use crate::store::Location;
use crate::timeutil;
use chrono::{DateTime, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::{PutMode, PutOptions, PutPayload};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// A span file of a partition and its size on storage.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sized {
    file: SpanFile,
    bytes: u64,
}

/// Groups a partition's files (sorted by span) into runs whose total size stays under
/// `target`, a run always taking at least one file. Runs of one file are left as they are.
fn plan_groups(files: &[Sized], target: u64) -> Vec<Vec<Sized>> {
    let mut groups: Vec<Vec<Sized>> = Vec::new();
    let mut size = 0u64;
    for f in files {
        match groups.last_mut() {
            Some(g) if size + f.bytes <= target => {
                g.push(f.clone());
                size += f.bytes;
            }
            _ => {
                groups.push(vec![f.clone()]);
                size = f.bytes;
            }
        }
    }
    groups
}

/// The first day that is still open: a day is closed when its local end (the next
/// local midnight) is at or before `limit`, i.e. when it is before `limit`'s local date,
/// and when it is before `before`. Partitions before the returned day are closed.
pub fn first_open_day(tz: chrono_tz::Tz, limit: DateTime<Utc>, before: NaiveDate) -> NaiveDate {
    timeutil::local_date(tz, limit).min(before)
}

/// The `dt` of a relative path `<table>/dt=YYYY-MM-DD/<name>`.
fn partition_of(table: &str, rel: &str) -> Option<NaiveDate> {
    let rest = rel.strip_prefix(table)?.strip_prefix('/')?;
    let (folder, name) = rest.split_once('/')?;
    if name.contains('/') {
        return None;
    }
    NaiveDate::parse_from_str(folder.strip_prefix("dt=")?, "%Y-%m-%d").ok()
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
) -> Result<crate::shard::RenewedLock, CompactError> {
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
            crate::shard::COMPACT_SCOPE,
            &format!("{run_id}/{}/compact", p.name),
            engine.settings.lock_ttl,
        )
        .await
        .map_err(state_err)?;
    let lock = crate::shard::RenewedLock::start(lock, engine.settings.lock_ttl);
    if let Err(e) = crate::shard::exclude(engine, &p.name, crate::shard::COMPACT_SCOPE).await {
        lock.release().await;
        return Err(state_err(e));
    }
    Ok(lock)
}

fn pipeline_for(engine: &Engine, table: &str) -> Result<Pipeline, CompactError> {
    if crate::receive::PushKind::ALL
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
    claim: &crate::runner::Claim,
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
        let merging: Vec<&Vec<Sized>> = groups.iter().filter(|g| g.len() > 1).collect();
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

/// Every span file of the table by partition, sorted by span, with its size.
async fn list_partitions(
    loc: &Location,
    table: &str,
) -> Result<BTreeMap<NaiveDate, Vec<Sized>>, CompactError> {
    let metas: Vec<_> = loc
        .store()
        .list(loc.list_prefix(table).as_ref())
        .try_collect()
        .await
        .map_err(|source| CompactError::Sink {
            table: table.to_string(),
            source: Box::new(SinkError::List {
                path: loc.display(table),
                source,
            }),
        })?;
    let mut out: BTreeMap<NaiveDate, Vec<Sized>> = BTreeMap::new();
    for m in metas {
        let Some(rel) = loc.relative(&m.location) else {
            continue;
        };
        let Some(dt) = partition_of(table, &rel) else {
            continue;
        };
        let Some((start, end)) = m.location.filename().and_then(merge::parse_span) else {
            continue;
        };
        out.entry(dt).or_default().push(Sized {
            file: SpanFile { rel, start, end },
            bytes: m.size,
        });
    }
    for files in out.values_mut() {
        files.sort_by_key(|f| (f.file.start, f.file.end));
    }
    Ok(out)
}

/// Deletes files lying inside another file's span (left by a cut write or a cut S3
/// batch delete: the wider file holds their rows), and returns the others.
async fn drop_superseded(
    loc: &Location,
    table: &str,
    files: Vec<Sized>,
) -> Result<Vec<Sized>, CompactError> {
    let spans: Vec<SpanFile> = files.iter().map(|f| f.file.clone()).collect();
    let stale: Vec<SpanFile> = merge::superseded(&spans).into_iter().cloned().collect();
    if stale.is_empty() {
        return Ok(files);
    }
    for f in &stale {
        tracing::info!(path = %loc.display(&f.rel), "removing a file left inside a wider one by an interrupted write");
    }
    delete_batch(loc, table, stale.iter().map(|f| f.rel.clone()).collect()).await?;
    Ok(files
        .into_iter()
        .filter(|f| !stale.contains(&f.file))
        .collect())
}

/// Reads a run of files (in span order) into one encoded file named by their union.
async fn merge_group(
    loc: &Location,
    p: &Pipeline,
    dt: NaiveDate,
    group: &[Sized],
) -> Result<(String, sink::Encoded), CompactError> {
    let target = WindowFile {
        table: p.table.clone(),
        dt,
        start: group[0].file.start,
        end: group[group.len() - 1].file.end,
    };
    let name = target.relative_path();
    let sink_err = |source| CompactError::Sink {
        table: p.table.clone(),
        source: Box::new(source),
    };
    let encode_err = |e: parquet::errors::ParquetError| CompactError::Sink {
        table: p.table.clone(),
        source: Box::new(SinkError::Encode {
            path: loc.display(&name),
            source: e,
        }),
    };
    let join_err = |e: tokio::task::JoinError| CompactError::Io {
        table: p.table.clone(),
        path: loc.display(&name),
        message: format!("encoding task failed: {e}"),
    };
    let schema = p.schema.arrow.clone();
    let mut encoder = FileEncoder::new(schema.clone()).map_err(encode_err)?;
    for f in group {
        // One input at a time in memory; the encoder holds only compressed pages.
        let batches = merge::read_file(loc, &f.file.rel, &schema)
            .await
            .map_err(sink_err)?;
        encoder = tokio::task::spawn_blocking(move || {
            for b in &batches {
                encoder.write(b)?;
            }
            Ok::<_, parquet::errors::ParquetError>(encoder)
        })
        .await
        .map_err(join_err)?
        .map_err(encode_err)?;
    }
    let encoded = tokio::task::spawn_blocking(move || encoder.finish())
        .await
        .map_err(join_err)?
        .map_err(encode_err)?;
    Ok((name, encoded))
}

type Output = (String, sink::Encoded, Vec<Sized>);

fn io_err(table: &str, path: &Path, e: impl std::fmt::Display) -> CompactError {
    CompactError::Io {
        table: table.to_string(),
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// On a local warehouse: the folder holding the table's partitions and the folder where
/// its partitions are built and retired (`<warehouse>/_compact/<table>`), both under the
/// tenant's partition when tenants are configured (`Location::local_path` places it), so
/// that a tenant's compaction only ever touches its own folders.
fn local_dirs(loc: &Location, table: &str) -> Option<(PathBuf, PathBuf)> {
    let folder = |rel: String| {
        loc.local_path(&rel)
            .and_then(|p| p.parent().map(Path::to_path_buf))
    };
    Some((
        folder(format!("{table}/x"))?,
        folder(format!("{STAGING_DIR}/{table}/x"))?,
    ))
}

fn partition_folder(dt: NaiveDate) -> String {
    format!("dt={}", dt.format("%Y-%m-%d"))
}

/// Puts back a partition a two-rename swap left out, then empties the table's staging
/// folder: what it holds is either half built or already swapped out, and the live
/// partitions are complete either way.
async fn recover_staging(loc: &Location, table: &str) -> Result<(), CompactError> {
    let Some((live, staging)) = local_dirs(loc, table) else {
        return Ok(());
    };
    let table_s = table.to_string();
    tokio::task::spawn_blocking(move || -> Result<(), CompactError> {
        let entries = match std::fs::read_dir(&staging) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&table_s, &staging, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&table_s, &staging, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(folder) = name.strip_suffix(".old") {
                let target = live.join(folder);
                if !target.exists() {
                    tracing::warn!(partition = %target.display(), "restoring a partition an interrupted compaction left out");
                    std::fs::rename(entry.path(), &target)
                        .map_err(|e| io_err(&table_s, &target, e))?;
                }
            }
        }
        std::fs::remove_dir_all(&staging).map_err(|e| io_err(&table_s, &staging, e))
    })
    .await
    .map_err(|e| CompactError::Io {
        table: table.to_string(),
        path: STAGING_DIR.to_string(),
        message: e.to_string(),
    })?
}

/// Builds the new partition in the staging folder and swaps it in. Returns the folder
/// now holding the old files, to delete once readers are done with it.
async fn swap_local(
    (table_dir, staging_parent): (PathBuf, PathBuf),
    table: &str,
    dt: NaiveDate,
    outputs: Vec<Output>,
) -> Result<PathBuf, CompactError> {
    let live = table_dir.join(partition_folder(dt));
    let staged = staging_parent.join(partition_folder(dt));
    let old = staging_parent.join(format!("{}.old", partition_folder(dt)));
    let table = table.to_string();
    tokio::task::spawn_blocking(move || -> Result<PathBuf, CompactError> {
        let err = |path: &Path, e: std::io::Error| io_err(&table, path, e);
        if staged.exists() {
            std::fs::remove_dir_all(&staged).map_err(|e| err(&staged, e))?;
        }
        std::fs::create_dir_all(&staged).map_err(|e| err(&staged, e))?;
        let mut inputs = std::collections::HashSet::new();
        for (rel, encoded, group) in &outputs {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            let path = staged.join(name);
            let mut f = std::fs::File::create(&path).map_err(|e| err(&path, e))?;
            std::io::Write::write_all(&mut f, &encoded.bytes).map_err(|e| err(&path, e))?;
            f.sync_all().map_err(|e| err(&path, e))?;
            for g in group {
                inputs.insert(
                    g.file
                        .rel
                        .rsplit('/')
                        .next()
                        .unwrap_or(&g.file.rel)
                        .to_string(),
                );
            }
        }
        // Everything else in the partition (unmerged files, recordings' MP3s) is kept.
        for entry in std::fs::read_dir(&live).map_err(|e| err(&live, e))? {
            let entry = entry.map_err(|e| err(&live, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if inputs.contains(&name) {
                continue;
            }
            let ty = entry.file_type().map_err(|e| err(&entry.path(), e))?;
            if !ty.is_file() {
                return Err(err(
                    &entry.path(),
                    std::io::Error::other(
                        "unexpected entry (not a file) in a partition; left alone, not compacted",
                    ),
                ));
            }
            let to = staged.join(&name);
            if std::fs::hard_link(entry.path(), &to).is_err() {
                std::fs::copy(entry.path(), &to).map_err(|e| err(&to, e))?;
            }
        }
        sync_dir(&staged);
        match exchange(&live, &staged) {
            Ok(()) => {
                sync_dir(live.parent().unwrap_or(&live));
                sync_dir(&staging_parent);
                Ok(staged)
            }
            Err(e) => {
                tracing::debug!("atomic exchange unavailable ({e}); swapping with two renames");
                std::fs::rename(&live, &old).map_err(|e| err(&live, e))?;
                std::fs::rename(&staged, &live).map_err(|e| err(&live, e))?;
                sync_dir(live.parent().unwrap_or(&live));
                Ok(old)
            }
        }
    })
    .await
    .map_err(|e| CompactError::Io {
        table: String::new(),
        path: STAGING_DIR.to_string(),
        message: e.to_string(),
    })?
}

/// Best effort: makes renames and new entries durable before the next step relies on them.
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Swaps two directories atomically (`renameat2(RENAME_EXCHANGE)`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let b = CString::new(b.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere there is no atomic exchange; the caller falls back to two renames.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no atomic directory exchange on this platform",
    ))
}

async fn remove_dir(table: &str, dir: &Path) -> Result<(), CompactError> {
    let d = dir.to_path_buf();
    let table_s = table.to_string();
    tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&table_s, &d, e)),
    })
    .await
    .map_err(|e| io_err(table, dir, e))?
}

/// S3 (or any non-local store): each merged file with one PUT, then its inputs in one
/// batch delete.
async fn replace_remote(
    loc: &Location,
    table: &str,
    outputs: Vec<Output>,
) -> Result<(), CompactError> {
    for (rel, encoded, group) in outputs {
        loc.store()
            .put_opts(
                &loc.path(&rel),
                PutPayload::from(encoded.bytes),
                PutOptions::from(PutMode::Overwrite),
            )
            .await
            .map_err(|source| CompactError::Sink {
                table: table.to_string(),
                source: Box::new(SinkError::Put {
                    path: loc.display(&rel),
                    source,
                }),
            })?;
        let inputs: Vec<String> = group
            .into_iter()
            .map(|g| g.file.rel)
            .filter(|r| *r != rel)
            .collect();
        delete_batch(loc, table, inputs).await?;
    }
    Ok(())
}

async fn delete_batch(loc: &Location, table: &str, rels: Vec<String>) -> Result<(), CompactError> {
    if rels.is_empty() {
        return Ok(());
    }
    let paths: Vec<object_store::Result<object_store::path::Path>> =
        rels.iter().map(|r| Ok(loc.path(r))).collect();
    let results: Vec<_> = loc
        .store()
        .delete_stream(futures::stream::iter(paths).boxed())
        .collect()
        .await;
    for r in results {
        match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(CompactError::Sink {
                    table: table.to_string(),
                    source: Box::new(SinkError::Delete {
                        path: loc.display(table),
                        source,
                    }),
                });
            }
        }
    }
    Ok(())
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
    crate::state::rebase::commit(&engine.state, &p.name, Some(v.version), &mut st)
        .await
        .map_err(state_err)?;
    Ok(())
}

/// Arguments of the `compact` command.
#[derive(Debug, Clone)]
pub struct Args {
    pub table: String,
    pub before: Option<String>,
    pub now: Option<String>,
    /// Which tenant's partitions, when several are configured.
    pub tenant: Option<String>,
}

/// `sobot-sync compact TABLE [--before DATE]`.
pub async fn run(config: Option<&Path>, args: &Args) -> Result<(), CliError> {
    let settings = crate::tenant::one(
        &crate::settings::Settings::load(config)?,
        args.tenant.as_deref(),
        "compact",
    )?;
    let tz = settings.timezone;
    let before = match &args.before {
        None => None,
        Some(s) => Some(
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|e| {
                CliError::Config(format!("--before {s:?}: not a date YYYY-MM-DD: {e}"))
            })?,
        ),
    };
    let clock: SharedClock = match &args.now {
        None => Arc::new(SystemClock),
        Some(s) => Arc::new(FixedClock(
            timeutil::parse_time(s, tz).map_err(|why| CliError::Config(format!("--now: {why}")))?,
        )),
    };
    let mut settings = settings;
    if settings.credentials().is_err() {
        // compact reads and writes storage only; the engine's API client is never used,
        // so a warehouse host without API credentials can still compact.
        settings.token = Some(crate::secret::Secret::new(String::from(
            "unused-by-compact",
        )));
    }
    let engine = cli::engine(settings, clock)?;
    match compact(&engine, &args.table, before).await {
        Ok(r) => {
            println!(
                "{}: {} closed partitions{}, {} compacted, files {} -> {}, {} rows merged",
                r.table,
                r.partitions,
                r.closed_before
                    .map(|d| format!(" (before {d})"))
                    .unwrap_or_default(),
                r.compacted,
                r.files_before,
                r.files_after,
                r.rows_merged
            );
            Ok(())
        }
        Err(CompactError::Config(m)) => Err(CliError::Config(m)),
        Err(CompactError::Run(e)) if e.is_config() => Err(CliError::Config(e.to_string())),
        Err(e) => Err(CliError::Failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sized(h0: u32, h1: u32, bytes: u64) -> Sized {
        let t = |h: u32| {
            Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(h.into())
        };
        Sized {
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
        let files: Vec<Sized> = (0..6).map(|h| sized(h, h + 1, 40)).collect();
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
