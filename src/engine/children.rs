//! issue 15: a `children` window from its parent's committed rows.
//!
//! The parents of a window are the parent table's rows whose time lies in the window,
//! read back from the warehouse; the parent's API is not listed again. A window runs only
//! once the parent has committed it (`engine::search` holds the others back), so a child
//! never runs ahead of its parent. On a window that was committed before with a parent
//! digest (a lookback), only the children of new, changed, settling or incomplete
//! parents are fetched (`core::parents::reason`); the others' rows are taken over from
//! the window's stored file, so the window's file still holds every parent's children.
//!
//! A backfill window, or one without a digest, fetches the children of every parent:
//! exactly one request a parent.

use crate::core::convert::{self, RowMeta};
use crate::core::parents::{self, Digest, Link, ParentRow, Reason};
use crate::core::pipeline::Pipeline;
use crate::core::plan::{Grid, Window};
use crate::core::render;
use crate::engine::extract::{self, Extracted, Inherited};
use crate::engine::run::{Engine, WindowError};
use crate::io::sink::{self, SinkError, merge};
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::TimestampMillisecondType;
use arrow::row::{RowConverter, SortField};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// Columns a run fills with its own values: left out of a parent row's hash, so that a
/// parent re-loaded unchanged keeps its hash.
const PER_RUN_COLUMNS: &[&str] = &["_extracted_at", "_run_id", "_window_start", "_window_end"];

/// Decoded parent files kept per run: a backfill's hourly child windows read the same
/// day file of the parent 24 times, and this keeps them to one read. Small, so memory
/// stays flat however long the range.
const CACHED_PARENT_FILES: usize = 2;

/// A parent file's parents with their times (ms).
type ParentFile = Arc<Vec<(i64, ParentRow)>>;

/// What every window of one child run shares.
pub(crate) struct ChildRun {
    pub(crate) parent: Pipeline,
    /// The child's name for the parent's id (its endpoint placeholder), inherited first.
    placeholder: String,
    link: Link,
    parent_grid: Grid,
    /// The committed windows' parent digests, by window start (none in a backfill).
    digests: HashMap<DateTime<Utc>, Digest>,
    /// (file, tag) -> its parents with their times, newest last.
    cache: Mutex<VecDeque<(String, ParentFile)>>,
}

/// How a window's parents were served, for the log and the tests' figures.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ParentCounts {
    pub(crate) parents: u64,
    pub(crate) new: u64,
    pub(crate) changed: u64,
    pub(crate) settling: u64,
    pub(crate) missing: u64,
    pub(crate) kept: u64,
}

impl ChildRun {
    /// `digests`: the child state's recorded digests, or `None` (a backfill) to fetch
    /// every parent's children. A digest that cannot be read counts as none.
    pub(crate) fn new(
        child: &Pipeline,
        parent: &Pipeline,
        parent_grid: Grid,
        digests: Option<
            &std::collections::BTreeMap<DateTime<Utc>, crate::io::state::model::ParentsDigest>,
        >,
    ) -> Result<Self, String> {
        let link = child.link(parent)?;
        let mut decoded = HashMap::new();
        for (start, d) in digests.into_iter().flatten() {
            match Digest::decode(&d.digest) {
                Ok(digest) => {
                    decoded.insert(*start, digest);
                }
                Err(e) => {
                    tracing::warn!(pipeline = %child.name, window = %start.to_rfc3339(), "{e}; the window's children are all fetched again")
                }
            }
        }
        Ok(Self {
            parent: parent.clone(),
            placeholder: child.parent_field.clone().unwrap_or_default(),
            link,
            parent_grid,
            digests: decoded,
            cache: Mutex::new(VecDeque::new()),
        })
    }
}

impl Engine {
    /// Loads one child window: its parents from the parent table, the children of those
    /// that need them from the API, the rest from the window's stored rows. The rows are
    /// protected (`core::privacy`) here, before stored rows (already protected) join them.
    pub(crate) async fn children_window(
        &self,
        p: &Pipeline,
        run: &ChildRun,
        w: &Window,
        meta: &RowMeta,
    ) -> Result<Extracted, WindowError> {
        let tz = self.settings.timezone;
        let parents = self.window_parents(run, w).await?;
        let digest = run.digests.get(&w.start);
        let stored = match digest {
            Some(_) => Some(self.stored_children(p, run, w).await?),
            None => None,
        };
        let stored_counts = stored.as_ref().map(|s| &s.counts);
        let now_ms = self.clock.now().timestamp_millis();
        let within_ms =
            i64::try_from(p.refetch_within_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut counts = ParentCounts {
            parents: parents.len() as u64,
            ..Default::default()
        };
        let mut fetch: Vec<(String, Inherited)> = Vec::new();
        let mut kept: HashSet<String> = HashSet::new();
        for parent in &parents {
            let have = stored_counts
                .and_then(|c| c.get(&parent.id))
                .copied()
                .unwrap_or(0);
            match parents::reason(parent, digest, have, now_ms, within_ms) {
                None => {
                    counts.kept += 1;
                    kept.insert(parent.id.clone());
                }
                Some(why) => {
                    match why {
                        Reason::New => counts.new += 1,
                        Reason::Changed => counts.changed += 1,
                        Reason::Settling => counts.settling += 1,
                        Reason::Missing => counts.missing += 1,
                    }
                    fetch.push((parent.id.clone(), parent.inherited.clone()));
                }
            }
        }
        tracing::debug!(
            pipeline = %p.name, window = %w, parents = counts.parents, new = counts.new,
            changed = counts.changed, settling = counts.settling, missing = counts.missing,
            kept = counts.kept, "parents of the window"
        );
        let (mut fresh, fetched_counts) =
            extract::fetch_children(&self.client, p, fetch, tz, meta).await?;
        fresh.batch =
            crate::core::privacy::protect(&p.schema, self.settings.pii_key.as_ref(), fresh.batch)?;
        let mut children: HashMap<String, u32> = fetched_counts;
        if let Some(stored) = stored {
            let rows = keep_rows(p, &run.link, &stored.batch, &kept, &fresh.batch)
                .map_err(|e| read_error(self, p, w, e))?;
            for id in &kept {
                children.insert(id.clone(), stored.counts.get(id).copied().unwrap_or(0));
            }
            if rows.num_rows() > 0 {
                fresh.batch = convert::assemble(&p.schema, &[fresh.batch, rows])
                    .map_err(extract::ExtractError::Arrow)?;
            }
        }
        fresh.parents = Some(Digest::of(&parents, &children).encode());
        Ok(fresh)
    }

    /// The parent table's rows in `w`, one per parent id, in id order. A file the parent
    /// replaced between the listing and the read (its run commits while this one reads)
    /// is read again from a new listing, once.
    async fn window_parents(
        &self,
        run: &ChildRun,
        w: &Window,
    ) -> Result<Vec<ParentRow>, SinkError> {
        match self.window_parents_once(run, w).await {
            Err(SinkError::Read { path, message }) => {
                tracing::debug!(%path, "a parent file changed while it was read ({message}); listing again");
                self.window_parents_once(run, w).await
            }
            other => other,
        }
    }

    async fn window_parents_once(
        &self,
        run: &ChildRun,
        w: &Window,
    ) -> Result<Vec<ParentRow>, SinkError> {
        let table = &run.parent.table;
        let mut dts: Vec<chrono::NaiveDate> = run
            .parent_grid
            .windows(run.parent_grid.floor(w.start), run.parent_grid.ceil(w.end))
            .iter()
            .map(|pw| run.parent_grid.dt(pw))
            .collect();
        dts.dedup();
        let mut by_id: HashMap<String, ParentRow> = HashMap::new();
        for dt in dts {
            for (file, tag) in
                sink::spans_overlapping(&self.warehouse, table, dt, w.start, w.end).await?
            {
                let rows = self.parent_file(run, &file.rel, &tag).await?;
                for (t, row) in rows.iter() {
                    if w.contains_ms(*t) {
                        by_id.insert(row.id.clone(), row.clone());
                    }
                }
            }
        }
        let mut out: Vec<ParentRow> = by_id.into_values().collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// One parent file's rows as parents, from the run's cache when the file is unchanged.
    async fn parent_file(
        &self,
        run: &ChildRun,
        rel: &str,
        tag: &str,
    ) -> Result<ParentFile, SinkError> {
        let key = format!("{rel}#{tag}");
        if let Ok(cache) = run.cache.lock()
            && let Some((_, rows)) = cache.iter().find(|(k, _)| *k == key)
        {
            return Ok(rows.clone());
        }
        let batches = merge::read_file(&self.warehouse, rel, &run.parent.schema.arrow).await?;
        let parent = run.parent.clone();
        let link = run.link.clone();
        let placeholder = run.placeholder.clone();
        let tz = self.settings.timezone;
        let shown = self.warehouse.display(rel);
        let rows = tokio::task::spawn_blocking(move || {
            parent_rows(&parent, &link, &placeholder, &batches, tz)
        })
        .await
        .map_err(|e| SinkError::Read {
            path: shown.clone(),
            message: e.to_string(),
        })?
        .map_err(|message| SinkError::Read {
            path: shown,
            message,
        })?;
        let rows = Arc::new(rows);
        if let Ok(mut cache) = run.cache.lock() {
            cache.retain(|(k, _)| *k != key);
            cache.push_back((key, rows.clone()));
            while cache.len() > CACHED_PARENT_FILES {
                cache.pop_front();
            }
        }
        Ok(rows)
    }

    /// The window's rows as stored by its last commit, and how many each parent has.
    async fn stored_children(
        &self,
        p: &Pipeline,
        run: &ChildRun,
        w: &Window,
    ) -> Result<Stored, SinkError> {
        let dt = self.grid(p).dt(w);
        let mut parts = Vec::new();
        for (file, _) in
            sink::spans_overlapping(&self.warehouse, &p.table, dt, w.start, w.end).await?
        {
            for b in merge::read_file(&self.warehouse, &file.rel, &p.schema.arrow).await? {
                let inside = in_window(&b, w).map_err(|message| SinkError::Read {
                    path: self.warehouse.display(&file.rel),
                    message,
                })?;
                parts.push(inside);
            }
        }
        let batch = arrow::compute::concat_batches(&p.schema.arrow, &parts).map_err(|e| {
            SinkError::Read {
                path: self.warehouse.display(&p.table),
                message: e.to_string(),
            }
        })?;
        let mut counts: HashMap<String, u32> = HashMap::new();
        for id in key_strings(batch.column(run.link.child_key).as_ref())
            .into_iter()
            .flatten()
        {
            *counts.entry(id).or_insert(0) += 1;
        }
        Ok(Stored { batch, counts })
    }
}

/// A window's stored rows.
struct Stored {
    batch: RecordBatch,
    counts: HashMap<String, u32>,
}

fn read_error(engine: &Engine, p: &Pipeline, w: &Window, message: String) -> WindowError {
    WindowError::Sink(SinkError::Read {
        path: format!("{} (window {w})", engine.warehouse.display(&p.table)),
        message,
    })
}

/// Rows whose `_window_start` lies in `w`.
fn in_window(batch: &RecordBatch, w: &Window) -> Result<RecordBatch, String> {
    let col = batch
        .column_by_name(merge::WINDOW_START_COLUMN)
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .ok_or_else(|| format!("no {} timestamp column", merge::WINDOW_START_COLUMN))?;
    let mask: BooleanArray = (0..col.len())
        .map(|i| Some(col.is_valid(i) && w.contains_ms(col.value(i))))
        .collect();
    filter_record_batch(batch, &mask).map_err(|e| e.to_string())
}

/// Stored rows of the `kept` parents, less any row whose key a fresh row has (a child
/// the API now lists under another parent: the fresh row wins, keys stay unique).
fn keep_rows(
    p: &Pipeline,
    link: &Link,
    stored: &RecordBatch,
    kept: &HashSet<String>,
    fresh: &RecordBatch,
) -> Result<RecordBatch, String> {
    let fields: Vec<SortField> = p
        .schema
        .key
        .iter()
        .map(|&k| SortField::new(p.schema.arrow.field(k).data_type().clone()))
        .collect();
    let keys = |b: &RecordBatch| -> Result<arrow::row::Rows, String> {
        let cols: Vec<_> = p.schema.key.iter().map(|&k| b.column(k).clone()).collect();
        RowConverter::new(fields.clone())
            .and_then(|c| c.convert_columns(&cols))
            .map_err(|e| e.to_string())
    };
    let fresh_keys = keys(fresh)?;
    let taken: HashSet<&[u8]> = fresh_keys.iter().map(|r| r.data()).collect();
    let stored_keys = keys(stored)?;
    let ids = key_strings(stored.column(link.child_key).as_ref());
    let mask: BooleanArray = ids
        .iter()
        .zip(stored_keys.iter())
        .map(|(id, key)| {
            Some(id.as_ref().is_some_and(|id| kept.contains(id)) && !taken.contains(key.data()))
        })
        .collect();
    filter_record_batch(stored, &mask).map_err(|e| e.to_string())
}

/// A key column's values as the trimmed strings the endpoint placeholder takes.
fn key_strings(col: &dyn Array) -> Vec<Option<String>> {
    (0..col.len())
        .map(|i| {
            let json = render::api_json(
                crate::core::schema::ColumnType::String,
                col,
                i,
                chrono_tz::UTC,
            )
            .or_else(|| {
                render::api_json(crate::core::schema::ColumnType::Int, col, i, chrono_tz::UTC)
            })?;
            let id = match serde_json::from_str::<serde_json::Value>(&json).ok()? {
                serde_json::Value::String(s) => s.trim().to_string(),
                other => other.to_string(),
            };
            (!id.is_empty()).then_some(id)
        })
        .collect()
}

/// A parent file's rows as parents: (time in ms, parent). Rows without a key or a time
/// have no children to load and are left out (the parent's `_errors` shows why).
fn parent_rows(
    parent: &Pipeline,
    link: &Link,
    placeholder: &str,
    batches: &[RecordBatch],
    tz: chrono_tz::Tz,
) -> Result<Vec<(i64, ParentRow)>, String> {
    let schema = &parent.schema;
    let hashed: Vec<usize> = schema
        .arrow
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !PER_RUN_COLUMNS.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let fields: Vec<SortField> = hashed
        .iter()
        .map(|&i| SortField::new(schema.arrow.field(i).data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<_> = hashed.iter().map(|&i| b.column(i).clone()).collect();
        let encoded = converter
            .convert_columns(&cols)
            .map_err(|e| e.to_string())?;
        let ids = key_strings(b.column(link.key).as_ref());
        let times = b
            .column(link.time)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or("the parent's time column is not a timestamp")?;
        let ends = b
            .column(link.end)
            .as_primitive_opt::<TimestampMillisecondType>();
        for (row, id) in ids.into_iter().enumerate() {
            let (Some(id), true) = (id, times.is_valid(row)) else {
                continue;
            };
            let mut inherited: Inherited = Vec::with_capacity(link.inherit.len() + 1);
            inherited.push((
                placeholder.to_string(),
                serde_json::Value::String(id.clone()).to_string(),
            ));
            for (child_field, col) in &link.inherit {
                let ty = schema.columns[*col].ty;
                if let Some(v) = render::api_json(ty, b.column(*col).as_ref(), row, tz) {
                    inherited.push((child_field.clone(), v));
                }
            }
            let end_ms = ends.and_then(|e| e.is_valid(row).then(|| e.value(row)));
            out.push((
                times.value(row),
                ParentRow {
                    id,
                    inherited,
                    hash: parents::row_hash(encoded.row(row).data()),
                    end_ms,
                },
            ));
        }
    }
    Ok(out)
}
