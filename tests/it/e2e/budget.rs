//! issue 15, part 5: the budget is visible. A run's requests per endpoint, as the run
//! reports them, are exactly the requests the simulator served for it, token requests
//! and retries included; under faults the retries make up the difference to a
//! fault-free run; `status --json` and the run summary show the last run's counts.

use super::*;
use crate::support::cli_proc::CliEnv;
use sobot_sync::io::api::{ApiUsage, EndpointUsage};
use sobot_sync::sim::SimStats;
use std::collections::BTreeMap;

/// The simulator's statistics name of a client endpoint label (`src/sim/gate.rs`).
fn sim_name(label: &str) -> &'static str {
    if label == "/tokens/company" {
        "token"
    } else if label.ends_with("/partycdrs") {
        "partycdrs"
    } else if label.contains("/maincdrs/") {
        "maincdrs"
    } else if label.contains("/cdrs/") {
        "cdrs"
    } else if label.contains("/agent-histories/") {
        "agent-histories"
    } else if label.contains("/recordings/") {
        "recordings"
    } else if label.contains("/agent-table/") {
        "agent-table"
    } else if label.contains("/depart-table/") {
        "depart-table"
    } else if label.contains("/gateway-number-table/") {
        "gateway-number-table"
    } else if label.ends_with("/check_plan") {
        "check_plan"
    } else if label.ends_with("/agents-metrics") {
        "agents-metrics"
    } else {
        panic!("no simulator endpoint for {label}")
    }
}

/// Requests the simulator served between two snapshots, by its endpoint name (any status).
fn served(before: &SimStats, after: &SimStats) -> BTreeMap<String, u64> {
    let names: std::collections::BTreeSet<String> = after
        .by_endpoint_status
        .keys()
        .filter_map(|k| k.rsplit_once(' ').map(|(e, _)| e.to_string()))
        .collect();
    names
        .into_iter()
        .map(|e| {
            let n = after.count(&e) - before.count(&e);
            (e, n)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A run's requests by the simulator's endpoint names.
fn by_sim_name(usage: &ApiUsage) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (label, u) in &usage.0 {
        *out.entry(sim_name(label).to_string()).or_insert(0) += u.requests;
    }
    out.retain(|_, n| *n > 0);
    out
}

/// Runs `name` alone and returns its per-endpoint requests, asserting they are what the
/// simulator served meanwhile.
async fn run_alone(rig: &Rig, engine: &Engine, name: &str) -> ApiUsage {
    let before = rig.sim.stats();
    let report = engine
        .run(&pipeline(engine, name), Mode::Incremental)
        .await
        .unwrap_or_else(|e| panic!("{name} runs: {e}"));
    let after = rig.sim.stats();
    assert_eq!(
        by_sim_name(&report.api_requests),
        served(&before, &after),
        "{name}: the requests the run reports are the ones the simulator served: {:#?}",
        report.api_requests
    );
    // The state's last run carries the same counts.
    let st = sobot_sync::app::setup::load_state(&engine.state, name)
        .await
        .unwrap_or_else(|e| panic!("state of {name}: {e}"))
        .unwrap_or_else(|| panic!("{name} has state"));
    assert_eq!(
        st.last_run.map(|r| r.api_requests),
        Some(report.api_requests.clone()),
        "{name}: last_run records the run's requests"
    );
    report.api_requests
}

const SEARCH: &str = "/callservice/tm/tm-reports/maincdrs/_search";
const PARTIES: &str = "/callservice/tm/tm-reports/maincdrs/{id}/partycdrs";
const TOKEN: &str = "/tokens/company";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_runs_requests_are_what_the_simulator_served() {
    let start = t("2024-03-02T00:00:00+08:00");
    let now = t("2024-03-02T08:00:00+08:00");
    let rig = Rig::new(sim_ahead(now), Warehouse::local().await, start).await;
    let engine = rig.engine(now);

    // The first run of a new client pays for its token; talks lists the search pages.
    let talks = run_alone(&rig, &engine, "talks").await;
    assert_eq!(
        talks.0.get(TOKEN).map(|u| u.requests),
        Some(1),
        "{talks:#?}"
    );
    assert!(talks.0.get(SEARCH).is_some_and(|u| u.requests > 0));
    assert_eq!(talks.total().retries, 0, "no faults, no retries");
    // Parties shares the client (and its token): its own parent pages and party requests.
    let parties = run_alone(&rig, &engine, "parties").await;
    assert!(!parties.0.contains_key(TOKEN), "{parties:#?}");
    let party_rows = truth::parties(&rig.sim.dataset(), start, t("2024-03-02T07:00:00+08:00"));
    assert!(
        parties.0.get(PARTIES).is_some_and(|u| u.requests > 0),
        "{parties:#?}"
    );
    assert!(!party_rows.recs.is_empty());
    run_alone(&rig, &engine, "agent_histories").await;

    // Pipelines running at once on one client: each request is counted on exactly one
    // run, so the runs add up to what the simulator served.
    let later = now + Duration::hours(3);
    let engine = rig.engine(later);
    let before = rig.sim.stats();
    let reports = sobot_sync::app::run::run_pipelines(
        &engine,
        &["talks".into(), "parties".into(), "agent_histories".into()],
    )
    .await
    .expect("the three run together");
    let after = rig.sim.stats();
    let mut total = BTreeMap::new();
    for r in &reports {
        for (e, n) in by_sim_name(&r.api_requests) {
            *total.entry(e).or_insert(0) += n;
        }
    }
    assert_eq!(total, served(&before, &after), "{reports:#?}");
    let tokens: u64 = reports
        .iter()
        .filter_map(|r| r.api_requests.0.get(TOKEN).map(|u| u.requests))
        .sum();
    assert_eq!(tokens, 1, "the new engine's token, on one run only");
}

/// Faults the client comes through by retrying, at rates that fire often (even the few
/// talk pages see some). About 43% of attempts fail, so the test gives each request 31
/// attempts: with the default 9, one of a run's thousands of party requests now and
/// then failed every attempt.
fn retried_faults() -> Faults {
    Faults {
        rate_limit_every: Some(5),
        retry_after_secs: 0,
        server_error_every: Some(7),
        envelope_error_every: Some(11),
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_counted_and_make_up_the_difference_to_a_fault_free_run() {
    let start = t("2024-03-02T00:00:00+08:00");
    let now = t("2024-03-02T08:00:00+08:00");
    let usage = |faults: Faults| async move {
        let config = SimConfig {
            faults,
            ..sim_ahead(now)
        };
        let mut rig = Rig::new(config, Warehouse::local().await, start).await;
        rig.set("SOBOT_RETRY_MIN_BACKOFF_MS", "1");
        rig.set("SOBOT_RETRY_MAX_BACKOFF_MS", "2");
        rig.set("SOBOT_MAX_RETRIES", "30");
        let engine = rig.engine(now);
        let mut out = Vec::new();
        for name in ["talks", "parties"] {
            out.push(run_alone(&rig, &engine, name).await);
        }
        out
    };
    let clean = usage(Faults::default()).await;
    let faulty = usage(retried_faults()).await;
    let mut retries = 0;
    for (name, (clean, faulty)) in ["talks", "parties"].iter().zip(clean.iter().zip(&faulty)) {
        assert_eq!(clean.total().retries, 0, "{name}: {clean:#?}");
        assert_eq!(
            clean.0.keys().collect::<Vec<_>>(),
            faulty.0.keys().collect::<Vec<_>>(),
            "{name}: the same endpoints"
        );
        for (endpoint, c) in &clean.0 {
            let f = faulty.0.get(endpoint).copied().unwrap_or_default();
            assert_eq!(
                f.requests,
                c.requests + f.retries,
                "{name} {endpoint}: requests are the first attempts plus the retries"
            );
        }
        retries += faulty.total().retries;
        assert!(
            faulty.retry_share() > 0.0 && faulty.retry_share() < 1.0,
            "{name}: some requests were retries: {faulty:#?}"
        );
    }
    assert!(retries > 0, "the faults were retried: {faulty:#?}");
    let parties = faulty[1].0.get(PARTIES).copied().unwrap_or_default();
    assert!(
        parties.retries > 0,
        "party requests were retried too: {parties:?}"
    );
    // The run's counts read back the same from the serialized report.
    let json = serde_json::to_value(&faulty[1]).expect("usage serializes");
    assert_eq!(
        json[PARTIES],
        serde_json::json!({"requests": parties.requests, "retries": parties.retries})
    );
    let _: EndpointUsage = serde_json::from_value(json[PARTIES].clone()).expect("reads back");
}

/// The binary: `run` prints each run's requests, `status --json` shows the last run's,
/// and every request the simulator served is on one of the runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_summary_and_status_json_show_the_last_runs_requests() {
    let now = t("2024-03-02T08:00:00+08:00");
    let env = CliEnv::start(now, "2024-03-02T00:00:00+08:00").await;
    let o = env.sync().await;
    o.expect_code(0);
    assert!(
        o.stdout.contains("api requests: ") && o.stdout.contains(SEARCH),
        "the summary shows the requests\n{}",
        o.all()
    );
    let sim = env.sim.stats();
    let rows = env.status().await;
    let mut total = 0u64;
    let mut by_endpoint: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        let Some(counts) = r["last_run"]["api_requests"].as_object() else {
            continue;
        };
        for (label, u) in counts {
            let n = u["requests"].as_u64().unwrap_or(0);
            assert_eq!(u["retries"].as_u64(), Some(0), "{r}");
            total += n;
            *by_endpoint.entry(sim_name(label).to_string()).or_insert(0) += n;
        }
    }
    let talks = rows
        .iter()
        .find(|r| r["pipeline"] == "talks")
        .expect("talks in status");
    assert!(
        talks["last_run"]["api_requests"][SEARCH]["requests"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{talks}"
    );
    assert_eq!(
        by_endpoint,
        served(&SimStats::default(), &sim),
        "the runs' requests in status are what the simulator served: {rows:#?}"
    );
    assert_eq!(total, sim.requests + sim.token_requests);
}
