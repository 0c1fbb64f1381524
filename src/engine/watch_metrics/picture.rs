//! The in-memory picture of the agent metrics stream: the agents list and the summary,
//! built from a full message and kept current by the `replace` operations of incremental
//! messages.
//!
//! Reading is liberal where the API is sloppy (ids padded with spaces, numbers as
//! strings, a `data` envelope around the message, a leading `/` on paths) and strict
//! where a guess could corrupt the picture: an operation that is not a `replace` of a
//! known agent's field or of a summary field is counted and left out, never applied.

use serde_json::{Map, Value};
use std::collections::HashMap;

pub const FULL: &str = "EventAgentsMetricsWatch";
pub const CHANGED: &str = "EventAgentsMetricsChanged";

/// One message of the stream, read.
#[derive(Debug)]
pub enum Message {
    Full(Picture),
    Changes {
        /// `creationTime` in epoch ms; `None` when the message had none.
        at: Option<i64>,
        ops: Vec<Value>,
    },
}

/// The agents (in list order) and summary as of `as_of`.
#[derive(Debug, Clone, Default)]
pub struct Picture {
    /// `creationTime` of the newest message applied, epoch ms.
    pub as_of: i64,
    pub company_id: Option<String>,
    pub summary: Map<String, Value>,
    /// Agent UUID (trimmed) and the agent's fields, in list order.
    agents: Vec<(String, Map<String, Value>)>,
    index: HashMap<String, usize>,
    /// `agentsMetrics.total`: more than the list holds means the stream serves a page.
    pub total: Option<u64>,
    /// Entries of the full message's list left out (not an object, or no agentUUID).
    pub bad_entries: u64,
}

/// What applying one message's operations did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub applied: u64,
    pub unknown: u64,
    /// Why the first unknown operation was left out (for the log).
    pub first_problem: Option<String>,
}

/// Reads one event's data. Errors say what is wrong without quoting the data (it holds
/// customers' phone numbers).
pub fn parse_message(data: &str) -> Result<Message, String> {
    let value: Value =
        serde_json::from_str(data).map_err(|e| format!("not JSON ({e}), {} bytes", data.len()))?;
    let Value::Object(mut obj) = value else {
        return Err(format!("a JSON {}, not an object", kind(&value)));
    };
    // Tolerate the usual envelope around the message.
    if !obj.contains_key("MessageID")
        && let Some(Value::Object(inner)) = obj.remove("data")
    {
        obj = inner;
    }
    let id = match obj.get("MessageID") {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(other) => return Err(format!("MessageID is a {}", kind(other))),
        None => return Err("no MessageID".into()),
    };
    let at = match obj.get("creationTime") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(millis(v).ok_or_else(|| format!("creationTime is not a time: a {}", kind(v)))?)
        }
    };
    match id.as_str() {
        FULL => Picture::from_full(&obj, at).map(Message::Full),
        CHANGED => match obj.remove("list") {
            Some(Value::Array(ops)) => Ok(Message::Changes { at, ops }),
            Some(other) => Err(format!("list is a {}, not an array", kind(&other))),
            None => Err("no list of operations".into()),
        },
        other => Err(format!("unknown MessageID {other:?}")),
    }
}

impl Picture {
    fn from_full(obj: &Map<String, Value>, at: Option<i64>) -> Result<Self, String> {
        let metrics = match obj.get("agentsMetrics") {
            Some(Value::Object(m)) => m,
            Some(other) => return Err(format!("agentsMetrics is a {}", kind(other))),
            None => return Err("no agentsMetrics".into()),
        };
        let list = match metrics.get("list") {
            Some(Value::Array(l)) => l.as_slice(),
            None | Some(Value::Null) => &[],
            Some(other) => return Err(format!("agentsMetrics.list is a {}", kind(other))),
        };
        let summary = match obj.get("agentsSummary") {
            Some(Value::Object(s)) => s.clone(),
            _ => Map::new(),
        };
        let mut p = Picture {
            // A full message without a time is taken as of the client's clock.
            as_of: at.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
            company_id: obj
                .get("companyId")
                .and_then(Value::as_str)
                .map(|s| s.trim().to_string()),
            summary,
            total: metrics
                .get("total")
                .and_then(millis)
                .and_then(|t| u64::try_from(t).ok()),
            ..Picture::default()
        };
        for entry in list {
            let Value::Object(agent) = entry else {
                p.bad_entries += 1;
                continue;
            };
            let Some(id) = agent
                .get("agentUUID")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
            else {
                p.bad_entries += 1;
                continue;
            };
            if p.index.contains_key(id) {
                continue; // the same agent twice: the first wins, as in the polled pager
            }
            p.index.insert(id.to_string(), p.agents.len());
            p.agents.push((id.to_string(), agent.clone()));
        }
        Ok(p)
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Applies `replace` operations; anything else is counted, not applied.
    pub fn apply(&mut self, ops: &[Value]) -> Applied {
        let mut out = Applied::default();
        for op in ops {
            match self.apply_one(op) {
                Ok(()) => out.applied += 1,
                Err(why) => {
                    out.unknown += 1;
                    out.first_problem.get_or_insert(why);
                }
            }
        }
        out
    }

    fn apply_one(&mut self, op: &Value) -> Result<(), String> {
        let Value::Object(op) = op else {
            return Err(format!("an operation is a {}", kind(op)));
        };
        let name = op.get("op").and_then(Value::as_str).map(str::trim);
        if !name.is_some_and(|n| n.eq_ignore_ascii_case("replace")) {
            return Err(format!("unknown op {:?}", name.unwrap_or("(none)")));
        }
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .map(|p| p.trim().trim_start_matches('/'))
            .ok_or("an operation has no path")?;
        let value = op.get("value").ok_or_else(|| format!("{path}: no value"))?;
        if let Some(field) = path.strip_prefix("agentsSummary/") {
            if field.is_empty() || field.contains('/') {
                return Err(format!("unknown path {path:?}"));
            }
            self.summary.insert(field.to_string(), value.clone());
            return Ok(());
        }
        if let Some(field) = path.strip_prefix("agentsMetrics/list/") {
            if field.is_empty() || field.contains('/') || field == "agentUUID" {
                return Err(format!("unknown path {path:?}"));
            }
            let id = op
                .get("id")
                .and_then(Value::as_str)
                .map(str::trim)
                .unwrap_or_default();
            if id.is_empty() {
                return Err(format!("{path}: no agent id"));
            }
            let Some(&i) = self.index.get(id) else {
                return Err(format!("{path}: agent {id:?} is not in the picture"));
            };
            self.agents[i].1.insert(field.to_string(), value.clone());
            return Ok(());
        }
        Err(format!("unknown path {path:?}"))
    }

    /// One record per agent in the shape of View Agent Indicator's rows as the polled
    /// snapshot stores them: the agent's fields (its `agentUUID` trimmed), the summary as
    /// `agentsSummary.<field>`, `creationTime` and `companyId`.
    pub fn records(&self) -> Vec<Map<String, Value>> {
        self.agents
            .iter()
            .map(|(id, agent)| {
                let mut row = agent.clone();
                row.insert("agentUUID".into(), Value::from(id.as_str()));
                for (k, v) in &self.summary {
                    row.insert(format!("agentsSummary.{k}"), v.clone());
                }
                row.insert("creationTime".into(), Value::from(self.as_of));
                if let Some(c) = &self.company_id {
                    row.insert("companyId".into(), Value::from(c.as_str()));
                }
                row
            })
            .collect()
    }
}

/// Epoch milliseconds from a number or a numeric string.
fn millis(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full() -> Picture {
        let m = json!({
            "MessageID": "EventAgentsMetricsWatch",
            "companyId": " c1 ",
            "creationTime": 1000,
            "agentsSummary": {"outboundCallsCountToday": 10},
            "agentsMetrics": {"pageNum": 1, "pageSize": 15, "total": 2, "list": [
                {"agentUUID": " a1 ", "agentWorkStatus": 6},
                {"agentUUID": "a2", "agentWorkStatus": 1},
                {"agentName": "no uuid"},
            ]},
        });
        match parse_message(&m.to_string()) {
            Ok(Message::Full(p)) => p,
            other => panic!("not a full message: {other:?}"),
        }
    }

    #[test]
    fn a_full_message_builds_the_picture_with_trimmed_ids() {
        let p = full();
        assert_eq!(p.len(), 2);
        assert_eq!(p.bad_entries, 1);
        assert_eq!(p.total, Some(2));
        let r = p.records();
        assert_eq!(r[0]["agentUUID"], "a1");
        assert_eq!(r[0]["agentsSummary.outboundCallsCountToday"], 10);
        assert_eq!(r[0]["creationTime"], 1000);
        assert_eq!(r[1]["companyId"], "c1");
    }

    #[test]
    fn replaces_apply_and_everything_else_is_counted() {
        let mut p = full();
        let changes = json!({
            "MessageID": "EventAgentsMetricsChanged",
            "creationTime": "2000",
            "list": [
                {"op": "replace", "id": " a1 ", "path": "agentsMetrics/list/agentWorkStatus", "value": 7},
                {"op": "replace", "id": "", "path": "/agentsSummary/readyAgentsCount", "value": 3},
                {"op": "remove", "id": "a1", "path": "agentsMetrics/list/agentWorkStatus"},
                {"op": "replace", "id": "zz", "path": "agentsMetrics/list/agentWorkStatus", "value": 1},
                {"op": "replace", "id": "a2", "path": "agentsMetrics/list/agentUUID", "value": "x"},
                {"op": "replace", "id": "", "path": "agentsMetrics/total", "value": 9},
                {"op": "replace", "path": "agentsMetrics/list/agentWorkStatus", "value": 1},
                {"op": "replace", "id": "a2", "path": "agentsMetrics/list/agentWorkStatus"},
                42,
            ],
        });
        let Ok(Message::Changes { at, ops }) = parse_message(&changes.to_string()) else {
            panic!("changes not read");
        };
        assert_eq!(at, Some(2000));
        let applied = p.apply(&ops);
        assert_eq!((applied.applied, applied.unknown), (2, 7));
        assert!(applied.first_problem.is_some_and(|w| w.contains("remove")));
        let r = p.records();
        assert_eq!(r[0]["agentWorkStatus"], 7);
        assert_eq!(r[1]["agentWorkStatus"], 1);
        assert_eq!(r[1]["agentsSummary.readyAgentsCount"], 3);
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        for bad in [
            "",
            "{",
            "[1,2]",
            "{}",
            r#"{"MessageID": 5}"#,
            r#"{"MessageID": "EventOther"}"#,
            r#"{"MessageID": "EventAgentsMetricsChanged", "list": {}}"#,
            r#"{"MessageID": "EventAgentsMetricsChanged", "creationTime": "soon", "list": []}"#,
            r#"{"MessageID": "EventAgentsMetricsWatch", "agentsMetrics": []}"#,
            r#"{"MessageID": "EventAgentsMetricsWatch", "agentsMetrics": {"list": 3}}"#,
        ] {
            assert!(parse_message(bad).is_err(), "{bad:?} accepted");
        }
        let wrapped =
            r#"{"code": 200, "data": {"MessageID": "EventAgentsMetricsChanged", "list": []}}"#;
        assert!(matches!(
            parse_message(wrapped),
            Ok(Message::Changes { at: None, .. })
        ));
    }
}
