//! Restatements change only their day and its week and month.

use super::*;

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
