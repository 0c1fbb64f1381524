//! Zones: DST changes in New York (scenario 6), and an engine zone that differs from
//! the simulator's.

use super::*;

/// Loads `[start, start + days)` of a New York simulator in New York time and checks it.
/// Returns the rig too: it owns the warehouse directory.
async fn dst_exact(start: DateTime<Utc>, end: DateTime<Utc>, dialect: Dialect) -> (Rig, Engine) {
    let now = end + Duration::hours(1);
    let config = SimConfig {
        timezone: chrono_tz::America::New_York,
        calls_per_hour: 20.0,
        dialect,
        ..sim_ahead(now)
    };
    let rig = Rig::new(config, Warehouse::local().await, start).await;
    let engine = rig.engine(now);
    sobot_sync::app::run::run_pipelines(&engine, &[])
        .await
        .expect("run over the DST change");
    assert_all_exact(&engine, &rig.sim.dataset(), start, end).await;
    (rig, engine)
}

/// Hours of the agent-history files of one `dt` (every hour has status intervals).
async fn window_hours(engine: &Engine, dt: &str) -> Vec<i64> {
    let table = table::read(engine, "agent_histories").await;
    let windows = table.assert_layout("start_time", chrono_tz::America::New_York);
    table
        .files
        .iter()
        .zip(&windows)
        .filter(|(f, _)| f.path.contains(&format!("/dt={dt}/")))
        .map(|(_, (s, e))| (*e - *s).num_hours())
        .collect()
}

/// Scenario 6a: spring forward in New York: exact, and the short day has 23 windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_spring_forward_new_york() {
    let (_rig, engine) = dst_exact(
        t("2024-03-09T00:00:00-05:00"),
        t("2024-03-12T00:00:00-04:00"),
        Dialect::Enveloped,
    )
    .await;
    assert_eq!(window_hours(&engine, "2024-03-10").await, vec![1; 23]);
    assert_eq!(window_hours(&engine, "2024-03-11").await, vec![1; 24]);
}

/// Scenario 6b: fall back: exact, and the long day's repeated hour is one two-hour window.
/// Every pipeline runs, so the day's report periods are read too: in the literal dialect
/// (issue 13) their labels repeat and one reads "01:00 01:00".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_fall_back_new_york() {
    dst_fall_back_new_york_in(Dialect::Enveloped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_fall_back_new_york_literal_dialect() {
    dst_fall_back_new_york_in(Dialect::Literal).await;
}

async fn dst_fall_back_new_york_in(dialect: Dialect) {
    let (_rig, engine) = dst_exact(
        t("2024-11-02T00:00:00-04:00"),
        t("2024-11-05T00:00:00-05:00"),
        dialect,
    )
    .await;
    let hours = window_hours(&engine, "2024-11-03").await;
    assert_eq!(hours.len(), 24, "{hours:?}");
    assert_eq!(hours.iter().sum::<i64>(), 25);
    assert_eq!(
        hours[1], 2,
        "01:00-02:00 local holds both 01:00 hours: {hours:?}"
    );
    let table = table::read(&engine, "agent_histories").await;
    assert!(
        table.files.iter().any(|f| f
            .path
            .ends_with("dt=2024-11-03/20241103T050000Z_20241103T070000Z.parquet")),
        "the two-hour window's file"
    );
}

/// The engine's zone need not be the simulator's: the `timezoneid` header makes the API
/// answer (and read) local strings in SOBOT_TIMEZONE, and `dt` follows that zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_zone_differs_from_the_simulators() {
    let start = t("2024-03-01T00:00:00Z");
    let end = t("2024-03-02T00:00:00Z");
    let now = end + Duration::hours(1);
    let mut rig = Rig::new(sim_ahead(now), Warehouse::local().await, start).await;
    rig.set("SOBOT_TIMEZONE", "UTC");
    let engine = rig.engine(now);
    let p = pipeline(&engine, "agent_histories");
    engine.run(&p, Mode::Incremental).await.expect("run in UTC");
    assert_eq!(watermark(&engine, "agent_histories").await, end);
    let table = table::read(&engine, "agent_histories").await;
    truth::assert_exact(
        &table,
        &truth::agent_histories(&rig.sim.dataset(), start, end),
        &engine.grid(&p),
    );
    assert!(
        table
            .files
            .iter()
            .all(|f| f.path.contains("/dt=2024-03-01/"))
    );
}
