//! The three Statistical Report searches: figures that add up from the records, pages,
//! visibility at `now`, bad fields, other dimensions and the timezone header.

use super::*;

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
