//! Simulator report endpoints over real HTTP: the three Statistical Report searches,
//! indicator plans, View Agent Indicator, restatements and faults. OWNER: simulator helper.
//!
//! Figures are checked two ways: against `Dataset::report` / `Dataset::agent_metrics`
//! (the server's own code path, so this checks paging and the wire), and recomputed
//! independently from `Dataset::talks`, `Dataset::parties` and `Dataset::agent_histories`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::support::sim_http::{Client, config, start, utc};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Asia::Singapore;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sobot_sync::core::report::indicators::Family;
use sobot_sync::sim::{Faults, ReportQuery, SimConfig};

mod endpoints;
mod restatement;
mod searches;

const GATEWAY: &str = "/callservice/tm/tm-reports/gateway-number-table/_search";
const AGENT: &str = "/callservice/tm/tm-reports/agent-table/_search";
const DEPART: &str = "/callservice/tm/tm-reports/depart-table/_search";
const PLANS: &str = "/callservice/tm/tm-reports/gateway_number/check_plan";
const METRICS: &str = "/callservice/v6/webmsg/monitoring/agents-metrics";

/// Local midnight of `date` in Singapore (UTC+8, no DST).
fn sg_midnight(date: &str) -> DateTime<Utc> {
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap_or_else(|e| panic!("test date {date:?}: {e}"));
    Singapore
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("no midnight for {date}"))
}

/// The report searches these tests page through.
impl Client {
    /// `data` of a successful report search, asserting the envelope.
    async fn report(&self, path: &str, body: &Value) -> Value {
        let a = self.post(path, body).await;
        assert_eq!(a.status, StatusCode::OK);
        let v = a.json();
        assert_eq!(v["code"], 200, "{v}");
        v["data"].clone()
    }

    /// Every row of a report search, page by page, with the last page's data.
    async fn all_rows(&self, path: &str, body: &Value, page_size: u64) -> (Vec<Value>, Value) {
        let mut rows = Vec::new();
        let mut last = Value::Null;
        for page in 1.. {
            let mut b = body.clone();
            b["currPage"] = json!(page);
            b["pageSize"] = json!(page_size);
            let data = self.report(path, &b).await;
            let metric = data["metric"].as_array().cloned().unwrap_or_default();
            last = data;
            if metric.is_empty() {
                break;
            }
            assert!(metric.len() as u64 <= page_size);
            rows.extend(metric);
        }
        (rows, last)
    }
}

/// A counter or duration, sent as a number or a numeric string.
fn num(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or_else(|| panic!("not an integer: {n}")),
        Value::String(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a numeric string: {s:?}")),
        other => panic!("not a count: {other}"),
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The start instant of a half-hour/hour `result_date`, in either of its forms.
fn period_start(result_date: &str) -> DateTime<Utc> {
    let compact = result_date.trim().replace(" : ", ":");
    let start = NaiveDateTime::parse_from_str(&compact[..16], "%Y-%m-%d %H:%M")
        .unwrap_or_else(|e| panic!("result_date {result_date:?}: {e}"));
    Singapore
        .from_local_datetime(&start)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("no instant for {result_date}"))
}

/// The local `yyyy-MM-dd` of an epoch-ms instant in Singapore.
fn sg_day(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.with_timezone(&Singapore).format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn gateway_body(fields: &str, date_type: i64, from: &str, to: &str) -> Value {
    json!({
        "dimensions": 3, "dateType": date_type, "startDate": from, "startTime": "00:00",
        "endDate": to, "endTime": "24:00", "customerFields": fields,
        "currPage": 1, "pageSize": 15,
    })
}
