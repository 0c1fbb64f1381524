//! `recordings`: the MP3 of every talk with a `recordUrl`, stored in the object store.
//!
//! Source: the talks table's own Parquet files, not the API. Only windows that the
//! parent (talks) pipeline has committed are read, so a window's list of calls is
//! exactly what talks loaded, and no talk search is repeated. Each call's recording
//! goes to `recordings/dt=YYYY-MM-DD/<call_id>.mp3` (the call's local start date),
//! written whole with one put, and the window's rows (call_id, start_time, size_bytes,
//! sha256, content_type, object_path, downloaded_at) to the window's file of the
//! `recordings` table, which a rerun replaces: the table stays unique by call_id.
//!
//! - Already stored: a recording whose object exists is not downloaded again; its row
//!   is taken over from the window's previous table file (or, if the object was stored
//!   but its row never written, computed from the stored object).
//! - Failures: the window's downloads all run (up to `child_concurrency` at once); the
//!   ones that worked are stored and listed in the table, but a window with any failed
//!   download is not committed. The run stops there with an error naming the window
//!   and the call, the watermark stays at its start, and the next run retries it
//!   (downloading only what is still missing). Nothing is dropped silently.
//! - Windows of talks' ledger before its first load (talks never loaded them) are
//!   passed over; windows talks has not committed yet wait for it.
//! - issue 13: a recording is fetched through the API document's recordings endpoint
//!   on the API host, `GET <base>/callservice/v6/cc-audios/recordings/{id}`, with the
//!   id read from `recordUrl` (`ApiClient::recording`); the `recordUrl`'s own host is
//!   never contacted, so the token goes to no host the settings do not name. A talk
//!   whose `recordUrl` holds no readable id cannot be fetched by any rerun: it is logged
//!   with its call id, counted in the run's summary (`record_url_without_id`) and in
//!   `sobot_sync_records_skipped_total`, and the window goes on without it.

use super::{finish, load_state, lock_lost, state_err, to_batch};
use crate::core::pipeline::Pipeline;
use crate::core::plan::{self, Window};
use crate::engine::extract::ExtractError;
use crate::engine::run::{Driver, Engine, Mode, Report, RunError, WindowError};
use crate::io::sink::{self, SinkError};
use crate::io::state::backfills;
use crate::io::state::model::{PipelineState, RunRecord, Span};
use crate::io::store::Location;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{ArrowPrimitiveType, Int64Type, TimestampMillisecondType};
use bytes::Bytes;
use chrono::{Duration, Utc};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

/// The parent's field holding the recording's URL.
const URL_FIELD: &str = "recordUrl";

/// Where a call's recording is stored, relative to the warehouse. Characters other
/// than letters, digits, `.`, `_` and `-` in the call id become `_`, so the key is safe
/// on every store and file system; such a name also gets `-` and 8 hex digits of the
/// id's SHA-256, so that two ids differing only there (`a/b`, `a_b`) never share an
/// object (the second would be taken for already stored).
pub fn object_path(table: &str, dt: chrono::NaiveDate, call_id: &str) -> String {
    let id = call_id.trim();
    let mut safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.starts_with('.') {
        // Not a hidden file, nor `.` or `..`.
        safe.replace_range(..1, "_");
    }
    if safe != id || safe.is_empty() {
        safe.push('-');
        safe.push_str(&hex::encode(Sha256::digest(id.as_bytes()))[..8]);
    }
    format!("{}/{safe}.mp3", crate::core::layout::partition(table, dt))
}

/// A call of the parent's window that has a recording.
#[derive(Debug, Clone)]
struct Call {
    call_id: String,
    start_ms: i64,
    url: String,
}

/// A stored recording: one row of the table.
#[derive(Debug, Clone)]
struct Stored {
    call_id: String,
    start_ms: i64,
    size: i64,
    sha256: String,
    content_type: Option<String>,
    object_path: String,
    downloaded_at_ms: i64,
}

impl Stored {
    fn record(&self) -> Map<String, Value> {
        let v = json!({
            "callID": self.call_id,
            "startTime": self.start_ms,
            "sizeBytes": self.size,
            "sha256": self.sha256,
            "contentType": self.content_type,
            "objectPath": self.object_path,
            "downloadedAt": self.downloaded_at_ms,
        });
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

/// One call's row and whether it was downloaded now, or why it is not stored.
type CallOutcome = Result<(Stored, bool), CallFailure>;

/// Why one call's recording is not stored.
enum CallFailure {
    Download(crate::io::api::ApiError),
    Store(SinkError),
}

pub async fn run(
    engine: &Engine,
    p: &Pipeline,
    mode: Mode,
    run_id: &str,
    lost: &AtomicBool,
) -> Result<Report, RunError> {
    let config = |message: String| RunError::Config {
        pipeline: p.name.clone(),
        message,
    };
    let parent_name = p
        .parent
        .clone()
        .ok_or_else(|| config("no parent pipeline".into()))?;
    let parent = engine
        .catalog
        .get(&parent_name)
        .ok_or_else(|| config(format!("parent pipeline {parent_name:?} is not defined")))?;
    let url_col = parent
        .schema
        .by_field
        .get(URL_FIELD)
        .map(|&i| parent.schema.columns[i].name.clone())
        .ok_or_else(|| {
            config(format!(
                "the parent's schema ({}) has no {URL_FIELD} column",
                parent.table
            ))
        })?;
    if parent.schema.key.len() != 1 {
        return Err(config(format!(
            "the parent's table {} must have a single-column key (the call id)",
            parent.table
        )));
    }
    let grid = engine.grid(p);
    let start = grid.floor(engine.settings.start.unwrap_or(p.initial_start));
    let (mut version, mut st) = load_state(engine, p, start).await?;
    let talks: Option<PipelineState> = engine
        .state
        .load::<PipelineState>(&parent.name)
        .await
        .map_err(|source| state_err(p, source))?
        .map(|v| v.value);
    let now = engine.clock.now();

    // (window, moves the watermark)
    let mut backfill_idx = None;
    let tasks: Vec<(Window, bool)> = match (mode, &talks) {
        (Mode::Incremental, None) => Vec::new(),
        (Mode::Incremental, Some(t)) => {
            let limit = (now - Duration::seconds(p.lag_secs as i64)).min(t.watermark);
            let completed = st.completed.clone();
            let planned = plan::incremental(&grid, st.watermark, limit, 0, p.lookback_secs, &|w| {
                completed.covers(Span::from(*w))
            });
            planned
                .new
                .into_iter()
                .map(|w| (w, true))
                .chain(planned.lookback.into_iter().map(|w| (w, false)))
                .collect()
        }
        (Mode::Backfill { from, to }, t) => {
            if from >= to {
                return Err(config(format!(
                    "backfill range is empty: --from {from} is not before --to {to}"
                )));
            }
            let (from, to) = (grid.floor(from), grid.ceil(to));
            let windows = grid.windows(from, to);
            if let Some(w) = windows.iter().find(|w| {
                !t.as_ref()
                    .is_some_and(|t| t.completed.covers(Span::from(**w)))
            }) {
                return Err(config(format!(
                    "{parent_name} has not loaded window {w}; backfill {parent_name} over the range first"
                )));
            }
            // Recorded like every backfill: `status` lists it, and a rerun of the same
            // range resumes past the windows it finished.
            let (idx, done) = backfills::open(&mut st, from, to);
            backfill_idx = Some(idx);
            windows
                .into_iter()
                .filter(|w| !done.covers(Span::from(*w)))
                .map(|w| (w, false))
                .collect()
        }
    };
    let kind = match mode {
        Mode::Incremental => "run",
        Mode::Backfill { .. } => "backfill",
    };
    st.last_run = Some(RunRecord::running(run_id, kind, Utc::now()));
    version = Some(
        engine
            .state
            .commit(&p.name, version, &st)
            .await
            .map_err(|source| state_err(p, source))?,
    );
    if talks.is_none() {
        tracing::info!(pipeline = %p.name, parent = %parent_name, "the parent pipeline has not run yet: nothing to download");
    }
    let mut report = crate::engine::snapshots::Snapshots.planned(
        p,
        run_id,
        crate::engine::run::Planned {
            kind: if backfill_idx.is_some() {
                "backfill"
            } else {
                "run"
            },
            windows: tasks.len(),
            watermark: st.watermark,
            provisional: None,
            backfill: backfill_idx.is_some(),
        },
    );
    let mut failure: Option<RunError> = None;
    for (w, advances) in tasks {
        // Shutdown (`daemon`): stop between commits; this window is loaded by the next run.
        if engine.stop.is_cancelled() {
            failure = Some(RunError::Stopped {
                pipeline: p.name.clone(),
                next: w.start,
            });
            break;
        }
        let covered = talks
            .as_ref()
            .is_some_and(|t| t.completed.covers(Span::from(w)));
        if !covered {
            // Before the parent's first load: it never loaded this window.
            if advances && w.start == st.watermark {
                st.watermark = w.end;
            }
            continue;
        }
        match window(engine, p, parent, &url_col, &w, run_id).await {
            Ok(done) => {
                if let Some(e) = lock_lost(p, lost) {
                    failure = Some(e);
                    break;
                }
                st.completed.add(Span::from(w));
                if advances && w.start == st.watermark {
                    st.watermark = w.end;
                }
                if let Some(i) = backfill_idx {
                    backfills::done(&mut st, i, w);
                }
                report.windows += 1;
                if !advances && matches!(mode, Mode::Incremental) {
                    report.lookback_windows += 1;
                }
                report.rows += done.rows;
                report.files += u64::from(done.file);
                report.requests += done.downloads;
                report.skip(
                    &engine.metric_label(p),
                    "record_url_without_id",
                    done.unreadable,
                );
                if let Some(r) = st.last_run.as_mut() {
                    (r.windows, r.rows, r.files) = (report.windows, report.rows, report.files);
                }
                version = Some(
                    engine
                        .state
                        .commit(&p.name, version, &st)
                        .await
                        .map_err(|source| state_err(p, source))?,
                );
                if backfill_idx.is_some() {
                    crate::io::obs::progress::advanced(1, done.rows);
                }
            }
            Err(source) => {
                failure = Some(RunError::Window {
                    pipeline: p.name.clone(),
                    window: w,
                    source,
                });
                break;
            }
        }
    }
    if let Some(i) = backfill_idx {
        backfills::close(&mut st, i, &grid, failure.is_none());
    }
    finish(engine, p, version, st, report, failure).await
}

/// What one window did.
struct WindowDone {
    rows: u64,
    file: bool,
    downloads: u64,
    /// Talks whose `recordUrl` holds no recording id (issue 13).
    unreadable: u64,
}

/// Stores every recording of the parent's window `w` and writes the window's rows.
async fn window(
    engine: &Engine,
    p: &Pipeline,
    parent: &Pipeline,
    url_col: &str,
    w: &Window,
    run_id: &str,
) -> Result<WindowDone, WindowError> {
    let loc = &engine.warehouse;
    let dt = engine.grid(p).dt(w);
    let key_col = &parent.schema.columns[parent.schema.key[0]].name;
    let time_col = &parent.schema.columns[parent.schema.time].name;
    let calls = parent_calls(loc, &parent.table, dt, w, key_col, time_col, url_col).await?;
    let (calls, unreadable): (Vec<Call>, Vec<Call>) = calls
        .into_iter()
        .partition(|c| crate::io::api::recording_id(&c.url).is_some());
    for c in &unreadable {
        tracing::warn!(pipeline = %p.name, window = %w, call_id = %c.call_id, "recordUrl holds no recording id (expected .../recordings/<id>); this call's recording is skipped");
    }
    let previous = previous_rows(loc, &p.table, dt, w).await?;
    let now_ms = Utc::now().timestamp_millis();
    let concurrency = p.child_concurrency.max(1);
    let results: Vec<(CallOutcome, String)> =
        futures::stream::iter(calls.into_iter().map(|call| {
            let prev = previous.get(&call.call_id).cloned();
            let path = object_path(&p.table, dt, &call.call_id);
            async move {
                let id = call.call_id.clone();
                (store_one(engine, call, path, prev, now_ms).await, id)
            }
        }))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut stored = Vec::new();
    let mut failed = Vec::new();
    let mut downloads = 0u64;
    for (r, id) in results {
        match r {
            Ok((s, downloaded)) => {
                downloads += u64::from(downloaded);
                stored.push(s.record());
            }
            Err(f) => failed.push((id, f)),
        }
    }
    // The recordings that did arrive are listed even when the window fails.
    let batch = to_batch(engine, p, &stored, w, run_id)?;
    let (_, written) = super::write(engine, p, w, &batch).await?;
    if !failed.is_empty() {
        failed.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, f) in &failed {
            let why = match f {
                CallFailure::Download(e) => e.to_string(),
                CallFailure::Store(e) => e.to_string(),
            };
            tracing::warn!(pipeline = %p.name, window = %w, call_id = %id, "recording not stored: {why}");
        }
        tracing::warn!(pipeline = %p.name, window = %w, failed = failed.len(), stored = stored.len(), "the window stays uncommitted; the next run retries what is missing");
        let (id, first) = failed.swap_remove(0);
        return Err(match first {
            CallFailure::Download(source) => ExtractError::Child { key: id, source }.into(),
            CallFailure::Store(e) => e.into(),
        });
    }
    Ok(WindowDone {
        rows: batch.num_rows() as u64,
        file: written.is_some(),
        downloads,
        unreadable: unreadable.len() as u64,
    })
}

/// Stores one call's recording unless its object is there; returns its row and whether
/// it was downloaded.
async fn store_one(
    engine: &Engine,
    call: Call,
    path: String,
    previous: Option<Stored>,
    now_ms: i64,
) -> CallOutcome {
    let loc = &engine.warehouse;
    let key = loc.path(&path);
    // issue 4: the row names the object as stored (with its tenant partition, if any).
    let stored_as = loc.scoped(&path).into_owned();
    let store_err = |source| {
        CallFailure::Store(SinkError::Put {
            path: loc.display(&path),
            source,
        })
    };
    match loc.store().head(&key).await {
        Ok(meta) => {
            if let Some(prev) =
                previous.filter(|s| s.size == meta.size as i64 && s.object_path == stored_as)
            {
                return Ok((
                    Stored {
                        start_ms: call.start_ms,
                        ..prev
                    },
                    false,
                ));
            }
            // Stored by a run that stopped before writing its row: describe it from the
            // object itself.
            let bytes = loc
                .store()
                .get(&key)
                .await
                .map_err(store_err)?
                .bytes()
                .await
                .map_err(store_err)?;
            let content_type = sniff(&bytes);
            return Ok((
                describe(&call, &stored_as, &bytes, content_type, now_ms),
                false,
            ));
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(store_err(e)),
    }
    let got = engine
        .client
        .recording(&call.url)
        .await
        .map_err(CallFailure::Download)?;
    let stored = describe(&call, &stored_as, &got.bytes, got.content_type, now_ms);
    loc.store()
        .put_opts(
            &key,
            PutPayload::from(got.bytes),
            PutOptions::from(PutMode::Overwrite),
        )
        .await
        .map_err(store_err)?;
    Ok((stored, true))
}

fn describe(
    call: &Call,
    path: &str,
    bytes: &Bytes,
    content_type: Option<String>,
    now_ms: i64,
) -> Stored {
    Stored {
        call_id: call.call_id.clone(),
        start_ms: call.start_ms,
        size: bytes.len() as i64,
        sha256: hex::encode(Sha256::digest(bytes)),
        content_type,
        object_path: path.to_string(),
        downloaded_at_ms: now_ms,
    }
}

/// The content type of a stored object whose download response is gone: MP3 by its
/// ID3 tag or frame sync, else unknown.
fn sniff(bytes: &[u8]) -> Option<String> {
    let mp3 = bytes.starts_with(b"ID3")
        || (bytes.len() > 1 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0);
    mp3.then(|| "audio/mpeg".to_string())
}

/// The Parquet files of `table`'s partition `dt` whose span overlaps `w`.
async fn window_files(
    loc: &Location,
    table: &str,
    dt: chrono::NaiveDate,
    w: &Window,
) -> Result<Vec<String>, SinkError> {
    let folder = format!("{}/", crate::core::layout::partition(table, dt));
    Ok(sink::list_files(loc, table)
        .await?
        .into_iter()
        .filter(|f| f.starts_with(&folder))
        .filter(|f| {
            let name = f.rsplit('/').next().unwrap_or_default();
            sink::merge::parse_span(name).is_some_and(|(s, e)| s < w.end && e > w.start)
        })
        .collect())
}

/// Reads the named columns of one Parquet file (missing columns are left out).
async fn read_columns(
    loc: &Location,
    rel: &str,
    columns: &[&str],
) -> Result<Vec<RecordBatch>, SinkError> {
    let read_err = |message: String| SinkError::Read {
        path: loc.display(rel),
        message,
    };
    let bytes = crate::io::sink::fetch(loc, rel).await?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| read_err(e.to_string()))?;
    let roots: Vec<usize> = columns
        .iter()
        .filter_map(|c| builder.schema().index_of(c).ok())
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| read_err(e.to_string()))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(e.to_string()))
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    match batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
    {
        Some(a) => (0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
            .collect(),
        None => vec![None; batch.num_rows()],
    }
}

/// A column of 64-bit values (`T` is its exact Arrow type), each null where the column
/// is null or missing.
fn int64s<T: ArrowPrimitiveType<Native = i64>>(
    batch: &RecordBatch,
    name: &str,
) -> Vec<Option<i64>> {
    match batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<T>())
    {
        Some(a) => (0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i)))
            .collect(),
        None => vec![None; batch.num_rows()],
    }
}

fn times(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    int64s::<TimestampMillisecondType>(batch, name)
}

fn ints(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    int64s::<Int64Type>(batch, name)
}

/// The parent's calls in `w` that have a recording URL, in call-id order.
async fn parent_calls(
    loc: &Location,
    table: &str,
    dt: chrono::NaiveDate,
    w: &Window,
    key_col: &str,
    time_col: &str,
    url_col: &str,
) -> Result<Vec<Call>, SinkError> {
    let mut calls: HashMap<String, Call> = HashMap::new();
    for rel in window_files(loc, table, dt, w).await? {
        for b in read_columns(loc, &rel, &[key_col, time_col, url_col]).await? {
            let (ids, starts, urls) = (
                strings(&b, key_col),
                times(&b, time_col),
                strings(&b, url_col),
            );
            for ((id, start), url) in ids.into_iter().zip(starts).zip(urls) {
                let (Some(id), Some(start), Some(url)) = (id, start, url) else {
                    continue;
                };
                let (id, url) = (id.trim().to_string(), url.trim().to_string());
                if id.is_empty() || url.is_empty() || !w.contains_ms(start) {
                    continue;
                }
                calls.insert(
                    id.clone(),
                    Call {
                        call_id: id,
                        start_ms: start,
                        url,
                    },
                );
            }
        }
    }
    let mut out: Vec<Call> = calls.into_values().collect();
    out.sort_by(|a, b| a.call_id.cmp(&b.call_id));
    Ok(out)
}

/// The rows the window's earlier runs wrote, by call id.
async fn previous_rows(
    loc: &Location,
    table: &str,
    dt: chrono::NaiveDate,
    w: &Window,
) -> Result<HashMap<String, Stored>, SinkError> {
    let mut out = HashMap::new();
    let cols = [
        "call_id",
        "start_time",
        "size_bytes",
        "sha256",
        "content_type",
        "object_path",
        "downloaded_at",
    ];
    for rel in window_files(loc, table, dt, w).await? {
        for b in read_columns(loc, &rel, &cols).await? {
            let ids = strings(&b, "call_id");
            let starts = times(&b, "start_time");
            let sizes = ints(&b, "size_bytes");
            let shas = strings(&b, "sha256");
            let types = strings(&b, "content_type");
            let paths = strings(&b, "object_path");
            let at = times(&b, "downloaded_at");
            for i in 0..b.num_rows() {
                let (Some(id), Some(size), Some(sha), Some(path)) =
                    (ids[i].clone(), sizes[i], shas[i].clone(), paths[i].clone())
                else {
                    continue;
                };
                out.insert(
                    id.clone(),
                    Stored {
                        call_id: id,
                        start_ms: starts[i].unwrap_or_default(),
                        size,
                        sha256: sha,
                        content_type: types[i].clone(),
                        object_path: path,
                        downloaded_at_ms: at[i].unwrap_or_default(),
                    },
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_are_safe_and_partitioned() {
        let dt = chrono::NaiveDate::from_ymd_opt(2024, 3, 1).unwrap_or_default();
        assert_eq!(
            object_path("recordings", dt, " abc-1.2_x "),
            "recordings/dt=2024-03-01/abc-1.2_x.mp3"
        );
        let odd = object_path("recordings", dt, "a/b?c");
        assert!(odd.starts_with("recordings/dt=2024-03-01/a_b_c-"), "{odd}");
        assert_eq!(
            odd.len(),
            "recordings/dt=2024-03-01/a_b_c-12345678.mp3".len()
        );
        // Ids that differ only in characters that are replaced get different objects.
        assert_ne!(odd, object_path("recordings", dt, "a_b_c"));
        assert_ne!(odd, object_path("recordings", dt, "a?b/c"));
        // Ids that would name no file, or a hidden or relative one, get the suffix too.
        for (id, name) in [("..", "_."), ("", ""), (".", "_")] {
            let p = object_path("recordings", dt, id);
            let file = p.trim_start_matches("recordings/dt=2024-03-01/");
            assert!(file.starts_with(&format!("{name}-")), "{p}");
            assert_eq!(file.len(), name.len() + 13, "{p}");
        }
    }

    #[test]
    fn sniffs_mp3() {
        assert_eq!(sniff(b"ID3\x04rest").as_deref(), Some("audio/mpeg"));
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90]).as_deref(), Some("audio/mpeg"));
        assert_eq!(sniff(b"<html>"), None);
    }
}
