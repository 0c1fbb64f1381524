//! View Agent Indicator (`GET /callservice/v6/webmsg/monitoring/agents-metrics`): every
//! agent's state at the simulated now, read from the agent histories and talks.
//!
//! - login / work status and busy reason: the agent-history interval in progress at now
//!   (the latest-starting one, since a new hour's chain may start before the previous
//!   one ends); none means offline (0 / 0). In-progress intervals count here although
//!   the history search only shows them once they end: monitoring is live.
//! - `lastWorkStatusChangedTime`: the start of that interval; `lastLoginStatusChangedTime`:
//!   the start of the run of touching intervals with the same login status.
//! - `callType`, `customerNumber`: the agent's leg in progress at now, if any.
//! - the `...Today` counts: the agent's legs of talks started since local midnight (in
//!   the request's zone) and visible at now, the same legs the Agent Report counts for
//!   that day (inbound answered / missed, outbound, outbound answered).
//!
//! The document's example puts `agentsSummary` and `agentsMetrics` at the top of the
//! body; the simulator serves them inside the usual envelope's `data`, and without the
//! envelope in the `Literal` dialect (issue 13).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{Value, json};

use super::config::{Dialect, Faults};
use super::dataset::Dataset;
use super::facts::IntervalFact;
use super::generate::HOUR_MS;
use super::model::mask_number;
use super::protocol::{envelope_error, success, unwrapped};
use super::state::{RequestCtx, Shared};
use crate::core::timeutil::{local_date, local_midnight};

const DEFAULT_PAGE_SIZE: usize = 15;

/// One entry of `agentsMetrics.list` ("Agent List").
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AgentMetrics {
    #[serde(rename = "agentUUID")]
    pub(super) agent_uuid: String,
    #[serde(rename = "agentID")]
    agent_id: String,
    agent_name: String,
    phone_type: u8,
    #[serde(rename = "thisDN")]
    this_dn: String,
    agent_login_status: u8,
    agent_work_status: u8,
    agent_busy_reason_code: u8,
    last_work_status_changed_time: i64,
    last_login_status_changed_time: i64,
    customer_number: String,
    customer_privacy_number: String,
    call_type: u8,
    inbound_established_calls_count_today: i64,
    inbound_abandon_calls_count_today: i64,
    outbound_calls_count_today: i64,
    outbound_established_calls_count_today: i64,
    client_type: &'static str,
    #[serde(skip)]
    department_id: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Summary {
    inbound_established_calls_count_today: i64,
    inbound_abandon_calls_count_today: i64,
    outbound_calls_count_today: i64,
    outbound_established_calls_count_today: i64,
}

/// Every agent's metrics at `now_ms`, sorted by agent number.
pub(super) fn all_agents(ds: &Dataset, tz: Tz, now_ms: i64, faults: &Faults) -> Vec<AgentMetrics> {
    let agents = ds.generator().agents();
    let n = agents.len();
    let now = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_default();
    let day_start = local_midnight(tz, local_date(tz, now)).timestamp_millis();
    let mut counts = vec![[0i64; 4]; n];
    ds.each_talk(day_start, now_ms.saturating_add(1), now_ms, faults, |t| {
        for leg in &t.legs {
            if let Some(c) = counts.get_mut(leg.agent) {
                if t.call_type == 2 {
                    c[usize::from(!leg.bridged)] += 1;
                } else {
                    c[2] += 1;
                    c[3] += i64::from(leg.bridged);
                }
            }
        }
    });
    // Live state: every talk and interval that has started, whatever its visibility.
    let mut on_call: Vec<Option<(u8, String)>> = vec![None; n];
    ds.each_talk(
        now_ms - 2 * HOUR_MS,
        now_ms.saturating_add(1),
        i64::MAX,
        &Faults::default(),
        |t| {
            for leg in &t.legs {
                if leg.start_ms <= now_ms
                    && now_ms < leg.end_ms
                    && let Some(slot) = on_call.get_mut(leg.agent)
                {
                    *slot = Some((t.call_type, t.customer.to_string()));
                }
            }
        },
    );
    let mut recent: Vec<Vec<IntervalFact>> = vec![Vec::new(); n];
    ds.each_interval(
        now_ms - 3 * HOUR_MS,
        now_ms.saturating_add(1),
        now_ms,
        faults,
        true,
        |i| {
            if let Some(v) = recent.get_mut(i.agent) {
                v.push(*i);
            }
        },
    );
    let mut out: Vec<AgentMetrics> = agents
        .iter()
        .enumerate()
        .map(|(a, agent)| {
            let mut hist = std::mem::take(&mut recent[a]);
            hist.sort_by_key(|i| (i.start_ms, i.end_ms));
            let current = hist
                .iter()
                .rposition(|i| i.start_ms <= now_ms && now_ms < i.end_ms);
            let (login, work, reason, work_changed, login_changed) = match current {
                Some(c) => {
                    let cur = hist[c];
                    let mut run_start = cur.start_ms;
                    let mut k = c;
                    while k > 0 {
                        let prev = hist[k - 1];
                        if prev.login != cur.login || prev.end_ms < run_start {
                            break;
                        }
                        run_start = run_start.min(prev.start_ms);
                        k -= 1;
                    }
                    let reason = if cur.login == 2 { cur.no_ready } else { 0 };
                    (cur.login, cur.work, reason, cur.start_ms, run_start)
                }
                None => {
                    let ended = hist
                        .iter()
                        .filter(|i| i.end_ms <= now_ms)
                        .map(|i| i.end_ms)
                        .max()
                        .unwrap_or(0);
                    (0, 0, 0, ended, ended)
                }
            };
            let (call_type, customer) = on_call[a].clone().unwrap_or((0, String::new()));
            let c = counts[a];
            AgentMetrics {
                agent_uuid: agent.uuid.clone(),
                agent_id: agent.id.clone(),
                agent_name: agent.name.clone(),
                phone_type: agent.phone_type,
                this_dn: agent.dn.clone(),
                agent_login_status: login,
                agent_work_status: work,
                agent_busy_reason_code: reason,
                last_work_status_changed_time: work_changed,
                last_login_status_changed_time: login_changed,
                customer_privacy_number: if customer.is_empty() {
                    String::new()
                } else {
                    mask_number(&customer)
                },
                customer_number: customer,
                call_type,
                inbound_established_calls_count_today: c[0],
                inbound_abandon_calls_count_today: c[1],
                outbound_calls_count_today: c[2],
                outbound_established_calls_count_today: c[3],
                client_type: "Web",
                department_id: agent.department_id.clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| (a.agent_id.len(), &a.agent_id).cmp(&(b.agent_id.len(), &b.agent_id)));
    // issue 13: rows without their key, as a fault.
    if let Some(k) = faults.metrics_no_uuid_every.filter(|k| *k > 0) {
        for (i, a) in out.iter_mut().enumerate() {
            if (i as u64 + 1).is_multiple_of(k) {
                a.agent_uuid.clear();
            }
        }
    }
    out
}

pub(super) fn summary(list: &[AgentMetrics]) -> Summary {
    list.iter().fold(Summary::default(), |mut s, a| {
        s.inbound_established_calls_count_today += a.inbound_established_calls_count_today;
        s.inbound_abandon_calls_count_today += a.inbound_abandon_calls_count_today;
        s.outbound_calls_count_today += a.outbound_calls_count_today;
        s.outbound_established_calls_count_today += a.outbound_established_calls_count_today;
        s
    })
}

pub(super) fn body(
    ds: &Dataset,
    now_ms: i64,
    list: &[AgentMetrics],
    page_num: usize,
    page_size: usize,
) -> Value {
    let start = page_num.saturating_sub(1).saturating_mul(page_size);
    let page: Vec<&AgentMetrics> = list.iter().skip(start).take(page_size).collect();
    json!({
        "MessageID": "EventAgentsMetricsWatch",
        "companyId": ds.generator().company_id(),
        "creationTime": now_ms,
        "agentsSummary": summary(list),
        "agentsMetrics": {
            "pageNum": page_num,
            "pageSize": page_size,
            "total": list.len(),
            "list": page,
        },
    })
}

impl Dataset {
    /// Ground truth: View Agent Indicator's `data` at simulated now `now` for a request
    /// in zone `tz`, with every agent on one page (`pageNum` 1, `pageSize` = agent count)
    /// and no filters. Same code path as the server.
    pub fn agent_metrics(&self, tz: Tz, now: DateTime<Utc>, faults: &Faults) -> Value {
        let now_ms = now.timestamp_millis();
        let list = all_agents(self, tz, now_ms, faults);
        body(self, now_ms, &list, 1, list.len().max(1))
    }
}

/// Query parameters, with repeated keys and `name[]` spellings merged, comma lists split.
fn params(raw: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let key = k.trim_end_matches("[]").to_string();
        let e = out.entry(key).or_default();
        e.extend(
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        );
    }
    out
}

fn int_list(p: &HashMap<String, Vec<String>>, name: &str) -> Result<Vec<i64>, String> {
    p.get(name)
        .map(|v| {
            v.iter()
                .map(|s| {
                    s.parse::<i64>()
                        .map_err(|_| format!("{name} must hold integers, got {s:?}"))
                })
                .collect()
        })
        .unwrap_or_else(|| Ok(Vec::new()))
}

fn positive(p: &HashMap<String, Vec<String>>, name: &str, default: usize) -> Result<usize, String> {
    match p.get(name).and_then(|v| v.first()) {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{name} must be an integer >= 1, got {s:?}")),
    }
}

/// A request's paging and filters (shared by the polled view and the stream).
pub(super) struct Selection {
    pub(super) page_num: usize,
    pub(super) page_size: usize,
    work: Vec<i64>,
    login: Vec<i64>,
    reasons: Vec<i64>,
    agent_type: Option<i64>,
    departments: Vec<String>,
    agents: Vec<String>,
}

impl Selection {
    /// Reads `product`, paging and filters from the query; the error is the message of
    /// the envelope error (code 400) to answer.
    pub(super) fn parse(raw: Option<&str>, max_page_size: usize) -> Result<Self, String> {
        let p = params(raw);
        match p.get("product").and_then(|v| v.first()).map(String::as_str) {
            Some("scc") => {}
            Some(other) => return Err(format!("product must be scc, got {other:?}")),
            None => return Err("product is required (product=scc)".into()),
        }
        let filters = (|| -> Result<_, String> {
            Ok((
                positive(&p, "pageNum", 1)?,
                positive(&p, "pageSize", DEFAULT_PAGE_SIZE)?.min(max_page_size),
                int_list(&p, "agentWorkStatuses")?,
                int_list(&p, "agentLoginStatuses")?,
                int_list(&p, "agentBusyReasonCodes")?,
                int_list(&p, "agentType")?.first().copied(),
            ))
        })();
        let (page_num, page_size, work, login, reasons, agent_type) = filters?;
        Ok(Self {
            page_num,
            page_size,
            work,
            login,
            reasons,
            agent_type,
            departments: p.get("departmentIds").cloned().unwrap_or_default(),
            agents: p.get("agents").cloned().unwrap_or_default(),
        })
    }

    /// The agents the filters keep, in list order.
    pub(super) fn filter(&self, all: Vec<AgentMetrics>) -> Vec<AgentMetrics> {
        all.into_iter()
            .filter(|a| self.departments.is_empty() || self.departments.contains(&a.department_id))
            .filter(|a| {
                self.agents.is_empty()
                    || match self.agent_type {
                        Some(0) => self.agents.contains(&a.agent_id),
                        Some(1) => self.agents.contains(&a.agent_uuid),
                        _ => {
                            self.agents.contains(&a.agent_id) || self.agents.contains(&a.agent_uuid)
                        }
                    }
            })
            .filter(|a| self.work.is_empty() || self.work.contains(&i64::from(a.agent_work_status)))
            .filter(|a| {
                self.login.is_empty() || self.login.contains(&i64::from(a.agent_login_status))
            })
            .filter(|a| {
                self.reasons.is_empty()
                    || self.reasons.contains(&i64::from(a.agent_busy_reason_code))
            })
            .collect()
    }
}

/// The `Idempotency-Key` header, required by both monitoring endpoints; the error is
/// the message of the envelope error (code 400) to answer.
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<&str, String> {
    let key = headers
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    if key.is_empty() {
        return Err("Idempotency-Key header is required".into());
    }
    Ok(key)
}

/// issue 13: in the Literal dialect the agent metrics are refused without
/// `operatorUserId` under a company token, as the document's parameter table states (a
/// static token stands for an agent token, which needs none).
pub(super) fn operator_required(
    shared: &Shared,
    ctx: &RequestCtx,
    raw: Option<&str>,
) -> Option<Response> {
    if shared.dialect != super::config::Dialect::Literal
        || ctx.token != super::auth::TokenKind::Company
    {
        return None;
    }
    let given = params(raw)
        .get("operatorUserId")
        .is_some_and(|v| v.iter().any(|x| !x.trim().is_empty()));
    (!given).then(|| {
        envelope_error(
            400,
            "operatorUserId is required when a company token is used",
        )
    })
}

/// `GET /callservice/v6/webmsg/monitoring/agents-metrics`
pub(crate) async fn agents_metrics(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Some(refusal) = operator_required(&shared, &ctx, raw.as_deref()) {
        return refusal;
    }
    let sel = match Selection::parse(raw.as_deref(), shared.max_page_size) {
        Ok(s) => s,
        Err(m) => return envelope_error(400, &m),
    };
    if let Err(m) = idempotency_key(&headers) {
        return envelope_error(400, &m);
    }
    let ds = shared.dataset.clone();
    let list = sel.filter(all_agents(&ds, ctx.tz, ctx.now_ms, &ctx.faults));
    let body = body(&ds, ctx.now_ms, &list, sel.page_num, sel.page_size);
    // issue 13: the Literal dialect answers as the document's example shows, without
    // the envelope.
    match shared.dialect {
        Dialect::Literal => unwrapped("AgentsMetrics", body),
        Dialect::Enveloped => success("AgentsMetrics", body),
    }
}
