//! issue 13: the liberal reading over real HTTP. The client against the simulator's
//! `Literal` dialect (the unwrapped token, `code: 0` on reports and plans, metrics without
//! the envelope) gets the same data as against the `Enveloped` one; and a well-formed
//! answer of a shape we do not read fails a real pipeline within seconds, naming the
//! endpoint.

use crate::support::rig::{Rig, Warehouse, pipeline};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sobot_sync::api::ApiClient;
use sobot_sync::api::ApiSettings;
use sobot_sync::api::Credentials;
use sobot_sync::report::response::read_page;
use sobot_sync::report::response::read_plans;
use sobot_sync::runner::Mode;
use sobot_sync::secret::Secret;
use sobot_sync::sim::Dialect;
use sobot_sync::sim::Faults;
use sobot_sync::sim::SimConfig;
use sobot_sync::sim::SimHandle;
use std::time::Instant;

const METRICS: &str = "/callservice/v6/webmsg/monitoring/agents-metrics";
const PLANS: &str = "/callservice/tm/tm-reports/gateway_number/check_plan";
const GATEWAY_REPORT: &str = "/callservice/tm/tm-reports/gateway-number-table/_search";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("test time {s:?}: {e}"))
}

fn sim_config(dialect: Dialect) -> SimConfig {
    SimConfig {
        now: Some(t("2024-03-02T12:00:00+08:00")),
        dialect,
        ..SimConfig::default()
    }
}

async fn start(config: SimConfig) -> SimHandle {
    sobot_sync::sim::start(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator starts on a free port")
}

/// A client with company credentials and the default retry policy.
fn client(sim: &SimHandle) -> ApiClient {
    let defaults = SimConfig::default();
    ApiClient::new(ApiSettings {
        base_url: sim.base_url(),
        credentials: Credentials::Company {
            app_id: defaults.app_id,
            app_secret: Secret::new(defaults.app_secret),
        },
        max_rps: 1000,
        max_concurrency: 4,
        timezone: "Asia/Singapore".into(),
        request_timeout: std::time::Duration::from_secs(10),
        max_retries: 8,
        min_backoff: std::time::Duration::from_millis(200),
        max_backoff: std::time::Duration::from_secs(30),
        tenant: None,
        agent_token: None,
    })
    .expect("valid client settings")
}

/// What the client reads from one simulator: the token exchange, the plans of every
/// type, one report page, and the agent metrics.
struct Read {
    plans: Vec<serde_json::Map<String, Value>>,
    report_total: u64,
    report_rows: Vec<serde_json::Map<String, Value>>,
    metrics: Value,
}

async fn read_everything(dialect: Dialect) -> Read {
    let sim = start(sim_config(dialect)).await;
    let api = client(&sim);
    api.authenticate().await.expect("the token answer is read");

    let mut plans = Vec::new();
    for plan_type in ["1", "2", "4", "24"] {
        let data = api
            .get(PLANS, &[("planType".into(), plan_type.into())])
            .await
            .unwrap_or_else(|e| panic!("plans {plan_type}: {e}"));
        plans.extend(read_plans(data).expect("plans are read"));
    }

    let body = json!({
        "dimensions": 3, "dateType": 13, "startDate": "2024-03-01", "endDate": "2024-03-01",
        "startTime": "00:00", "endTime": "24:00", "callType": 2,
        "customerFields": "inbound_calls,outbound_calls", "currPage": 1, "pageSize": 200,
    });
    let data = api
        .post(GATEWAY_REPORT, &body)
        .await
        .unwrap_or_else(|e| panic!("report page: {e}"));
    let page = read_page(data).expect("report page is read");

    let query: Vec<(String, String)> = [
        ("product", "scc"),
        ("pageNum", "1"),
        ("pageSize", "100"),
        // The document requires it under a company token.
        ("operatorUserId", "sim-operator"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let raw = api
        .get_raw_with_headers(
            METRICS,
            &query,
            &[("Idempotency-Key", uuid::Uuid::new_v4().to_string())],
        )
        .await
        .unwrap_or_else(|e| panic!("metrics: {e}"));
    let metrics: Value = serde_json::from_str(raw.get()).expect("metrics payload is JSON");

    let stats = api.stats();
    assert_eq!(stats.retries, 0, "{dialect:?}: nothing was retried");
    assert_eq!(stats.token_refreshes, 1, "{dialect:?}: one token");
    Read {
        plans,
        report_total: page.total,
        report_rows: page.rows,
        metrics,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_literal_dialect_reads_like_the_enveloped_one() {
    let enveloped = read_everything(Dialect::Enveloped).await;
    let literal = read_everything(Dialect::Literal).await;

    // Plans: 7 defined by the simulator (2 + 2 + 2 + 1 by type), the padded id trimmed.
    assert_eq!(literal.plans.len(), 7);
    assert_eq!(literal.plans, enveloped.plans);
    assert!(literal.plans.iter().all(|p| {
        p.get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.len() == 32 && id.trim() == id)
    }));

    // The report page: rows and total as in the envelope.
    assert!(literal.report_total > 0);
    assert_eq!(literal.report_total, literal.report_rows.len() as u64);
    assert_eq!(literal.report_total, enveloped.report_total);
    assert_eq!(literal.report_rows, enveloped.report_rows);

    // Metrics: the bare body is what the envelope's `data` was.
    assert_eq!(literal.metrics, enveloped.metrics);
    let metrics = &literal.metrics;
    assert_eq!(
        metrics.get("MessageID").and_then(Value::as_str),
        Some("EventAgentsMetricsWatch")
    );
    let agents = SimConfig::default().agents as u64;
    assert_eq!(
        metrics
            .pointer("/agentsMetrics/total")
            .and_then(Value::as_u64),
        Some(agents)
    );
    assert_eq!(
        metrics
            .pointer("/agentsMetrics/list")
            .and_then(Value::as_array)
            .map(Vec::len),
        Some(agents as usize)
    );
}

/// The pipelines whose answers come through each reader: a page (talks), a report
/// (`post`), the plans (`get`), the metrics (`get_raw_with_headers`).
const SHAPE_PIPELINES: [(&str, &str); 4] = [
    ("talks", "/callservice/tm/tm-reports/maincdrs/_search"),
    ("report_gateway_numbers", GATEWAY_REPORT),
    ("indicator_plans", PLANS),
    ("agent_metrics", METRICS),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_shape_fails_within_seconds_naming_the_endpoint() {
    // A whole day behind: every pipeline, the daily reports too, has a window to load.
    let now = t("2024-03-03T06:00:00+08:00");
    let config = SimConfig {
        now: Some(now + Duration::days(1)),
        faults: Faults {
            wrong_shape_every: Some(1),
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    // The default retry policy (SOBOT_MAX_RETRIES unset): 8 retries for transient failures.
    let rig = Rig::new(
        config,
        Warehouse::local().await,
        t("2024-03-01T00:00:00+08:00"),
    )
    .await;
    let engine = rig.engine(now);
    for (name, endpoint) in SHAPE_PIPELINES {
        let p = pipeline(&engine, name);
        let before = rig.sim.stats().requests;
        let started = Instant::now();
        let err = engine
            .run(&p, Mode::Incremental)
            .await
            .expect_err("a wrong shape fails the run");
        let elapsed = started.elapsed();
        let text = err.to_string();
        eprintln!("{name}: failed after {elapsed:?}: {text}");
        assert!(
            elapsed < std::time::Duration::from_secs(10),
            "{name}: {elapsed:?}"
        );
        assert!(text.contains(endpoint), "{name}: {text}");
        assert!(
            text.contains("items (an array), result (a string), serverTime (a number)"),
            "{name}: the shape is named: {text}"
        );
        assert!(!text.contains("attempts"), "{name}: not exhausted: {text}");
        // One retry per request: exactly 2 for the single-request pipelines; the windowed
        // ones run two windows at once. A transient reading would take 9 per request.
        let requests = rig.sim.stats().requests - before;
        eprintln!("{name}: {requests} requests");
        if matches!(name, "indicator_plans" | "agent_metrics") {
            assert_eq!(requests, 2, "{name}");
        }
        assert!(requests < 9, "{name}: {requests} requests");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_shape_on_one_endpoint_leaves_the_others() {
    let now = t("2024-03-02T06:00:00+08:00");
    let config = SimConfig {
        now: Some(now + Duration::days(1)),
        faults: Faults {
            wrong_shape_path: Some("/check_plan".into()),
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let rig = Rig::new(
        config,
        Warehouse::local().await,
        t("2024-03-02T00:00:00+08:00"),
    )
    .await;
    let engine = rig.engine(now);
    let err = engine
        .run(&pipeline(&engine, "indicator_plans"), Mode::Incremental)
        .await
        .expect_err("the broken endpoint fails");
    assert!(err.to_string().contains(PLANS), "{err}");
    let report = engine
        .run(&pipeline(&engine, "talks"), Mode::Incremental)
        .await
        .expect("talks are not affected");
    assert!(report.rows > 0, "{report:?}");
}
