//! issue 13, part 5: recordings fetched by id through the document's recordings
//! endpoint, agent metrics with `operatorUserId` and rows without `agentUUID`, the agent
//! token's endpoints, and report request parameters from a pipeline file, against the
//! simulator in both dialects.

use crate::support::rig::{Rig, Warehouse, pipeline};
use crate::support::table::{self, str_at};
use chrono::{DateTime, Duration, Utc};
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};
use sobot_sync::core::report::request;
use sobot_sync::core::secret::Secret;
use sobot_sync::engine::run::{Engine, Mode, Report, RunError};
use sobot_sync::io::api::{ApiClient, ApiError, ApiSettings, Credentials};
use sobot_sync::sim::{Dialect, Faults, ReportQuery, SimConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("test time {s:?}: {e}"))
}

async fn run(engine: &Engine, name: &str) -> Result<Report, RunError> {
    engine.run(&pipeline(engine, name), Mode::Incremental).await
}

/// The static token the simulator accepts; it stands for an agent token.
const AGENT_TOKEN: &str = "sim-agent-token-13";

/// Scenario: talks then recordings over three hours; the recordings table holds exactly
/// the talks with a `recordUrl`, each stored object is what the recordings endpoint
/// serves for its id, and every download went to that endpoint (in the Literal dialect
/// the `recordUrl`s name `https:// record.soboten.com/...`, which is never contacted).
async fn recordings_exact(dialect: Dialect, warehouse: Warehouse) {
    let start = t("2024-03-01T09:00:00+08:00");
    let now = t("2024-03-01T12:40:00+08:00");
    let end = t("2024-03-01T12:00:00+08:00");
    let rig = Rig::new(
        SimConfig {
            now: Some(now + Duration::days(1)),
            dialect,
            ..SimConfig::default()
        },
        warehouse,
        start,
    )
    .await;
    let ds = rig.sim.dataset();
    let engine = rig.engine(now);
    run(&engine, "talks").await.expect("talks");
    let report = run(&engine, "recordings").await.expect("recordings");
    assert_eq!(report.windows, 3);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);

    let expected: BTreeMap<String, String> = ds
        .talks(start, end)
        .into_iter()
        .filter_map(|t| {
            let url = t["recordUrl"].as_str()?.to_string();
            (!url.trim().is_empty()).then(|| {
                (
                    t["callID"].as_str().expect("callID").trim().to_string(),
                    url,
                )
            })
        })
        .collect();
    assert!(expected.len() > 10, "the hours have answered calls");
    if dialect == Dialect::Literal {
        let url = expected.values().next().expect("a url");
        assert!(
            url.starts_with("https:// record.soboten.com/recordings/") && url.ends_with(' '),
            "{url:?}"
        );
    }
    let table = table::read(&engine, "recordings").await;
    table.assert_keys_exactly("call_id", &expected.keys().cloned().collect());
    assert_eq!(report.rows as usize, expected.len());
    // Every download went to the recordings endpoint on the API host, with the token.
    let stats = rig.sim.stats();
    assert_eq!(stats.count("recordings"), expected.len() as u64);
    assert_eq!(
        stats.by_endpoint_status.get("recordings 200").copied(),
        Some(expected.len() as u64)
    );
    let rows = table.by_key("call_id");
    let loc = &engine.warehouse;
    for (i, (id, url)) in expected.iter().enumerate() {
        let r = &rows[id];
        let path = str_at(&r.file.batch, "object_path", r.row).expect("object_path");
        let stored = loc
            .store()
            .get(&loc.path(&path))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .bytes()
            .await
            .expect("object bytes");
        let sha = hex::encode(Sha256::digest(&stored));
        assert_eq!(str_at(&r.file.batch, "sha256", r.row), Some(sha.clone()));
        if i < 3 {
            let served = engine.client.recording(url).await.expect("served");
            assert_eq!(hex::encode(Sha256::digest(&served.bytes)), sha, "{id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_exact_enveloped_local() {
    recordings_exact(Dialect::Enveloped, Warehouse::local().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_exact_literal_local() {
    recordings_exact(Dialect::Literal, Warehouse::local().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_exact_literal_s3() {
    recordings_exact(Dialect::Literal, Warehouse::s3().await).await;
}

/// Scenario: some talks list a `recordUrl` without its id. Their recordings are skipped
/// and counted in the run's report; every other recording is stored, the windows are
/// committed and the watermark moves on.
async fn record_urls_without_id(dialect: Dialect) {
    let start = t("2024-03-01T09:00:00+08:00");
    let now = t("2024-03-01T12:40:00+08:00");
    let end = t("2024-03-01T12:00:00+08:00");
    let faults = Faults {
        record_url_without_id_every: Some(4),
        ..Faults::default()
    };
    let rig = Rig::new(
        SimConfig {
            now: Some(now + Duration::days(1)),
            dialect,
            faults: faults.clone(),
            ..SimConfig::default()
        },
        Warehouse::local().await,
        start,
    )
    .await;
    let engine = rig.engine(now);
    run(&engine, "talks").await.expect("talks");
    let report = run(&engine, "recordings").await.expect("recordings");
    let (mut kept, mut dropped) = (BTreeSet::new(), 0u64);
    for talk in rig.sim.dataset().talks(start, end) {
        let id = talk["callID"].as_str().expect("callID").trim().to_string();
        if talk["recordUrl"]
            .as_str()
            .is_some_and(|u| !u.trim().is_empty())
        {
            if faults.drops_record_id(&id) {
                dropped += 1;
            } else {
                kept.insert(id);
            }
        }
    }
    assert!(dropped > 0 && kept.len() > 10, "{dropped} {}", kept.len());
    assert_eq!(report.windows, 3);
    assert_eq!(report.watermark, Some(end));
    assert_eq!(report.skipped.get("record_url_without_id"), Some(&dropped));
    assert_eq!(rig.sim.stats().count("recordings"), kept.len() as u64);
    table::read(&engine, "recordings")
        .await
        .assert_keys_exactly("call_id", &kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_urls_without_id_are_skipped_and_counted_enveloped() {
    record_urls_without_id(Dialect::Enveloped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_urls_without_id_are_skipped_and_counted_literal() {
    record_urls_without_id(Dialect::Literal).await;
}

/// A server standing for the host a `recordUrl` names: it counts the requests it gets
/// and those that carry an `Authorization` header.
async fn other_host() -> (String, Arc<(AtomicU64, AtomicU64)>) {
    let seen = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let counter = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let counter = Arc::clone(&counter);
        async move {
            counter.0.fetch_add(1, Ordering::SeqCst);
            if headers.contains_key(axum::http::header::AUTHORIZATION) {
                counter.1.fetch_add(1, Ordering::SeqCst);
            }
            "ID3 not the recording"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

fn api_settings(base: &str) -> ApiSettings {
    let sim = SimConfig::default();
    ApiSettings {
        base_url: base.into(),
        credentials: Credentials::Company {
            app_id: sim.app_id,
            app_secret: Secret::new(sim.app_secret),
        },
        max_rps: 1000,
        max_concurrency: 4,
        timezone: "Asia/Singapore".into(),
        request_timeout: std::time::Duration::from_secs(5),
        max_retries: 0,
        min_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(2),
        tenant: None,
        agent_token: None,
    }
}

/// The token is never sent to a host the settings do not name: a `recordUrl` on another
/// (reachable) host is read for its id only, and the recording comes from the API host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_url_on_another_host_gets_no_request() {
    let now = t("2024-03-02T12:00:00+08:00");
    let sim = sobot_sync::sim::start(
        SimConfig {
            now: Some(now),
            ..SimConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .expect("simulator");
    let (other, seen) = other_host().await;
    let talk = sim
        .dataset()
        .talks(
            t("2024-03-01T10:00:00+08:00"),
            t("2024-03-01T11:00:00+08:00"),
        )
        .into_iter()
        .find(|t| t["recordUrl"].as_str().is_some_and(|u| !u.is_empty()))
        .expect("an answered talk");
    let id = talk["callID"].as_str().expect("callID").trim().to_string();
    let api = ApiClient::new(api_settings(&sim.base_url())).expect("client");

    let served = api
        .recording(&format!(" {other}/recordings/{id} "))
        .await
        .expect("fetched by id from the API host");
    let direct = api
        .recording(&format!(
            "{}/callservice/v6/cc-audios/recordings/{id}",
            sim.base_url()
        ))
        .await
        .expect("the document's endpoint");
    assert_eq!(served.bytes, direct.bytes);
    assert!(served.bytes.starts_with(b"ID3\x04"));
    assert_eq!(sim.stats().count_token("recordings", "company"), 2);

    // No readable id: a clear error, and no request anywhere.
    let before = sim.stats().requests;
    for bad in [
        format!("{other}/recordings/"),
        format!("{other}/recordings/a%2F..%2Fb"),
        String::from("  "),
    ] {
        match api.recording(&bad).await {
            Err(e @ ApiError::RecordUrl { .. }) => {
                assert!(e.to_string().contains("recordUrl"), "{e}")
            }
            other => panic!("{bad:?}: expected a recordUrl error, got {other:?}"),
        }
    }
    assert_eq!(sim.stats().requests, before);
    assert_eq!(
        seen.0.load(Ordering::SeqCst),
        0,
        "the other host was never asked"
    );
    // The recordings endpoint itself wants the token.
    let bare = reqwest::get(format!(
        "{}/callservice/v6/cc-audios/recordings/{id}",
        sim.base_url()
    ))
    .await
    .expect("answered");
    assert_eq!(bare.status().as_u16(), 401);
    assert_eq!(seen.1.load(Ordering::SeqCst), 0);
}

/// Scenario: in the Literal dialect the agent metrics need `operatorUserId` under a
/// company token. Without `SOBOT_OPERATOR_USER_ID` the snapshot fails naming it; with it
/// the snapshot is exact; under an agent (static) token none is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_metrics_operator_user_id_in_literal() {
    let now = t("2024-03-04T15:07:00+08:00");
    let mut rig = Rig::new(
        SimConfig {
            now: Some(now),
            dialect: Dialect::Literal,
            static_token: Some(AGENT_TOKEN.into()),
            ..SimConfig::default()
        },
        Warehouse::local().await,
        t("2024-03-01T00:00:00+08:00"),
    )
    .await;
    rig.set("SOBOT_MAX_RETRIES", "1");
    rig.set("SOBOT_RETRY_MIN_BACKOFF_MS", "1");
    rig.set("SOBOT_RETRY_MAX_BACKOFF_MS", "2");
    // Literal rigs name an operator, as a user of such a tenant would: not this one.
    rig.unset("SOBOT_OPERATOR_USER_ID");
    let err = run(&rig.engine(now), "agent_metrics")
        .await
        .expect_err("refused without operatorUserId");
    let text = format!("{err}");
    assert!(
        text.contains("SOBOT_OPERATOR_USER_ID") && text.contains("agents-metrics"),
        "{text}"
    );
    assert!(
        rig.sim.stats().count("agents-metrics") <= 2,
        "not retried at length"
    );

    rig.set("SOBOT_OPERATOR_USER_ID", "operator-7");
    let engine = rig.engine(now);
    let report = run(&engine, "agent_metrics").await.expect("snapshot");
    assert_eq!(report.rows, 12);
    let truth = rig
        .sim
        .dataset()
        .agent_metrics(rig.tz, now, &Faults::default());
    let ids: BTreeSet<String> = truth["agentsMetrics"]["list"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["agentUUID"].as_str().expect("uuid").trim().to_string())
        .collect();
    table::read(&engine, "agent_metrics")
        .await
        .assert_keys_exactly("agent_uuid", &ids);

    // An agent token needs no operator.
    let mut rig = rig;
    rig.set("SOBOT_OPERATOR_USER_ID", "");
    rig.set("SOBOT_APP_ID", "");
    rig.set("SOBOT_APP_SECRET", "");
    rig.set("SOBOT_TOKEN", AGENT_TOKEN);
    let report = run(&rig.engine(now + Duration::minutes(5)), "agent_metrics")
        .await
        .expect("snapshot under an agent token");
    assert_eq!(report.rows, 12);
}

/// Scenario: every fifth agent comes without `agentUUID`. The snapshot holds the others,
/// exactly, and the two left out are counted in the run's report; in both dialects.
async fn metrics_rows_without_uuid(dialect: Dialect) {
    let now = t("2024-03-04T15:07:00+08:00");
    let faults = Faults {
        metrics_no_uuid_every: Some(5),
        ..Faults::default()
    };
    let mut rig = Rig::new(
        SimConfig {
            now: Some(now),
            dialect,
            max_page_size: 5,
            faults: faults.clone(),
            ..SimConfig::default()
        },
        Warehouse::local().await,
        t("2024-03-01T00:00:00+08:00"),
    )
    .await;
    rig.set("SOBOT_OPERATOR_USER_ID", "operator-7");
    let engine = rig.engine(now);
    let report = run(&engine, "agent_metrics").await.expect("snapshot");
    let truth = rig.sim.dataset().agent_metrics(rig.tz, now, &faults);
    let list = truth["agentsMetrics"]["list"].as_array().expect("list");
    assert_eq!(list.len(), 12);
    let ids: BTreeSet<String> = list
        .iter()
        .filter_map(|a| a["agentUUID"].as_str())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(ids.len(), 10);
    assert_eq!(report.rows, 10);
    assert_eq!(report.skipped.get("no_agent_uuid"), Some(&2));
    table::read(&engine, "agent_metrics")
        .await
        .assert_keys_exactly("agent_uuid", &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_rows_without_agent_uuid_are_counted_enveloped() {
    metrics_rows_without_uuid(Dialect::Enveloped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_rows_without_agent_uuid_are_counted_literal() {
    metrics_rows_without_uuid(Dialect::Literal).await;
}

/// Scenario: with `SOBOT_AGENT_TOKEN` set, the endpoints the document asks an agent
/// token of (recordings, work-status logs, reports, plans) get only it, and every other
/// endpoint only the company token. A refused agent token names SOBOT_AGENT_TOKEN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_token_goes_to_the_documents_endpoints_only() {
    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-02T02:00:00+08:00");
    let mut rig = Rig::new(
        SimConfig {
            now: Some(now + Duration::days(1)),
            static_token: Some(AGENT_TOKEN.into()),
            ..SimConfig::default()
        },
        Warehouse::local().await,
        start,
    )
    .await;
    rig.set("SOBOT_AGENT_TOKEN", AGENT_TOKEN);
    let engine = rig.engine(now);
    for name in [
        "talks",
        "recordings",
        "agent_histories",
        "report_agents_inbound",
        "report_departments_inbound",
        "report_gateway_numbers",
        "indicator_plans",
        "agent_metrics",
    ] {
        run(&engine, name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let stats = rig.sim.stats();
    for agent in [
        "recordings",
        "agent-histories",
        "agent-table",
        "depart-table",
        "gateway-number-table",
        "check_plan",
    ] {
        assert!(stats.count_token(agent, "static") > 0, "{agent}: {stats:?}");
        assert_eq!(stats.count_token(agent, "company"), 0, "{agent}");
    }
    for company in ["maincdrs", "agents-metrics"] {
        assert!(stats.count_token(company, "company") > 0, "{company}");
        assert_eq!(stats.count_token(company, "static"), 0, "{company}");
    }

    rig.set("SOBOT_AGENT_TOKEN", "not-the-agent-token");
    let engine = rig.engine(now + Duration::hours(1));
    let err = run(&engine, "indicator_plans")
        .await
        .expect_err("refused agent token");
    assert!(format!("{err}").contains("SOBOT_AGENT_TOKEN"), "{err}");
    assert!(!format!("{err}").contains("not-the-agent-token"), "{err}");
}

/// Scenario: a report pipeline file with `[filters]` (two agents by UUID): the bodies
/// carry them, and the table holds exactly the simulator's rows for those agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_filters_reach_the_request_body() {
    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-02T02:00:00+08:00");
    let end = t("2024-03-02T00:00:00+08:00");
    let mut rig = Rig::new(
        SimConfig {
            now: Some(now + Duration::days(1)),
            ..SimConfig::default()
        },
        Warehouse::local().await,
        start,
    )
    .await;
    let ds = rig.sim.dataset();
    let agents: Vec<String> = ds
        .talks(start, end)
        .iter()
        .filter_map(|t| t["lastAgentUUID"].as_str().map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(2)
        .collect();
    assert_eq!(agents.len(), 2, "two agents took calls");
    let dir = tempfile::tempdir().expect("temp dir");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");
    for entry in std::fs::read_dir(shipped).expect("pipelines") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        std::fs::copy(&path, dir.path().join(name)).expect("copy");
    }
    let text = format!(
        "name = \"report_two_agents\"\nkind = \"report\"\ntable = \"report_two_agents\"\nlag_secs = 3600\n\
         initial_start = \"2024-01-01\"\nschedule = \"0 30 * * * *\"\n\
         [report]\nfamily = \"agents\"\ndirection = \"inbound\"\ndate_type = \"day\"\n\
         [filters]\nagents = [\"{}\", \"{}\"]\nagentType = 1\n",
        agents[0], agents[1]
    );
    std::fs::write(dir.path().join("report_two_agents.toml"), text).expect("write");
    rig.set(
        "SOBOT_SYNC_PIPELINES",
        dir.path().to_str().expect("utf-8 path"),
    );
    let engine = rig.engine(now);
    let p = pipeline(&engine, "report_two_agents");
    let report = run(&engine, "report_two_agents").await.expect("report run");
    assert_eq!(report.windows, 1);

    // What the simulator answers for the body the pipeline sends, filters included.
    let def = p.report.as_deref().expect("report");
    let mut body = request::page_body(&def.spec, rig.tz, start, end, 1).expect("body");
    request::apply_filters(&mut body, &p.filters);
    assert_eq!(body["agents"], serde_json::json!(agents));
    assert_eq!(body["agentType"], serde_json::json!(1));
    body["pageSize"] = 1_000_000.into();
    let q = ReportQuery::parse(def.spec.family, &body).expect("the simulator takes it");
    let truth = ds.report(&q, rig.tz, now + Duration::days(1), &Faults::default());
    let want: BTreeSet<String> = truth
        .rows
        .iter()
        .map(|r| {
            r["serviceId"]
                .as_str()
                .expect("serviceId")
                .trim()
                .to_string()
        })
        .collect();
    assert!(
        !want.is_empty() && want.iter().all(|w| agents.contains(w)),
        "{want:?}"
    );
    let table = table::read(&engine, &p.table).await;
    assert_eq!(table.rows(), truth.rows.len());
    let got: BTreeSet<String> = table
        .files
        .iter()
        .flat_map(|f| table::col_str(&f.batch, "service_id"))
        .flatten()
        .collect();
    assert_eq!(got, want);

    // Without the filters the same day has more agents: they did narrow the answer.
    let mut all = request::page_body(&def.spec, rig.tz, start, end, 1).expect("body");
    all["pageSize"] = 1_000_000.into();
    let q = ReportQuery::parse(def.spec.family, &all).expect("query");
    let everyone = ds.report(&q, rig.tz, now + Duration::days(1), &Faults::default());
    assert!(everyone.rows.len() > truth.rows.len());
}
