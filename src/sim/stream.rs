//! issue 5: Push Agent Indicator, `GET /callservice/v6/webmsg/monitoring/_watch/agents-metrics`,
//! as server-sent events.
//!
//! The first message of a connection is the full picture (`EventAgentsMetricsWatch`, the
//! same body as View Agent Indicator) at the simulated now floored to the tick grid
//! (`SimConfig::metrics_tick_ms`, multiples of it since the Unix epoch). Then one
//! `EventAgentsMetricsChanged` message per tick, in order, each with `creationTime` =
//! its tick and a `list` of `replace` operations for every field that changed since the
//! previous tick (an empty `list` when nothing did, so a client's event clock advances
//! even in a quiet hour). Every tick is sent, however far the client lags: a message is
//! made when the client can take it and its tick has come on the simulated clock, from
//! the same model as View Agent Indicator (`metrics::all_agents`). When the filtered
//! set of agents changes (an agent enters or leaves a status filter), a new full message
//! is sent instead, since `replace` cannot add or remove an agent.
//!
//! Agent ids in `replace` operations and `agentUUID`s of full messages are padded with
//! spaces, as in the API document's example. Fault switches (`Faults::stream_*`) cut the
//! connection after N messages or at random, and slip bad messages in between.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::config::fires;
use super::metrics::{AgentMetrics, Selection, all_agents, body, idempotency_key, summary};
use super::protocol::envelope_error;
use super::rng::Rng;
use super::state::{RequestCtx, Shared};

/// How often a stream waiting for its next tick looks at the simulated clock again.
const CLOCK_POLL: Duration = Duration::from_millis(5);

/// How long a connection about to be cut waits for its sent messages to leave.
const FLUSH_BEFORE_CUT: Duration = Duration::from_millis(30);

/// The kinds of bad message `stream_bad_every` rotates through; none changes the state.
const BAD_KINDS: u64 = 6;

/// The agents and the summary of a message, as JSON objects.
type Sent = (Vec<Map<String, Value>>, Map<String, Value>);

struct Conn {
    shared: Arc<Shared>,
    tz: Tz,
    sel: Selection,
    /// The tick of the next message, in epoch milliseconds.
    next_ms: i64,
    /// The agents and summary of the last message, as JSON objects.
    prev: Option<Sent>,
    sent: u64,
    bad_sent: u64,
    bad_due: bool,
    rng: Rng,
    dead: bool,
}

/// `GET /callservice/v6/webmsg/monitoring/_watch/agents-metrics`
pub(crate) async fn watch_agents_metrics(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    // issue 13: the Literal dialect wants operatorUserId under a company token here too.
    if let Some(refusal) = super::metrics::operator_required(&shared, &ctx, raw.as_deref()) {
        return refusal;
    }
    let sel = match Selection::parse(raw.as_deref(), shared.max_page_size) {
        Ok(s) => s,
        Err(m) => return envelope_error(400, &m),
    };
    let key = match idempotency_key(&headers) {
        Ok(k) => k,
        Err(m) => return envelope_error(400, &m),
    };
    let tick = i64::try_from(shared.metrics_tick_ms).unwrap_or(1000).max(1);
    let key_hash = key.bytes().fold(0u64, |h, b| {
        h.wrapping_mul(0x100_0000_01b3).wrapping_add(u64::from(b))
    });
    let conn = Conn {
        rng: Rng::new(&[shared.seed, 0x5745_4154, key_hash]),
        shared,
        tz: ctx.tz,
        sel,
        next_ms: ctx.now_ms.div_euclid(tick) * tick,
        prev: None,
        sent: 0,
        bad_sent: 0,
        bad_due: false,
        dead: false,
    };
    let events = futures::stream::unfold(conn, |mut c| async move {
        let item = c.step().await?;
        Some((item, c))
    });
    Sse::new(events).into_response()
}

impl Conn {
    /// The next event, an error that cuts the connection, or `None` after the cut.
    async fn step(&mut self) -> Option<Result<Event, std::io::Error>> {
        if self.dead {
            return None;
        }
        let faults = self.shared.faults();
        if self.bad_due {
            self.bad_due = false;
            self.bad_sent += 1;
            // Stamped with the last tick sent: a bad message must not move a client's
            // clock past a change it has not seen yet.
            let tick = i64::try_from(self.shared.metrics_tick_ms).unwrap_or(1000);
            return Some(Ok(bad_event(self.bad_sent, self.next_ms - tick.max(1))));
        }
        let drop_now = self.sent > 0
            && (faults.stream_drop_after.is_some_and(|n| self.sent >= n)
                || self.rng.chance(faults.stream_drop_fraction));
        if drop_now {
            // Let the messages already sent leave first: a cut that also ate the last
            // message would make "after N messages" mean N - 1.
            tokio::time::sleep(FLUSH_BEFORE_CUT).await;
            self.dead = true;
            return Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "simulated dropped connection",
            )));
        }
        while self.shared.now().timestamp_millis() < self.next_ms {
            tokio::time::sleep(CLOCK_POLL).await;
        }
        let at = self.next_ms;
        let ds = &self.shared.dataset;
        let list = self.sel.filter(all_agents(ds, self.tz, at, &faults));
        let data = self.message(at, &list);
        self.next_ms += i64::try_from(self.shared.metrics_tick_ms)
            .unwrap_or(1000)
            .max(1);
        self.sent += 1;
        if fires(faults.stream_bad_every, self.sent) {
            self.bad_due = true;
        }
        Some(Ok(Event::default().data(data.to_string())))
    }

    /// The full message, or the changes since the previous one.
    fn message(&mut self, at: i64, list: &[AgentMetrics]) -> Value {
        let ds = &self.shared.dataset;
        let page = body(ds, at, list, self.sel.page_num, self.sel.page_size);
        let agents: Vec<Map<String, Value>> = page["agentsMetrics"]["list"]
            .as_array()
            .map(|l| l.iter().filter_map(|a| a.as_object().cloned()).collect())
            .unwrap_or_default();
        let sum = match serde_json::to_value(summary(list)) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let same_agents = self.prev.as_ref().is_some_and(|(before, _)| {
            before.len() == agents.len()
                && before
                    .iter()
                    .zip(&agents)
                    .all(|(a, b)| a.get("agentUUID") == b.get("agentUUID"))
        });
        let out = match self.prev.as_ref().filter(|_| same_agents) {
            None => None,
            Some((before, sum_before)) => {
                let mut ops = Vec::new();
                for (old, new) in before.iter().zip(&agents) {
                    let id = new.get("agentUUID").and_then(Value::as_str).unwrap_or("");
                    for (field, value) in new {
                        if old.get(field) != Some(value) {
                            ops.push(json!({
                                "op": "replace",
                                "id": format!(" {id} "),
                                "path": format!("agentsMetrics/list/{field}"),
                                "value": value,
                            }));
                        }
                    }
                }
                for (field, value) in &sum {
                    if sum_before.get(field) != Some(value) {
                        ops.push(json!({
                            "op": "replace",
                            "id": "",
                            "path": format!("agentsSummary/{field}"),
                            "value": value,
                        }));
                    }
                }
                Some(json!({
                    "MessageID": "EventAgentsMetricsChanged",
                    "companyId": format!(" {} ", ds.generator().company_id()),
                    "creationTime": at,
                    "list": ops,
                }))
            }
        };
        self.prev = Some((agents, sum));
        out.unwrap_or_else(|| padded(page))
    }
}

/// A full message with its ids padded as the API document shows them.
fn padded(mut page: Value) -> Value {
    if let Some(Value::String(c)) = page.get_mut("companyId") {
        *c = format!(" {c} ");
    }
    if let Some(list) = page
        .get_mut("agentsMetrics")
        .and_then(|m| m.get_mut("list"))
        .and_then(Value::as_array_mut)
    {
        for a in list {
            if let Some(Value::String(u)) = a.get_mut("agentUUID") {
                *u = format!(" {u} ");
            }
        }
    }
    page
}

/// A message a client must survive without changing its picture.
fn bad_event(n: u64, at: i64) -> Event {
    let data = match n % BAD_KINDS {
        0 => "{\"MessageID\": \"EventAgentsMetricsChanged\", \"list\": [".to_string(),
        1 => json!({"MessageID": "EventSomethingElse", "creationTime": at}).to_string(),
        2 => json!({
            "MessageID": "EventAgentsMetricsChanged",
            "creationTime": at,
            "list": [
                {"op": "remove", "id": "", "path": "agentsSummary/outboundCallsCountToday"},
                {"op": "add", "id": "", "path": "agentsMetrics/list/-", "value": {}},
            ],
        })
        .to_string(),
        3 => json!({
            "MessageID": "EventAgentsMetricsChanged",
            "creationTime": at,
            "list": [
                {"op": "replace", "id": " no-such-agent ", "path": "agentsMetrics/list/agentWorkStatus", "value": 7},
                {"op": "replace", "id": "", "path": "agentsMetrics/pageInfo/x", "value": 1},
                {"op": "replace", "path": "agentsMetrics/list/agentWorkStatus", "value": 1},
                "not an operation",
            ],
        })
        .to_string(),
        4 => json!([1, 2, 3]).to_string(),
        _ => json!({
            "MessageID": "EventAgentsMetricsChanged",
            "creationTime": "yesterday",
            "list": {"op": "replace"},
        })
        .to_string(),
    };
    Event::default().data(data)
}
