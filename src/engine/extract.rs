//! Reads one window from the API, exactly: every record whose time is in `[t0, t1)`,
//! once, or an error.
//!
//! - Edges: the request range is a superset of the window (the API's filters may be
//!   inclusive and, for local strings, minute-grained and DST-confused); records outside
//!   `[t0, t1)` still count toward `total` but are not kept.
//! - Paging: by what the API actually returned. A page that comes back shorter than its
//!   size, or a server that caps the size, makes the next request overlap what was seen
//!   instead of skipping; duplicates are removed by key.
//! - Completeness: the unique records fetched must equal the API's `total` (which must
//!   not change while paging); otherwise the window is fetched again, and after a few
//!   attempts the window fails with the counts in the message.

use crate::core::convert::{self, BatchBuilder, RowMeta};
use crate::core::pipeline::{Pipeline, TimeFilter};
use crate::core::plan::Window;
use crate::core::record::RawRecord;
use crate::core::timeutil;
use crate::io::api::{ApiClient, ApiError};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use chrono::Duration;
use chrono_tz::Tz;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

/// Fields a child inherits: (name, value as JSON text).
pub type Inherited = Vec<(String, String)>;

/// Keys seen in a window. foldhash instead of the standard SipHash: hashing every
/// record's key was a visible share of a window's CPU, and a window's keys come from one
/// tenant's API answers, which a per-process random seed keeps from steering collisions.
type KeySet = std::collections::HashSet<String, foldhash::fast::RandomState>;

/// Full-window fetches before a count mismatch fails the window.
pub const COMPLETENESS_ATTEMPTS: usize = 4;

/// Rows per record batch when many small answers (children) are gathered.
const CHILD_BATCH_ROWS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("page {page}: {source}")]
    Api {
        page: u32,
        #[source]
        source: ApiError,
    },
    #[error("{endpoint} page {page}: unexpected answer: {detail}")]
    Shape {
        endpoint: String,
        page: u32,
        detail: String,
    },
    #[error(
        "incomplete after {attempts} attempts: fetched {fetched} records (counted as the pipeline counts them: by key, or for reports by place in the answer) but the API's total is {total}{detail}"
    )]
    Incomplete {
        attempts: usize,
        fetched: u64,
        total: u64,
        detail: String,
    },
    #[error("parent record {key:?}: {source}")]
    Child {
        key: String,
        #[source]
        source: ApiError,
    },
    #[error("the window's task stopped: {0}")]
    Task(String),
    #[error("cannot build Arrow batch: {0}")]
    Arrow(#[from] ArrowError),
}

/// The rows of one window, de-duplicated and sorted.
#[derive(Debug)]
pub struct Extracted {
    pub batch: RecordBatch,
    /// Requests that returned a page (search) or a child list.
    pub requests: u64,
    /// Distinct records the API returned for the (padded) request range.
    pub fetched: u64,
    pub bad_values: usize,
    /// issue 15, children windows: the window's parent digest to commit with it
    /// (`core::parents::Digest::encode`).
    pub parents: Option<String>,
}

/// The request body's time range for a window.
fn range_fields(p: &Pipeline, w: &Window, tz: Tz) -> (Value, Value) {
    match p.time_filter {
        // Inclusive at both ends, millisecond-exact: [t0, t1 - 1ms] is exactly the window.
        TimeFilter::EpochMs => (
            w.start.timestamp_millis().into(),
            (w.end.timestamp_millis() - 1).into(),
        ),
        // Minute-grained local strings: widen by a minute at the end (the end minute may
        // or may not be inclusive) and by the DST shift around a change (a local time in
        // the repeated hour may be read either way).
        TimeFilter::LocalMinute => {
            let pad = Duration::seconds(timeutil::offset_spread(tz, w.start, w.end));
            (
                timeutil::format_local_minute(tz, w.start - pad).into(),
                timeutil::format_local_minute(tz, w.end + pad).into(),
            )
        }
    }
}

/// How one pass over a window's pages ended.
struct Pass {
    fetched: u64,
    total: u64,
    requests: u64,
    /// Why the pass could not confirm the total (when it could not).
    problem: Option<String>,
}

/// One pass over the pages of a search window; `keep` gets each page's new, in-window
/// records (already de-duplicated against earlier pages of this pass).
async fn search_pass(
    client: &ApiClient,
    p: &Pipeline,
    w: &Window,
    tz: Tz,
    keep: &mut (dyn FnMut(Vec<RawRecord<'_>>) -> Result<(), ExtractError> + Send),
) -> Result<Pass, ExtractError> {
    let (start, end) = range_fields(p, w, tz);
    let mut seen = KeySet::default();
    let mut keyless: u64 = 0;
    let mut total: Option<u64> = None;
    let mut size = u64::from(p.page_size.max(1));
    let mut page_num: u64 = 1;
    let mut requests: u64 = 0;
    let mut max_requests: u64 = 64;
    let request = |page_num: u64, size: u64| {
        let mut body = p.filters.clone();
        body.insert("startTime".into(), start.clone());
        body.insert("endTime".into(), end.clone());
        body.insert("pageNum".into(), page_num.into());
        body.insert("pageSize".into(), size.into());
        let (client, endpoint) = (client.clone(), p.endpoint.clone());
        async move { client.post_page(&endpoint, &Value::Object(body)).await }
    };
    // The next page is requested before this one is converted, so the server works on
    // it meanwhile; still one request in flight per window, as without it. Aborted when
    // dropped unused (the window ended early or failed).
    type Ahead = crate::engine::abort::AbortOnDrop<
        Result<crate::io::api::PageData, crate::io::api::ApiError>,
    >;
    let mut prefetched: Option<Ahead> = None;
    loop {
        let page_no = u32::try_from(page_num).unwrap_or(u32::MAX);
        let answer = match prefetched.take() {
            Some(next) => match next.join().await {
                Ok(answer) => answer,
                Err(join) => return Err(ExtractError::Task(join.to_string())),
            },
            None => request(page_num, size).await,
        };
        let (text, index) = answer
            .map_err(|source| ExtractError::Api {
                page: page_no,
                source,
            })?
            .into_parts();
        requests += 1;
        let page = index
            .map_err(|detail| ExtractError::Shape {
                endpoint: p.endpoint.clone(),
                page: page_no,
                detail,
            })?
            .into_page(&text);
        let page_total = page.total.ok_or_else(|| ExtractError::Shape {
            endpoint: p.endpoint.clone(),
            page: page_no,
            detail: "no total in data: completeness cannot be checked".into(),
        })?;
        match total {
            None => {
                total = Some(page_total);
                max_requests = 2 * (page_total / size + 1) + 32;
            }
            Some(t) if t != page_total => {
                return Ok(Pass {
                    fetched: seen.len() as u64 + keyless,
                    total: t,
                    requests,
                    problem: Some(format!(
                        "total changed from {t} to {page_total} while paging"
                    )),
                });
            }
            Some(_) => {}
        }
        // The server's page size, when it says it capped ours.
        let eff = match page.page_size {
            Some(s) if s > 0 && s < size => s,
            _ => size,
        };
        size = eff;
        let n = page.records.len() as u64;
        let page_start = (page_num - 1) * eff;
        let next = next_page(page_start, n, size);
        let t = total.unwrap_or(0);
        if let Some((num, sz)) = next
            && n > 0
            && page_start + n < t
            && requests < max_requests
        {
            let ahead = tracing::Instrument::instrument(request(num, sz), tracing::Span::current());
            prefetched = Some(crate::engine::abort::AbortOnDrop(tokio::spawn(ahead)));
        }
        let mut kept = Vec::new();
        for obj in page.records {
            match convert::record_key(&p.schema, &obj) {
                Some(k) => {
                    if !seen.insert(k) {
                        continue;
                    }
                }
                None => keyless += 1,
            }
            // A record whose time cannot be read is kept: the API placed it in range, and
            // dropping it would lose data. `_errors` shows the bad time.
            match convert::record_time(&p.schema, &obj, tz) {
                Some(ms) if !w.contains_ms(ms) => {}
                _ => kept.push(obj),
            }
        }
        keep(kept)?;
        let fetched = seen.len() as u64 + keyless;
        if fetched >= t || n == 0 {
            return Ok(Pass {
                fetched,
                total: t,
                requests,
                problem: None,
            });
        }
        if requests >= max_requests {
            return Ok(Pass {
                fetched,
                total: t,
                requests,
                problem: Some(format!("gave up after {requests} pages")),
            });
        }
        let Some((num, sz)) = next else {
            return Ok(Pass {
                fetched,
                total: t,
                requests,
                problem: Some("paging made no progress".into()),
            });
        };
        (page_num, size) = (num, sz);
    }
}

/// issue 15 (dry run): the API's `total` for the records of `w`, from one request of
/// one record (`pageSize=1`), the cheapest question that answers it. The range is the
/// same padded one a real pass asks for, so the count is that of the real first page.
pub(crate) async fn probe_total(
    client: &ApiClient,
    p: &Pipeline,
    w: &Window,
    tz: Tz,
) -> Result<u64, ExtractError> {
    let (start, end) = range_fields(p, w, tz);
    let mut body = p.filters.clone();
    body.insert("startTime".into(), start);
    body.insert("endTime".into(), end);
    body.insert("pageNum".into(), 1.into());
    body.insert("pageSize".into(), 1.into());
    let (text, index) = client
        .post_page(&p.endpoint, &Value::Object(body))
        .await
        .map_err(|source| ExtractError::Api { page: 1, source })?
        .into_parts();
    let page = index
        .map_err(|detail| ExtractError::Shape {
            endpoint: p.endpoint.clone(),
            page: 1,
            detail,
        })?
        .into_page(&text);
    page.total.ok_or_else(|| ExtractError::Shape {
        endpoint: p.endpoint.clone(),
        page: 1,
        detail: "no total in data: the cost cannot be estimated".into(),
    })
}

/// The page after the one at `page_start` that held `n` records, as (page number, page
/// size): it starts at or before the position after the last record received, so a
/// short page is re-read from where it stopped instead of skipped. `None`: no page size
/// makes progress.
fn next_page(page_start: u64, n: u64, size: u64) -> Option<(u64, u64)> {
    let offset = page_start + n;
    let mut q = size.max(1);
    loop {
        let s = (offset / q) * q;
        if s > page_start {
            return Some((offset / q + 1, q));
        }
        if q == 1 {
            return None;
        }
        q -= 1;
    }
}

/// Runs passes until one is complete, calling `reset` before each retry so that the
/// caller can drop what the failed pass gathered.
async fn complete_search(
    client: &ApiClient,
    p: &Pipeline,
    w: &Window,
    tz: Tz,
    keep: &mut (dyn FnMut(Vec<RawRecord<'_>>) -> Result<(), ExtractError> + Send),
    reset: &mut (dyn FnMut() + Send),
) -> Result<(u64, u64), ExtractError> {
    let mut requests = 0;
    let mut last = String::new();
    let mut counts = (0, 0);
    for attempt in 1..=COMPLETENESS_ATTEMPTS {
        if attempt > 1 {
            reset();
        }
        let pass = search_pass(client, p, w, tz, keep).await?;
        requests += pass.requests;
        if pass.problem.is_none() && pass.fetched == pass.total {
            return Ok((requests, pass.fetched));
        }
        last = pass
            .problem
            .clone()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        counts = (pass.fetched, pass.total);
        tracing::warn!(
            pipeline = %p.name, window = %w, attempt, fetched = pass.fetched, total = pass.total,
            "window incomplete{last}; fetching it again"
        );
    }
    Err(ExtractError::Incomplete {
        attempts: COMPLETENESS_ATTEMPTS,
        fetched: counts.0,
        total: counts.1,
        detail: last,
    })
}

/// Extracts a `search` pipeline's window.
pub async fn search_window(
    client: &ApiClient,
    p: &Pipeline,
    w: &Window,
    tz: Tz,
    meta: &RowMeta,
) -> Result<Extracted, ExtractError> {
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut bad_values = 0usize;
    let (requests, fetched) =
        complete_search_collect(client, p, w, tz, &mut batches, &mut bad_values, meta).await?;
    let batch = convert::assemble(&p.schema, &batches)?;
    Ok(Extracted {
        batch,
        requests,
        fetched,
        bad_values,
        parents: None,
    })
}

/// `complete_search` gathering converted batches, cleared on every retry.
async fn complete_search_collect(
    client: &ApiClient,
    p: &Pipeline,
    w: &Window,
    tz: Tz,
    batches: &mut Vec<RecordBatch>,
    bad_values: &mut usize,
    meta: &RowMeta,
) -> Result<(u64, u64), ExtractError> {
    let gathered = std::sync::Mutex::new((Vec::<RecordBatch>::new(), 0usize));
    let mut keep = |recs: Vec<RawRecord<'_>>| -> Result<(), ExtractError> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut b = BatchBuilder::new(&p.schema, tz, recs.len());
        for r in &recs {
            b.push(r);
        }
        let bad = b.bad_values;
        let batch = b.finish(meta)?;
        if let Ok(mut g) = gathered.lock() {
            g.0.push(batch);
            g.1 += bad;
        }
        Ok(())
    };
    let mut reset = || {
        if let Ok(mut g) = gathered.lock() {
            g.0.clear();
            g.1 = 0;
        }
    };
    let counts = complete_search(client, p, w, tz, &mut keep, &mut reset).await?;
    let (b, bad) = gathered.into_inner().unwrap_or_default();
    *batches = b;
    *bad_values = bad;
    Ok(counts)
}

/// The children of `parents` (issue 15: parents come from the parent's committed table,
/// `engine::children`), one request each, `child_concurrency` at once. Also returns how
/// many children each parent (by id) had, for the window's parent digest.
pub async fn fetch_children(
    client: &ApiClient,
    p: &Pipeline,
    parents: Vec<(String, Inherited)>,
    tz: Tz,
    meta: &RowMeta,
) -> Result<(Extracted, std::collections::HashMap<String, u32>), ExtractError> {
    let parent_field = p.parent_field.clone().unwrap_or_default();
    let endpoint_of = |id: &str| child_path(&p.endpoint, &parent_field, id);
    let answers = futures::stream::iter(parents.into_iter().map(|(id, inherited)| {
        let path = endpoint_of(&id);
        async move {
            let data = client
                .get_page(&path, &[])
                .await
                .map_err(|source| ExtractError::Child {
                    key: id.clone(),
                    source,
                })?;
            Ok::<_, ExtractError>((id, data, inherited))
        }
    }))
    .buffer_unordered(p.child_concurrency);
    futures::pin_mut!(answers);

    let mut seen = KeySet::default();
    let mut batches = Vec::new();
    let mut builder = BatchBuilder::new(&p.schema, tz, CHILD_BATCH_ROWS);
    let mut bad_values = 0;
    let mut requests = 0u64;
    let mut fetched = 0u64;
    let mut children = std::collections::HashMap::new();
    while let Some((id, data, inherited)) = answers.try_next().await? {
        requests += 1;
        let (text, index) = data.into_parts();
        let page = index
            .map_err(|detail| ExtractError::Shape {
                endpoint: p.endpoint.clone(),
                page: 1,
                detail: format!("children of {id}: {detail}"),
            })?
            .into_page(&text);
        for mut obj in page.records {
            for (k, v) in &inherited {
                obj.inherit(k, v);
            }
            if let Some(k) = convert::record_key(&p.schema, &obj)
                && !seen.insert(k)
            {
                continue;
            }
            fetched += 1;
            *children.entry(id.clone()).or_insert(0u32) += 1;
            builder.push(&obj);
            if builder.rows() >= CHILD_BATCH_ROWS {
                bad_values += builder.bad_values;
                let full = std::mem::replace(
                    &mut builder,
                    BatchBuilder::new(&p.schema, tz, CHILD_BATCH_ROWS),
                );
                batches.push(full.finish(meta)?);
            }
        }
    }
    bad_values += builder.bad_values;
    if builder.rows() > 0 {
        batches.push(builder.finish(meta)?);
    }
    let batch = convert::assemble(&p.schema, &batches)?;
    Ok((
        Extracted {
            batch,
            requests,
            fetched,
            bad_values,
            parents: None,
        },
        children,
    ))
}

/// A child pipeline's endpoint for one parent: `{field}` in `endpoint` replaced by the
/// parent's id, percent-encoded (`check` probes the same path the run fetches).
pub(crate) fn child_path(endpoint: &str, field: &str, id: &str) -> String {
    endpoint.replace(&format!("{{{field}}}"), &url_path_segment(id))
}

/// Percent-encodes a path segment (IDs are hex, but the API's data is untrusted).
fn url_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(url_path_segment("6bf3cbb1"), "6bf3cbb1");
        assert_eq!(url_path_segment("a/b c"), "a%2Fb%20c");
    }
}
