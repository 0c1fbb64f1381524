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
use sobot_sync::report::indicators::Family;
use sobot_sync::sim::{self, Faults, ReportQuery, SimConfig};

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

#[tokio::test]
async fn gateway_day_report_adds_up_from_talks_and_pages_exactly() {
    let sim = start(config("2024-01-10T00:00:00Z")).await;
    let client = Client::new(&sim);
    let fields = "inbound_calls,outbound_calls,inbound_agent_answered_calls,outbound_answer_ratio";
    let body = gateway_body(fields, 13, "2024-01-03", "2024-01-05");
    let (rows, last) = client.all_rows(GATEWAY, &body, 5).await;

    // 3 days x 3 relay numbers, each row once, ordered by day then relay number.
    assert_eq!(last["total"], 9);
    assert_eq!(rows.len(), 9);
    let keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| (text(&r["result_date"]), text(&r["gateway_number"])))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted);
    assert_eq!(keys[0].0, "2024-01-03");

    // Independent recount from the talks.
    let ds = sim.dataset();
    let talks = ds.talks(sg_midnight("2024-01-03"), sg_midnight("2024-01-06"));
    let mut expected: BTreeMap<(String, String, i64), i64> = BTreeMap::new();
    let mut answered: BTreeMap<(String, String), i64> = BTreeMap::new();
    for t in &talks {
        let day = sg_day(t["startTime"].as_i64().unwrap_or(0));
        let gw = text(&t["gatewayNumber"]);
        let ct = t["callType"].as_i64().unwrap_or(0);
        *expected.entry((day.clone(), gw.clone(), ct)).or_default() += 1;
        if ct == 2 && t["callResult"] == 8 {
            *answered.entry((day, gw)).or_default() += 1;
        }
    }
    for r in &rows {
        let k = (text(&r["result_date"]), text(&r["gateway_number"]));
        let get = |ct: i64| {
            expected
                .get(&(k.0.clone(), k.1.clone(), ct))
                .copied()
                .unwrap_or(0)
        };
        assert_eq!(num(&r["inbound_calls"]), get(2), "{r}");
        assert_eq!(num(&r["outbound_calls"]), get(3), "{r}");
        assert_eq!(
            num(&r["inbound_agent_answered_calls"]),
            answered.get(&k).copied().unwrap_or(0),
            "{r}"
        );
        assert!(r["outbound_answer_ratio"].is_f64(), "{r}");
    }
    let inbound = talks.iter().filter(|t| t["callType"] == 2).count() as i64;
    assert_eq!(num(&last["amount"]["inbound_calls"]), inbound);
    assert_eq!(
        num(&last["amount"]["outbound_calls"]),
        talks.len() as i64 - inbound
    );
    // Some counters come as numeric strings, as the API sends them.
    assert!(
        rows.iter()
            .any(|r| r["inbound_calls"].is_string() || r["outbound_calls"].is_string())
    );

    // The ground truth is the same rows and amount.
    let q =
        ReportQuery::parse(Family::GatewayNumbers, &body).unwrap_or_else(|e| panic!("query: {e}"));
    let truth = ds.report(
        &q,
        Singapore,
        utc("2024-01-10T00:00:00Z"),
        &Faults::default(),
    );
    assert_eq!(truth.rows, rows);
    assert_eq!(truth.amount, last["amount"]);
    assert_eq!(truth.total, 9);
    assert_eq!(sim.stats().count("gateway-number-table"), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn records_not_visible_at_now_do_not_count() {
    // 12:00 local on 2024-01-04: the afternoon has not happened yet.
    let now = "2024-01-04T04:00:00Z";
    let sim = start(config(now)).await;
    let client = Client::new(&sim);
    let body = gateway_body(
        "inbound_calls,outbound_calls",
        13,
        "2024-01-04",
        "2024-01-04",
    );
    let data = client.report(GATEWAY, &body).await;
    let talks = sim
        .dataset()
        .talks(sg_midnight("2024-01-04"), sg_midnight("2024-01-05"));
    let ended = talks
        .iter()
        .filter(|t| t["endTime"].as_i64().unwrap_or(i64::MAX) <= utc(now).timestamp_millis())
        .count() as i64;
    let counted = num(&data["amount"]["inbound_calls"]) + num(&data["amount"]["outbound_calls"]);
    assert_eq!(counted, ended);
    assert!(ended < talks.len() as i64);

    // Late records are held back further.
    sim.set_faults(Faults {
        late_fraction: 0.5,
        late_secs: 24 * 3600,
        ..Faults::default()
    });
    let late = client.report(GATEWAY, &body).await;
    let counted_late =
        num(&late["amount"]["inbound_calls"]) + num(&late["amount"]["outbound_calls"]);
    assert!(counted_late < counted, "{counted_late} vs {counted}");
    sim.shutdown().await;
}

#[tokio::test]
async fn agent_status_half_hours_equal_history_overlaps() {
    let sim = start(config("2024-01-10T00:00:00Z")).await;
    let client = Client::new(&sim);
    let body = json!({
        "dimensions": 9, "dateType": 11, "startDate": "2024-01-04", "startTime": "08 : 00",
        "endDate": "2024-01-04", "endTime": "12:00", "agentReportType": 4,
        "customerFields": "agent_login_sum_duration,agent_talking_sum_duration,agentFirstLogin_timestamp,workReady_percent",
        "currPage": 1, "pageSize": 200,
    });
    let data = client.report(AGENT, &body).await;
    let rows = data["metric"].as_array().cloned().unwrap_or_default();
    assert_eq!(data["total"], 8 * 12);
    assert_eq!(rows.len(), 8 * 12);
    assert!(
        rows.iter().any(|r| text(&r["result_date"]).contains(" : ")),
        "some rows use the spaced form"
    );
    assert!(
        rows.iter()
            .any(|r| !text(&r["result_date"]).contains(" : "))
    );
    let first = text(&rows[0]["result_date"]);
    assert_eq!(
        first.trim().replace(" : ", ":"),
        "2024-01-04 08:00 2024-01-04 08:30"
    );

    // Independent recount: each history interval's overlap with the half hour, in seconds.
    let from = period_start(&first);
    let hist = sim.dataset().agent_histories(
        from - chrono::Duration::hours(2),
        from + chrono::Duration::hours(4),
    );
    let mut login_total = 0;
    for r in &rows {
        let p0 = period_start(&text(&r["result_date"])).timestamp_millis();
        let p1 = p0 + 1_800_000;
        let agent = text(&r["serviceId"]);
        let (mut login, mut talking, mut first_login) = (0i64, 0i64, None::<i64>);
        for h in hist.iter().filter(|h| text(&h["agentUUID"]) == agent) {
            let (s, e) = (
                h["startTimeMs"].as_i64().unwrap_or(0),
                h["endTimeMs"].as_i64().unwrap_or(0),
            );
            // Whole-second ticks of the overlap, as the simulator documents.
            let overlap = (e.min(p1) / 1000 - s.max(p0) / 1000).max(0);
            if h["loginStatus"] != 0 {
                login += overlap;
                if h["workStatus"] == 7 {
                    talking += overlap;
                }
                if (p0..p1).contains(&s) {
                    first_login = Some(first_login.map_or(s, |f: i64| f.min(s)));
                }
            }
        }
        assert_eq!(num(&r["agent_login_sum_duration"]), login, "{r}");
        assert_eq!(num(&r["agent_talking_sum_duration"]), talking, "{r}");
        match first_login {
            Some(t) => assert_eq!(r["agentFirstLogin_timestamp"], t, "{r}"),
            None => assert_eq!(r["agentFirstLogin_timestamp"], "", "{r}"),
        }
        assert!(r["workReady_percent"].is_f64());
        login_total += login;
    }
    assert!(login_total > 0);
    assert_eq!(
        num(&data["amount"]["agent_login_sum_duration"]),
        login_total
    );
    // Coarser periods over the same range add up to the same seconds.
    let mut hours = body.clone();
    hours["dateType"] = json!(12);
    let hourly = client.report(AGENT, &hours).await;
    assert_eq!(hourly["total"], 4 * 12);
    assert_eq!(hourly["amount"], data["amount"]);
    assert_eq!(sim.stats().count("agent-table"), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn department_sums_equal_agent_sums_and_week_month_forms() {
    let sim = start(config("2024-02-10T00:00:00Z")).await;
    let client = Client::new(&sim);
    let fields = "inbound_agent_partits,inbound_agent_answer_partits,inbound_agentTalk_duration";
    let range = |dims: i64, date_type: i64, from: &str, to: &str| {
        json!({
            "dimensions": dims, "dateType": date_type, "weekType": 0,
            "startDate": from, "endDate": to, "callType": 2, "agentReportType": 2,
            "customerFields": fields, "currPage": 1, "pageSize": 200,
        })
    };
    let depts = client
        .report(DEPART, &range(12, 14, "2024-01-03", "2024-01-09"))
        .await;
    let agents = client
        .report(AGENT, &range(9, 14, "2024-01-03", "2024-01-09"))
        .await;
    let weeks: BTreeSet<String> = depts["metric"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| text(&r["result_date"]))
        .collect();
    assert_eq!(
        weeks.into_iter().collect::<Vec<_>>(),
        ["2024-01-01 2024-01-07", "2024-01-08 2024-01-14"]
    );

    // Agent -> department, from the parties of the same days.
    let ds = sim.dataset();
    let mut dept_of: HashMap<String, String> = HashMap::new();
    for t in ds.talks(sg_midnight("2024-01-03"), sg_midnight("2024-01-10")) {
        for p in ds.parties(&text(&t["callID"])) {
            dept_of.insert(text(&p["agentUUID"]), text(&p["departmentId"]));
        }
    }
    let mut summed: BTreeMap<(String, String, &str), i64> = BTreeMap::new();
    for r in agents["metric"].as_array().into_iter().flatten() {
        let dept = dept_of
            .get(&text(&r["serviceId"]))
            .cloned()
            .unwrap_or_default();
        for f in fields.split(',') {
            *summed
                .entry((text(&r["result_date"]), dept.clone(), f))
                .or_default() += num(&r[f]);
        }
    }
    let mut checked = 0;
    for r in depts["metric"].as_array().into_iter().flatten() {
        assert!(!text(&r["departName"]).is_empty());
        for f in fields.split(',') {
            let key = (text(&r["result_date"]), text(&r["departId"]), f);
            assert_eq!(
                num(&r[f]),
                summed.get(&key).copied().unwrap_or(0),
                "{r} {f}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6);
    for f in fields.split(',') {
        assert_eq!(num(&depts["amount"][f]), num(&agents["amount"][f]), "{f}");
    }
    assert!(num(&depts["amount"]["inbound_agent_partits"]) > 0);

    let months = client
        .report(DEPART, &range(12, 15, "2024-01-30", "2024-02-02"))
        .await;
    let labels: BTreeSet<String> = months["metric"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| text(&r["result_date"]))
        .collect();
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        ["2024-01", "2024-02"]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_indicators_and_bad_fields_are_envelope_errors() {
    let sim = start(config("2024-01-10T00:00:00Z")).await;
    let client = Client::new(&sim);
    let body = gateway_body(
        "inbound_calls,no_such_indicator",
        13,
        "2024-01-03",
        "2024-01-03",
    );
    let v = client.post(GATEWAY, &body).await.json();
    assert_eq!(v["code"], 400, "{v}");
    assert!(text(&v["message"]).contains("no_such_indicator"), "{v}");
    // An agent indicator is unknown to the relay number report.
    let body = gateway_body("agent_login_sum_duration", 13, "2024-01-03", "2024-01-03");
    let v = client.post(GATEWAY, &body).await.json();
    assert!(
        text(&v["message"]).contains("agent_login_sum_duration"),
        "{v}"
    );
    let mut bad = gateway_body("inbound_calls", 13, "2024-01-03", "2024-01-03");
    bad["dateType"] = json!({"not": "a number"});
    let v = client.post(GATEWAY, &bad).await.json();
    assert_eq!(v["code"], 400);
    assert!(text(&v["message"]).contains("dateType"), "{v}");
    let v = client.post(DEPART, &json!({"dimensions": 12})).await.json();
    assert_eq!(v["code"], 400);
    assert!(text(&v["message"]).contains("dateType"), "{v}");
    let a = client
        .send(
            client
                .http
                .post(format!("{}{AGENT}", client.base))
                .body("{not json"),
        )
        .await;
    assert_eq!(a.json()["code"], 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn restatement_changes_only_that_day_and_its_week_and_month() {
    let sim = start(config("2024-01-20T00:00:00Z")).await;
    let client = Client::new(&sim);
    let fields = "inbound_calls,outbound_calls";
    let days = gateway_body(fields, 13, "2024-01-08", "2024-01-10");
    let weeks = gateway_body(fields, 14, "2024-01-01", "2024-01-14");
    let months = gateway_body(fields, 15, "2024-01-01", "2024-01-14");
    let agent_days = json!({
        "dimensions": 9, "dateType": 13, "startDate": "2024-01-08", "endDate": "2024-01-10",
        "agentReportType": 2, "customerFields": "inbound_agent_partits,inbound_agent_answer_partits",
        "currPage": 1, "pageSize": 200,
    });
    let fetch = |body: Value, path: &'static str| {
        let client = &client;
        async move { client.report(path, &body).await }
    };
    let before = (
        fetch(days.clone(), GATEWAY).await,
        fetch(weeks.clone(), GATEWAY).await,
        fetch(months.clone(), GATEWAY).await,
        fetch(agent_days.clone(), AGENT).await,
    );
    assert_eq!(
        sim.restate(NaiveDate::from_ymd_opt(2024, 1, 9).unwrap_or_default(), 1),
        1
    );
    let after = (
        fetch(days.clone(), GATEWAY).await,
        fetch(weeks.clone(), GATEWAY).await,
        fetch(months.clone(), GATEWAY).await,
        fetch(agent_days.clone(), AGENT).await,
    );

    // Per period, summed over relay numbers / agents.
    let by_period = |data: &Value, field: &str| -> BTreeMap<String, i64> {
        let mut m = BTreeMap::new();
        for r in data["metric"].as_array().into_iter().flatten() {
            *m.entry(text(&r["result_date"])).or_default() += num(&r[field]);
        }
        m
    };
    for field in ["inbound_calls", "outbound_calls"] {
        let (b, a) = (by_period(&before.0, field), by_period(&after.0, field));
        assert_eq!(a["2024-01-08"], b["2024-01-08"]);
        assert_eq!(a["2024-01-09"], b["2024-01-09"] + 1, "{field}");
        assert_eq!(a["2024-01-10"], b["2024-01-10"]);
        let (b, a) = (by_period(&before.1, field), by_period(&after.1, field));
        assert_eq!(a["2024-01-01 2024-01-07"], b["2024-01-01 2024-01-07"]);
        assert_eq!(a["2024-01-08 2024-01-14"], b["2024-01-08 2024-01-14"] + 1);
        let (b, a) = (by_period(&before.2, field), by_period(&after.2, field));
        assert_eq!(a["2024-01"], b["2024-01"] + 1);
        for (b, a) in [
            (&before.0, &after.0),
            (&before.1, &after.1),
            (&before.2, &after.2),
        ] {
            assert_eq!(num(&a["amount"][field]), num(&b["amount"][field]) + 1);
        }
    }
    for field in ["inbound_agent_partits", "inbound_agent_answer_partits"] {
        let (b, a) = (by_period(&before.3, field), by_period(&after.3, field));
        assert_eq!(a["2024-01-08"], b["2024-01-08"]);
        assert_eq!(a["2024-01-09"], b["2024-01-09"] + 1, "{field}");
        assert_eq!(a["2024-01-10"], b["2024-01-10"]);
    }
    // The ground truth follows, and the control route can withdraw it.
    let q =
        ReportQuery::parse(Family::GatewayNumbers, &days).unwrap_or_else(|e| panic!("query: {e}"));
    let truth = sim.dataset().report(
        &q,
        Singapore,
        utc("2024-01-20T00:00:00Z"),
        &Faults::default(),
    );
    assert_eq!(truth.amount, after.0["amount"]);
    let put = client
        .send(
            client
                .http
                .put(format!("{}/_sim/restate", client.base))
                .json(&json!({"date": "2024-01-09", "pairs": 0})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.json(), json!({}));
    let undone = fetch(days, GATEWAY).await;
    assert_eq!(undone["amount"], before.0["amount"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn agents_metrics_need_product_and_idempotency_key_and_page() {
    let now = "2024-01-10T06:00:00Z"; // 14:00 in Singapore
    let sim = start(config(now)).await;
    let client = Client::new(&sim);
    let missing_key = client.get(&format!("{METRICS}?product=scc"), None).await;
    assert_eq!(missing_key.json()["code"], 400);
    assert!(text(&missing_key.json()["message"]).contains("Idempotency-Key"));
    let missing_product = client.get(METRICS, Some("k-1")).await;
    assert_eq!(missing_product.json()["code"], 400);
    let wrong_product = client
        .get(&format!("{METRICS}?product=xyz"), Some("k-2"))
        .await;
    assert_eq!(wrong_product.json()["code"], 400);

    let mut list = Vec::new();
    let mut summary = Value::Null;
    for page in 1..=3 {
        let a = client
            .get(
                &format!("{METRICS}?product=scc&pageNum={page}&pageSize=5"),
                Some("a3f0c6a2-1111-4222-8333-944455556666"),
            )
            .await;
        let v = a.json();
        assert_eq!(v["code"], 200, "{v}");
        let d = &v["data"];
        assert_eq!(d["MessageID"], "EventAgentsMetricsWatch");
        assert_eq!(d["agentsMetrics"]["total"], 12);
        assert_eq!(d["agentsMetrics"]["pageSize"], 5);
        list.extend(
            d["agentsMetrics"]["list"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        summary = d["agentsSummary"].clone();
    }
    assert_eq!(list.len(), 12);
    let ids: BTreeSet<String> = list.iter().map(|a| text(&a["agentUUID"])).collect();
    assert_eq!(ids.len(), 12);
    let fields = [
        "inboundEstablishedCallsCountToday",
        "inboundAbandonCallsCountToday",
        "outboundCallsCountToday",
        "outboundEstablishedCallsCountToday",
    ];
    for f in fields {
        let sum: i64 = list.iter().map(|a| num(&a[f])).sum();
        assert_eq!(num(&summary[f]), sum, "{f}");
    }
    assert!(num(&summary["inboundEstablishedCallsCountToday"]) > 0);

    // Independent recount: answered inbound legs of today's ended talks.
    let ds = sim.dataset();
    let now_ms = utc(now).timestamp_millis();
    let mut answered_in = 0;
    for t in ds.talks(sg_midnight("2024-01-10"), utc(now)) {
        if t["callType"] != 2 || t["endTime"].as_i64().unwrap_or(i64::MAX) > now_ms {
            continue;
        }
        answered_in += ds
            .parties(&text(&t["callID"]))
            .iter()
            .filter(|p| p["bridgeTime"].is_i64())
            .count() as i64;
    }
    assert_eq!(
        num(&summary["inboundEstablishedCallsCountToday"]),
        answered_in
    );

    // The ground truth is the same list, and statuses match the history in progress.
    let truth = ds.agent_metrics(Singapore, utc(now), &Faults::default());
    assert_eq!(
        truth["agentsMetrics"]["list"].as_array().map(Vec::len),
        Some(12)
    );
    assert_eq!(truth["agentsSummary"], summary);
    assert_eq!(truth["agentsMetrics"]["list"], Value::Array(list.clone()));
    assert!(list.iter().any(|a| a["agentLoginStatus"] != 0));
    assert_eq!(sim.stats().count("agents-metrics"), 6);
    sim.shutdown().await;
}

#[tokio::test]
async fn check_plan_serves_a_list_or_one_object() {
    let sim = start(config("2024-01-10T00:00:00Z")).await;
    let client = Client::new(&sim);
    let all = client.get(PLANS, None).await.json();
    assert_eq!(all["code"], 200, "{all}");
    let plans = all["data"].as_array().cloned().unwrap_or_default();
    let types: BTreeSet<i64> = plans.iter().map(|p| num(&p["planType"])).collect();
    assert_eq!(types.into_iter().collect::<Vec<_>>(), [1, 2, 4, 24]);
    for p in &plans {
        assert!(!text(&p["id"]).trim().is_empty() && !text(&p["planName"]).is_empty());
        assert!(p["checked"].is_i64() && p["customerFields"].is_string());
    }
    let agent_plans = client
        .get(&format!("{PLANS}?planType=4"), None)
        .await
        .json();
    let agent_plans = agent_plans["data"].as_array().cloned().unwrap_or_default();
    assert!(!agent_plans.is_empty());
    assert!(agent_plans.iter().all(|p| p["planType"] == 4));
    let bad = client
        .get(&format!("{PLANS}?planType=x"), None)
        .await
        .json();
    assert_eq!(bad["code"], 400);

    sim.set_check_plan_single_object(true);
    let one = client
        .get(&format!("{PLANS}?planType=2"), None)
        .await
        .json();
    assert!(one["data"].is_object(), "{one}");
    assert_eq!(one["data"]["planType"], 2);
    assert_eq!(one["data"]["checked"], 1);

    // The same switch at start-up and through the control route.
    let single = start(SimConfig {
        check_plan_single_object: true,
        ..config("2024-01-10T00:00:00Z")
    })
    .await;
    let c2 = Client::new(&single);
    assert!(c2.get(PLANS, None).await.json()["data"].is_object());
    let put = c2
        .send(
            c2.http
                .put(format!("{}/_sim/check-plan", c2.base))
                .json(&json!({"single_object": false})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert!(c2.get(PLANS, None).await.json()["data"].is_array());
    assert_eq!(sim.stats().count("check_plan"), 4);
    single.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_hit_the_new_endpoints_like_the_old_ones() {
    let sim = start(config("2024-01-10T00:00:00Z")).await;
    let client = Client::new(&sim);
    let body = gateway_body("inbound_calls", 13, "2024-01-03", "2024-01-03");

    sim.set_faults(Faults {
        rate_limit_every: Some(1),
        retry_after_secs: 3,
        ..Faults::default()
    });
    let a = client.post(GATEWAY, &body).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        a.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("3")
    );
    let a = client
        .get(&format!("{METRICS}?product=scc"), Some("k"))
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);

    sim.set_faults(Faults {
        server_error_every: Some(1),
        ..Faults::default()
    });
    let a = client.post(DEPART, &body).await;
    assert!(a.status.is_server_error(), "{}", a.status);
    let a = client.get(PLANS, None).await;
    assert!(a.status.is_server_error());

    sim.set_faults(Faults {
        truncate_every: Some(1),
        ..Faults::default()
    });
    let a = client.post(GATEWAY, &body).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&a.body).is_err());

    sim.set_faults(Faults {
        envelope_error_every: Some(1),
        ..Faults::default()
    });
    assert_eq!(client.post(AGENT, &body).await.json()["code"], 500);

    // A broken window fails report searches overlapping it.
    sim.set_faults(Faults {
        broken_from: Some(sg_midnight("2024-01-03")),
        broken_to: Some(sg_midnight("2024-01-04")),
        ..Faults::default()
    });
    assert_eq!(
        client.post(GATEWAY, &body).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    sim.set_faults(Faults::default());
    assert_eq!(client.report(GATEWAY, &body).await["total"], 3);

    let stats = sim.stats();
    assert_eq!(
        stats.by_endpoint_status.get("gateway-number-table 429"),
        Some(&1)
    );
    assert_eq!(
        stats.by_endpoint_status.get("gateway-number-table 200"),
        Some(&2)
    );
    assert_eq!(stats.count("gateway-number-table"), 4);
    assert_eq!(stats.count("depart-table"), 1);
    assert_eq!(stats.count("agents-metrics"), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn other_dimensions_and_the_timezone_header() {
    let sim = start(config("2024-01-10T00:00:00Z")).await;
    let client = Client::new(&sim);
    let fields = "inbound_calls,outbound_calls";
    let by_time_key = client
        .report(
            GATEWAY,
            &gateway_body(fields, 13, "2024-01-03", "2024-01-05"),
        )
        .await;
    let rows = |d: &Value| d["metric"].as_array().cloned().unwrap_or_default();

    // 4: relay number, then time: the same rows in the other order.
    let mut body = gateway_body(fields, 13, "2024-01-03", "2024-01-05");
    body["dimensions"] = json!(4);
    let by_key_time = client.report(GATEWAY, &body).await;
    let mut expected = rows(&by_time_key);
    expected.sort_by_key(|r| (text(&r["gateway_number"]), text(&r["result_date"])));
    let strip = |v: Vec<Value>| -> Vec<(String, String, i64)> {
        v.iter()
            .map(|r| {
                (
                    text(&r["gateway_number"]),
                    text(&r["result_date"]),
                    num(&r["inbound_calls"]),
                )
            })
            .collect()
    };
    assert_eq!(strip(rows(&by_key_time)), strip(expected));
    assert_eq!(by_key_time["amount"], by_time_key["amount"]);

    // 2: one row per relay number over the whole range; 1: one row per day.
    body["dimensions"] = json!(2);
    let by_key = client.report(GATEWAY, &body).await;
    assert_eq!(by_key["total"], 3);
    let inbound: i64 = rows(&by_key).iter().map(|r| num(&r["inbound_calls"])).sum();
    assert_eq!(inbound, num(&by_key_time["amount"]["inbound_calls"]));
    assert!(rows(&by_key).iter().all(|r| r.get("result_date").is_none()));
    body["dimensions"] = json!(1);
    let by_time = client.report(GATEWAY, &body).await;
    assert_eq!(by_time["total"], 3);
    assert!(
        rows(&by_time)
            .iter()
            .all(|r| r.get("gateway_number").is_none())
    );
    assert_eq!(by_time["amount"], by_time_key["amount"]);

    // The range is read in the request's zone.
    let body = gateway_body(fields, 13, "2024-01-03", "2024-01-03");
    let a = client
        .send(
            client
                .http
                .post(format!("{}{GATEWAY}", client.base))
                .header("timezoneid", "UTC")
                .json(&body),
        )
        .await
        .json();
    assert_eq!(a["code"], 200, "{a}");
    let talks = sim
        .dataset()
        .talks(utc("2024-01-03T00:00:00Z"), utc("2024-01-04T00:00:00Z"));
    assert_eq!(
        num(&a["data"]["amount"]["inbound_calls"]) + num(&a["data"]["amount"]["outbound_calls"]),
        talks.len() as i64
    );
    sim.shutdown().await;
}
