//! View Agent Indicator (agents-metrics) and indicator plans (check_plan), and the
//! faults that hit them like the older endpoints.

use super::*;

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
