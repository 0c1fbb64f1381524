//! Week and month reports: a window is the period itself.

use super::*;

/// Week and month reports: a window is the period itself and its file lands in the `dt`
/// of the period's first day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn week_and_month_windows_are_their_periods() {
    let dir = tempfile::tempdir().expect("pipelines folder");
    let common = "kind = \"report\"\nlag_secs = 3600\ninitial_start = \"2024-01-01\"\nschedule = \"0 0 3 * * *\"\n";
    std::fs::write(
        dir.path().join("weekly.toml"),
        format!("name = \"weekly_agents\"\ntable = \"weekly_agents\"\n{common}[report]\nfamily = \"agents\"\ndirection = \"inbound\"\ndate_type = \"week\"\n"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("monthly.toml"),
        format!("name = \"monthly_gateways\"\ntable = \"monthly_gateways\"\n{common}[report]\nfamily = \"gateway_numbers\"\ndate_type = \"month\"\nindicators = [\"inbound_calls\", \"outbound_calls\", \"inbound_calls_duration\"]\n"),
    )
    .expect("write");
    let start = t("2024-02-26T00:00:00+08:00");
    let now = t("2024-03-12T02:00:00+08:00");
    let mut rig = Rig::new(
        SimConfig {
            now: Some(sim_now(now)),
            ..SimConfig::default()
        },
        Warehouse::local().await,
        start,
    )
    .await;
    rig.set("SOBOT_SYNC_PIPELINES", &dir.path().display().to_string());
    let engine = rig.engine(now);
    let reports = sobot_sync::app::run::run_pipelines(&engine, &[])
        .await
        .expect("run");
    assert_eq!(reports.len(), 2);

    let weekly = pipeline(&engine, "weekly_agents");
    let week_end = t("2024-03-11T00:00:00+08:00");
    let table = table::read(&engine, "weekly_agents").await;
    assert_report_table(&weekly, &table, &truth(&rig, &weekly, start, week_end, now));
    let paths: Vec<&str> = table.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "weekly_agents/dt=2024-02-26/20240225T160000Z_20240303T160000Z.parquet",
            "weekly_agents/dt=2024-03-04/20240303T160000Z_20240310T160000Z.parquet"
        ]
    );

    // The month of the start (February) is over; March is not.
    let monthly = pipeline(&engine, "monthly_gateways");
    let feb = t("2024-02-01T00:00:00+08:00");
    let mar = t("2024-03-01T00:00:00+08:00");
    let table = table::read(&engine, "monthly_gateways").await;
    assert_report_table(&monthly, &table, &truth(&rig, &monthly, feb, mar, now));
    let paths: Vec<&str> = table.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["monthly_gateways/dt=2024-02-01/20240131T160000Z_20240229T160000Z.parquet"]
    );
    let by_name: BTreeMap<&str, &Report> =
        reports.iter().map(|r| (r.pipeline.as_str(), r)).collect();
    assert_eq!(by_name["monthly_gateways"].watermark, Some(mar));
    assert_eq!(by_name["weekly_agents"].watermark, Some(week_end));
}
