//! `reference` and `snapshot` runs: the present state of the API, stored per interval.
//!
//! `snapshot_time` is the run's now floored to the pipeline's `window_secs` on the local
//! grid. The rows go to `<table>/dt=<local date>/<interval start>_<interval end>.parquet`,
//! so a rerun in the same interval rewrites that file instead of adding a second
//! snapshot. A `reference` table keeps only its newest file: the other files are
//! deleted after the new one is stored (a reader may see both for that moment, never
//! neither). A `snapshot` table keeps every interval's file as history.
//!
//! `agent_metrics` (View Agent Indicator) is paged by `pageNum`/`pageSize` until the
//! distinct agents (by `agentUUID`) equal `total`, which must not change while paging;
//! otherwise the whole snapshot is fetched again, up to
//! [`extract::COMPLETENESS_ATTEMPTS`] times. Each page request carries its own
//! `Idempotency-Key` (a UUID), repeated by the client on that request's retries. The
//! `agentsSummary` counts go on every row, in `summary_*` columns; `creationTime` and
//! `companyId` of the answer too.
//!
//! issue 13: `operatorUserId` (`SOBOT_OPERATOR_USER_ID`) goes with every page when set;
//! the document requires it under a company token, so a refusal without it names that
//! setting. An agent entry without `agentUUID` (the key) is logged and counted in the
//! run's summary (`no_agent_uuid`) and left out; it still counts towards `total`, which
//! counts entries as sent, so the snapshot completes with the rest.

use super::{count_of, finish, list_of, load_state, lock_lost, to_batch};
use crate::core::pipeline::{Kind, Pipeline};
use crate::core::plan::Window;
use crate::engine::extract::{self, ExtractError};
use crate::engine::run::{Engine, Mode, Report, RunError, WindowError};
use crate::io::sink;
use crate::io::state::model::RunRecord;
use chrono::Utc;
use object_store::ObjectStoreExt;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;

/// The column every snapshot row gets: the interval's start, in epoch milliseconds.
pub(crate) const SNAPSHOT_FIELD: &str = "snapshotTime";

pub async fn run(
    engine: &Engine,
    p: &Pipeline,
    mode: Mode,
    run_id: &str,
    lost: &AtomicBool,
) -> Result<Report, RunError> {
    if let Mode::Backfill { .. } = mode {
        return Err(RunError::Config {
            pipeline: p.name.clone(),
            message: "this pipeline stores the API's present state; the past cannot be backfilled (use run)".into(),
        });
    }
    let w = engine.grid(p).window_at(engine.clock.now());
    let (version, mut st) = load_state(engine, p, w.start).await?;
    st.last_run = Some(RunRecord::running(run_id, "run", Utc::now()));
    let mut report = Report {
        pipeline: p.name.clone(),
        table: p.table.clone(),
        ..Default::default()
    };
    tracing::info!(pipeline = %p.name, run_id, snapshot = %w.start.to_rfc3339(), "snapshot");
    let outcome = take(engine, p, &w, run_id, &mut report).await;
    let failure = match outcome {
        Ok(()) => lock_lost(p, lost),
        Err(source) => Some(RunError::Window {
            pipeline: p.name.clone(),
            window: w,
            source,
        }),
    };
    if failure.is_none() {
        report.windows = 1;
        st.watermark = st.watermark.max(w.end);
    }
    finish(engine, p, version, st, report, failure).await
}

/// Fetches, converts and writes one snapshot.
async fn take(
    engine: &Engine,
    p: &Pipeline,
    w: &Window,
    run_id: &str,
    report: &mut Report,
) -> Result<(), WindowError> {
    let (mut records, requests) = match p.kind {
        Kind::Reference => {
            let plans = super::reference::fetch(engine, p).await?;
            (plans, 4)
        }
        _ => {
            let (records, requests, no_uuid) = agent_metrics(engine, p).await?;
            if no_uuid > 0 {
                tracing::warn!(pipeline = %p.name, entries = no_uuid, "agent metrics entries without an agentUUID were left out");
            }
            report.skip(&engine.metric_label(p), "no_agent_uuid", no_uuid);
            (records, requests)
        }
    };
    let at = Value::from(w.start.timestamp_millis());
    for r in &mut records {
        r.insert(SNAPSHOT_FIELD.into(), at.clone());
    }
    let batch = to_batch(engine, p, &records, w, run_id)?;
    let (file, written) = super::write(engine, p, w, &batch).await?;
    report.rows = batch.num_rows() as u64;
    report.files = u64::from(written.is_some());
    report.requests = requests;
    if p.kind == Kind::Reference {
        // Only the newest snapshot stays: the table is the current list.
        let keep = file.relative_path();
        let loc = &engine.warehouse;
        for old in sink::list_files(loc, &p.table).await? {
            if old != keep {
                match loc.store().delete(&loc.path(&old)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(source) => {
                        return Err(sink::SinkError::Delete {
                            path: loc.display(&old),
                            source,
                        }
                        .into());
                    }
                }
            }
        }
    }
    Ok(())
}

/// One pass over View Agent Indicator's pages.
struct Pass {
    records: Vec<Map<String, Value>>,
    total: u64,
    requests: u64,
    problem: Option<String>,
    /// Entries without `agentUUID`, left out (issue 13).
    no_uuid: u64,
}

/// Every agent's metrics, complete by `total`, each with the answer's summary counts;
/// with the requests made and the entries left out for having no `agentUUID`.
async fn agent_metrics(
    engine: &Engine,
    p: &Pipeline,
) -> Result<(Vec<Map<String, Value>>, u64, u64), ExtractError> {
    let mut requests = 0;
    let mut last = String::new();
    for attempt in 1..=extract::COMPLETENESS_ATTEMPTS {
        let pass = metrics_pass(engine, p).await?;
        requests += pass.requests;
        match pass.problem {
            None => return Ok((pass.records, requests, pass.no_uuid)),
            Some(why) => {
                tracing::warn!(pipeline = %p.name, attempt, "snapshot incomplete, fetching again: {why}");
                last = format!("; {why} (fetched {} of {})", pass.records.len(), pass.total);
                if attempt == extract::COMPLETENESS_ATTEMPTS {
                    return Err(ExtractError::Incomplete {
                        attempts: attempt,
                        fetched: pass.records.len() as u64,
                        total: pass.total,
                        detail: last,
                    });
                }
            }
        }
    }
    Err(ExtractError::Incomplete {
        attempts: extract::COMPLETENESS_ATTEMPTS,
        fetched: 0,
        total: 0,
        detail: last,
    })
}

async fn metrics_pass(engine: &Engine, p: &Pipeline) -> Result<Pass, ExtractError> {
    let shape = |page: u32, detail: String| ExtractError::Shape {
        endpoint: p.endpoint.clone(),
        page,
        detail,
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut records = Vec::new();
    let mut total: Option<u64> = None;
    // Fields of the answer every row carries: the summary counts, creationTime, companyId.
    let mut common: Option<Map<String, Value>> = None;
    let mut size = u64::from(p.page_size.max(1));
    let mut page_num: u64 = 1;
    let mut requests = 0u64;
    let mut max_requests = 64u64;
    let mut no_uuid = 0u64;
    loop {
        let page = u32::try_from(page_num).unwrap_or(u32::MAX);
        let mut query = filter_query(p);
        push_operator(engine.settings.operator_user_id.as_ref(), &mut query);
        query.push(("product".into(), "scc".into()));
        query.push(("pageNum".into(), page_num.to_string()));
        query.push(("pageSize".into(), size.to_string()));
        let key = uuid::Uuid::new_v4().to_string();
        let raw = engine
            .client
            .get_raw_with_headers(&p.endpoint, &query, &[("Idempotency-Key", key)])
            .await
            .map_err(|source| ExtractError::Api {
                page,
                source: operator_hint(engine, source),
            })?;
        requests += 1;
        let data: Map<String, Value> = match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::Object(o)) => o,
            Ok(other) => {
                return Err(shape(
                    page,
                    format!("data is {}, not an object", json_kind(&other)),
                ));
            }
            Err(e) => return Err(shape(page, format!("data cannot be read: {e}"))),
        };
        // The document puts the list under agentsMetrics; accept it at the top as well.
        let metrics = match data.get("agentsMetrics") {
            Some(Value::Object(m)) => m,
            _ => &data,
        };
        let page_total = count_of(metrics.get("total")).ok_or_else(|| {
            shape(
                page,
                "no total in agentsMetrics: completeness cannot be checked".into(),
            )
        })?;
        let list = match list_of(metrics) {
            Some(l) => l.as_slice(),
            None if page_total == 0 => &[],
            None => return Err(shape(page, "no list in agentsMetrics".into())),
        };
        if common.is_none() {
            let mut c = Map::new();
            if let Some(Value::Object(summary)) = data.get("agentsSummary") {
                for (k, v) in summary {
                    c.insert(format!("agentsSummary.{k}"), v.clone());
                }
            }
            for k in ["creationTime", "companyId"] {
                if let Some(v) = data.get(k) {
                    c.insert(k.into(), v.clone());
                }
            }
            common = Some(c);
        }
        match total {
            None => {
                total = Some(page_total);
                max_requests = 2 * (page_total / size + 1) + 16;
            }
            Some(t) if t != page_total => {
                return Ok(Pass {
                    total: t,
                    requests,
                    problem: Some(format!(
                        "total changed from {t} to {page_total} while paging"
                    )),
                    records,
                    no_uuid,
                });
            }
            Some(_) => {}
        }
        let n = list.len() as u64;
        for entry in list {
            let Value::Object(agent) = entry else {
                return Err(shape(
                    page,
                    format!("an agent entry is {}, not an object", json_kind(entry)),
                ));
            };
            let key = match agent.get("agentUUID") {
                Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
                _ => {
                    // issue 13: counted and left out, not a failed snapshot.
                    no_uuid += 1;
                    continue;
                }
            };
            if !seen.insert(key) {
                continue;
            }
            let mut row = agent.clone();
            for (k, v) in common.iter().flatten() {
                row.entry(k.clone()).or_insert_with(|| v.clone());
            }
            records.push(row);
        }
        let t = total.unwrap_or(0);
        // Entries without agentUUID are part of what the API counts in total.
        let sent = seen.len() as u64 + no_uuid;
        if sent >= t || n == 0 {
            let problem = (sent != t)
                .then(|| format!("page {page} came back empty with {} of {t} agents", sent));
            return Ok(Pass {
                total: t,
                requests,
                problem,
                records,
                no_uuid,
            });
        }
        if requests >= max_requests {
            return Ok(Pass {
                total: t,
                requests,
                problem: Some(format!("gave up after {requests} pages")),
                records,
                no_uuid,
            });
        }
        // A server that caps the page size pages by its own size.
        if let Some(s) = count_of(metrics.get("pageSize")).filter(|s| *s > 0 && *s < size) {
            let position = (page_num - 1) * s + n;
            size = s;
            page_num = position / s + 1;
        } else {
            page_num += 1;
        }
    }
}

/// issue 13: `operatorUserId` from `SOBOT_OPERATOR_USER_ID`, unless the pipeline's
/// `filters` name one. Sent whatever the token: the document requires it under a company
/// token, and under an agent token the token's own id wins, so it never hurts.
pub(crate) fn push_operator(operator: Option<&String>, query: &mut Vec<(String, String)>) {
    if let Some(op) = operator
        && !query.iter().any(|(k, _)| k == "operatorUserId")
    {
        query.push(("operatorUserId".into(), op.clone()));
    }
}

/// issue 13: a refusal of the agent metrics under company app credentials without
/// `SOBOT_OPERATOR_USER_ID` says which setting is missing; other errors pass as they are.
fn operator_hint(engine: &Engine, error: crate::io::api::ApiError) -> crate::io::api::ApiError {
    use crate::io::api::ApiError;
    let refused = match &error {
        ApiError::Envelope { code, .. } => *code != 429 && !(500..600).contains(code),
        ApiError::Http { status, .. } => (400..500).contains(status) && *status != 429,
        _ => false,
    };
    if refused
        && engine.settings.operator_user_id.is_none()
        && engine
            .client
            .uses_company_app(crate::io::api::AuthScope::Company)
    {
        return ApiError::Config(format!(
            "{error}; the agent metrics need operatorUserId under a company token: set \
             SOBOT_OPERATOR_USER_ID to the user id of the operator they are read as"
        ));
    }
    error
}

/// The pipeline's `filters` as query parameters (lists joined with commas); also the
/// agent metrics stream's filters (issue 5, `watch_metrics`).
pub(crate) fn filter_query(p: &Pipeline) -> Vec<(String, String)> {
    p.filters
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
