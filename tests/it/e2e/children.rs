//! issue 15 parts 1 and 2: `parties` takes its calls from the committed `talks` table
//! (no talk list of its own), never runs ahead of it, and on lookback fetches the legs
//! of new, changed and settling calls only. Request counts are the simulator's own.

use super::{t, watermark};
use crate::support::both::local_and_s3;
use crate::support::rig::{Rig, Warehouse, pipeline};
use crate::support::table;
use crate::support::truth;
use chrono::{DateTime, Duration, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use sobot_sync::engine::run::{Engine, Mode, Report};
use sobot_sync::sim::{Faults, SimConfig, SimStats};
use std::collections::BTreeSet;

const BOTH: [&str; 2] = ["talks", "parties"];

/// The simulator's requests of `endpoint` between two snapshots.
fn served(before: &SimStats, after: &SimStats, endpoint: &str) -> u64 {
    after.count(endpoint) - before.count(endpoint)
}

async fn run_both(engine: &Engine) -> Vec<Report> {
    sobot_sync::app::run::run_pipelines(engine, &BOTH.map(String::from))
        .await
        .expect("talks and parties run")
}

async fn call_ids(engine: &Engine) -> BTreeSet<String> {
    table::read(engine, "talks")
        .await
        .by_key("call_id")
        .into_keys()
        .collect()
}

/// Both tables hold exactly the calls (and their legs) that had ended by `now`, over
/// `[from, committed watermark)`.
async fn assert_visible_truth(rig: &Rig, engine: &Engine, from: DateTime<Utc>, now: DateTime<Utc>) {
    let ds = rig.sim.dataset();
    let now_ms = now.timestamp_millis();
    for name in BOTH {
        let wm = watermark(engine, name).await;
        let truth = match name {
            "talks" => truth::talks(&ds, from, wm),
            _ => truth::parties(&ds, from, wm),
        }
        .filter(|r| r.ends_ms <= now_ms);
        let p = pipeline(engine, name);
        truth::assert_exact(&table::read(engine, name).await, &truth, &engine.grid(&p));
    }
}

/// The steady state: after catching up, the next hourly run costs one party request per
/// call new to the warehouse (plus the few calls still settling) and the talk pages of
/// the windows talks lists: within 1.25 times that minimum. parties lists no talk page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_state_hourly_run_stays_within_the_request_target() {
    let now1 = t("2024-03-03T14:10:00+08:00");
    let start = now1 - Duration::days(1) - Duration::minutes(10);
    let config = SimConfig {
        now: Some(now1),
        ..SimConfig::default()
    };
    let rig = Rig::new(config, Warehouse::local().await, start).await;
    run_both(&rig.engine(now1)).await;
    let calls_before = call_ids(&rig.engine(now1)).await;

    let now2 = now1 + Duration::hours(1);
    rig.sim.set_now(Some(now2));
    let engine = rig.engine(now2);
    let before = rig.sim.stats();
    let reports = run_both(&engine).await;
    let after = rig.sim.stats();
    let calls_after = call_ids(&engine).await;
    let new_calls = calls_after.difference(&calls_before).count() as u64;

    let pages = served(&before, &after, "maincdrs");
    let legs = served(&before, &after, "partycdrs");
    let parties = reports
        .iter()
        .find(|r| r.pipeline == "parties")
        .expect("a parties report");
    assert!(
        !parties
            .api_requests
            .0
            .keys()
            .any(|e| e.ends_with("/_search")),
        "parties lists no talk page: {:?}",
        parties.api_requests
    );
    assert_eq!(
        parties.api_requests.total().requests,
        legs,
        "every partycdrs request is the parties run's"
    );
    assert!(new_calls > 20, "an hour of calls is new: {new_calls}");
    let minimum = new_calls + pages;
    let ratio = (legs + pages) as f64 / minimum as f64;
    eprintln!(
        "steady state: {legs} party requests + {pages} talk pages for {new_calls} new calls: {ratio:.3}x the minimum"
    );
    assert!(
        ratio <= 1.25,
        "{legs} party requests + {pages} talk pages for {new_calls} new calls: {ratio:.2}x the minimum"
    );
    assert_visible_truth(&rig, &engine, start, now2).await;
}

/// Calls that show up late (after their window was first loaded) get their legs on the
/// lookback; besides them, only calls that ended within `refetch_within_secs` of now
/// are asked again. Exactly those: one request each.
async fn late_calls_get_their_legs_and_settled_calls_are_not_asked_again(warehouse: Warehouse) {
    let start = t("2024-03-02T12:00:00+08:00");
    let now = t("2024-03-03T01:00:00+08:00");
    let config = SimConfig {
        now: Some(now),
        faults: Faults {
            late_fraction: 0.2,
            late_secs: 2 * 3600,
            ..Faults::default()
        },
        ..SimConfig::default()
    };
    let rig = Rig::new(config, warehouse, start).await;
    let engine = rig.engine(now);
    run_both(&engine).await;
    let calls_before = call_ids(&engine).await;
    // The simulator moves on (late calls of loaded windows become visible); the engine's
    // clock does not, so only lookback windows run.
    rig.sim.set_now(Some(now + Duration::hours(3)));
    let before = rig.sim.stats();
    let reports = run_both(&engine).await;
    let after = rig.sim.stats();
    assert!(reports.iter().all(|r| r.windows == r.lookback_windows));
    let calls_after = call_ids(&engine).await;
    let late: BTreeSet<&String> = calls_after.difference(&calls_before).collect();
    assert!(!late.is_empty(), "some calls came late");

    // The calls loaded before that ended within the settle period (an hour) of now.
    let ds = rig.sim.dataset();
    let horizon = (now - Duration::hours(1)).timestamp_millis();
    let lookback_from = watermark(&engine, "parties").await - Duration::hours(6);
    let settling = truth::talks(&ds, lookback_from, now)
        .recs
        .iter()
        .filter(|r| calls_before.contains(&r.key) && r.ends_ms > horizon)
        .count() as u64;
    assert_eq!(
        served(&before, &after, "partycdrs"),
        late.len() as u64 + settling,
        "one request per late call and per settling call, none for the others"
    );
    // And the late calls' legs are there: both tables exact for what is visible.
    assert_visible_truth(&rig, &engine, start, now + Duration::hours(3)).await;
}

local_and_s3!(
    late_calls_get_their_legs_local,
    late_calls_get_their_legs_s3 => late_calls_get_their_legs_and_settled_calls_are_not_asked_again,
);

/// parties never commits a window talks has not committed: run alone, it stops at talks'
/// watermark and says what waits; a backfill over a range talks has not loaded is
/// refused, naming talks; once talks catches up, parties does too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_window_never_commits_ahead_of_its_parent() {
    let start = t("2024-03-02T00:00:00+08:00");
    let now1 = t("2024-03-02T08:00:00+08:00");
    let rig = Rig::new(
        super::sim_ahead(now1 + Duration::hours(4)),
        Warehouse::local().await,
        start,
    )
    .await;
    let engine = rig.engine(now1);
    engine
        .run(&pipeline(&engine, "talks"), Mode::Incremental)
        .await
        .expect("talks runs");
    let talks_wm = watermark(&engine, "talks").await;

    let now2 = now1 + Duration::hours(3);
    let engine = rig.engine(now2);
    let before = rig.sim.stats();
    let report = engine
        .run(&pipeline(&engine, "parties"), Mode::Incremental)
        .await
        .expect("parties runs");
    assert_eq!(
        served(&before, &rig.sim.stats(), "maincdrs"),
        0,
        "no talk list"
    );
    assert_eq!(
        watermark(&engine, "parties").await,
        talks_wm,
        "parties stops where talks did"
    );
    let waiting = report.waiting.clone().expect("windows wait for talks");
    assert_eq!(waiting.parent, "talks");
    assert_eq!(waiting.windows, 3);
    assert_eq!(waiting.from, talks_wm);
    let st = sobot_sync::app::setup::load_state(&engine.state, "parties")
        .await
        .expect("state")
        .expect("parties has state");
    assert_eq!(st.last_run.and_then(|r| r.waiting), Some(waiting));

    // A backfill over windows talks has not loaded is refused before any request.
    let before = rig.sim.stats();
    let err = engine
        .run(
            &pipeline(&engine, "parties"),
            Mode::Backfill {
                from: talks_wm,
                to: talks_wm + Duration::hours(2),
            },
        )
        .await
        .expect_err("refused");
    assert!(err.is_config(), "{err}");
    assert!(
        err.to_string()
            .contains("backfill talks over the range first"),
        "{err}"
    );
    assert_eq!(rig.sim.stats().requests, before.requests);

    // Together (parents first), both catch up, exactly.
    let reports = run_both(&engine).await;
    assert!(reports.iter().all(|r| r.waiting.is_none()), "{reports:?}");
    // now2 less the 30-minute lag, on the hourly grid.
    let limit = now2 - Duration::hours(1);
    assert_eq!(watermark(&engine, "talks").await, limit);
    assert_eq!(watermark(&engine, "parties").await, limit);
    let ds = rig.sim.dataset();
    let p = pipeline(&engine, "parties");
    truth::assert_exact(
        &table::read(&engine, "parties").await,
        &truth::parties(&ds, start, limit),
        &engine.grid(&p),
    );
}

/// A backfill of parties over a range talks loaded asks once per call, and lists no talk
/// page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_of_children_asks_once_per_parent() {
    let start = t("2024-03-02T00:00:00+08:00");
    let now = t("2024-03-03T08:00:00+08:00");
    let rig = Rig::new(super::sim_ahead(now), Warehouse::local().await, start).await;
    let engine = rig.engine(now);
    let (from, to) = (start, start + Duration::days(1));
    engine
        .run(&pipeline(&engine, "talks"), Mode::Backfill { from, to })
        .await
        .expect("talks backfill");
    let before = rig.sim.stats();
    engine
        .run(&pipeline(&engine, "parties"), Mode::Backfill { from, to })
        .await
        .expect("parties backfill");
    let after = rig.sim.stats();
    let ds = rig.sim.dataset();
    let calls = truth::talks(&ds, from, to).recs.len() as u64;
    assert_eq!(
        served(&before, &after, "partycdrs"),
        calls,
        "one request per call"
    );
    assert_eq!(served(&before, &after, "maincdrs"), 0, "no talk page");
    let p = pipeline(&engine, "parties");
    truth::assert_exact(
        &table::read(&engine, "parties").await,
        &truth::parties(&ds, from, to),
        &engine.grid(&p),
    );
}

/// A stored file of parties lost by hand: the next lookback finds fewer legs than the
/// window's digest counted and fetches those calls' legs again, so nothing stays lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legs_lost_from_a_stored_file_are_fetched_again() {
    let start = t("2024-03-02T12:00:00+08:00");
    let now = t("2024-03-03T01:00:00+08:00");
    let rig = Rig::new(super::sim_ahead(now), Warehouse::local().await, start).await;
    let engine = rig.engine(now);
    run_both(&engine).await;
    // The earliest lookback window: its calls ended long before the settle period.
    let wm = watermark(&engine, "parties").await;
    let (from, to) = (wm - Duration::hours(6), wm - Duration::hours(5));
    let name = format!(
        "{}_{}.parquet",
        from.format("%Y%m%dT%H%M%SZ"),
        to.format("%Y%m%dT%H%M%SZ")
    );
    let loc = &engine.warehouse;
    let files: Vec<object_store::ObjectMeta> = loc
        .store()
        .list(None)
        .try_collect()
        .await
        .expect("list the warehouse");
    let file = files
        .iter()
        .find(|m| m.location.as_ref().contains("parties/") && m.location.as_ref().ends_with(&name))
        .unwrap_or_else(|| panic!("a parties file {name}"));
    loc.store()
        .delete(&file.location)
        .await
        .expect("remove the file");

    let ds = rig.sim.dataset();
    let calls_with_legs = truth::talks(&ds, from, to)
        .recs
        .iter()
        .filter(|r| !ds.parties(&r.key).is_empty())
        .count() as u64;
    assert!(calls_with_legs > 0);
    let horizon = (now - Duration::hours(1)).timestamp_millis();
    let settling = truth::talks(&ds, wm - Duration::hours(6), wm)
        .recs
        .iter()
        .filter(|r| r.ends_ms > horizon)
        .count() as u64;
    let before = rig.sim.stats();
    run_both(&engine).await;
    assert_eq!(
        served(&before, &rig.sim.stats(), "partycdrs"),
        calls_with_legs + settling,
        "the lost window's calls with legs, and the settling calls, are asked again"
    );
    let p = pipeline(&engine, "parties");
    truth::assert_exact(
        &table::read(&engine, "parties").await,
        &truth::parties(&ds, start, wm),
        &engine.grid(&p),
    );
}

/// The fees of a call's legs, by party id, as stored.
fn stored_fees(table: &table::Table) -> std::collections::BTreeMap<String, Option<i64>> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    let mut out = std::collections::BTreeMap::new();
    for (key, at) in table.by_key("party_id") {
        let fee = at
            .file
            .batch
            .column_by_name("fee_seconds")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .and_then(|c| c.is_valid(at.row).then(|| c.value(at.row)));
        out.insert(key, fee);
    }
    out
}

/// A call revised after it was loaded (its bill settles later: fees 0 at first) changes
/// its talks row; the next lookback fetches its legs again, and ends with their final
/// fees. Only the changed, new and settling calls are asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_call_gets_its_legs_again() {
    let start = t("2024-03-02T12:00:00+08:00");
    let now = t("2024-03-03T01:00:00+08:00");
    let faults = Faults {
        revise_fraction: 0.3,
        revise_secs: 2 * 3600,
        ..Faults::default()
    };
    let config = SimConfig {
        now: Some(now),
        faults: faults.clone(),
        ..SimConfig::default()
    };
    let rig = Rig::new(config, Warehouse::local().await, start).await;
    let engine = rig.engine(now);
    run_both(&engine).await;
    let calls_before = call_ids(&engine).await;
    let wm = watermark(&engine, "parties").await;
    let lookback = (wm - Duration::hours(6), wm);
    let ds = rig.sim.dataset();
    // Calls of the lookback windows loaded in their preliminary form that are final by
    // the simulator's later now, and whose talks row differs (a call without a fee has
    // the same row either way: nothing to see, nothing to fetch).
    let later = now + Duration::hours(3);
    let served_then: std::collections::BTreeMap<String, serde_json::Value> = ds
        .talks_at(lookback.0, lookback.1, &faults, now)
        .into_iter()
        .map(|t| {
            (
                t["callID"].as_str().unwrap_or_default().trim().to_string(),
                t,
            )
        })
        .collect();
    let finals: std::collections::BTreeMap<String, serde_json::Value> = ds
        .talks(lookback.0, lookback.1)
        .into_iter()
        .map(|t| {
            (
                t["callID"].as_str().unwrap_or_default().trim().to_string(),
                t,
            )
        })
        .collect();
    let changed: BTreeSet<String> = ds
        .revised_calls(lookback.0, lookback.1, &faults)
        .into_iter()
        .filter(|(id, final_at)| {
            calls_before.contains(id)
                && *final_at > now
                && *final_at <= later
                && served_then.get(id) != finals.get(id)
        })
        .map(|(id, _)| id)
        .collect();
    assert!(!changed.is_empty(), "some loaded calls are revised later");
    let prelim = stored_fees(&table::read(&engine, "parties").await);

    rig.sim.set_now(Some(later));
    let before = rig.sim.stats();
    run_both(&engine).await;
    let asked = served(&before, &rig.sim.stats(), "partycdrs");
    let calls_after = call_ids(&engine).await;
    let horizon = (now - Duration::hours(1)).timestamp_millis();
    let mut expected: BTreeSet<String> = calls_after.difference(&calls_before).cloned().collect();
    expected.extend(changed.iter().cloned());
    expected.extend(
        truth::talks(&ds, lookback.0, lookback.1)
            .recs
            .iter()
            .filter(|r| calls_before.contains(&r.key) && r.ends_ms > horizon)
            .map(|r| r.key.clone()),
    );
    assert_eq!(
        asked,
        expected.len() as u64,
        "one request per changed, new or settling call ({} changed)",
        changed.len()
    );
    // The revised calls' legs now carry their final fees, which differ from what was
    // stored first.
    let fees = stored_fees(&table::read(&engine, "parties").await);
    let mut differ = 0;
    for id in &changed {
        for leg in ds.parties(id) {
            let party = leg["partyId"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .to_string();
            let final_fee = leg["feeSeconds"].as_i64();
            assert_eq!(
                fees.get(&party).copied().flatten(),
                final_fee,
                "leg {party} of {id}"
            );
            differ += usize::from(prelim.get(&party).copied().flatten() != final_fee);
        }
    }
    assert!(differ > 0, "the preliminary fees were stored at first");
    // Every window of the lookback is exactly the final truth.
    let visible = later.timestamp_millis();
    for name in BOTH {
        let truth = match name {
            "talks" => truth::talks(&ds, lookback.0, lookback.1),
            _ => truth::parties(&ds, lookback.0, lookback.1),
        }
        .filter(|r| r.ends_ms <= visible);
        let p = pipeline(&engine, name);
        truth::assert_exact(
            &super::files_within(&table::read(&engine, name).await, lookback.0, lookback.1),
            &truth,
            &engine.grid(&p),
        );
    }
}
