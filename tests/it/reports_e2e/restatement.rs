//! Restatement of provisional days, and `sobot-sync reconcile` through the binary.

use super::*;

/// Restatement: a provisional day restated by the API is fetched again, its file is
/// replaced (no duplicates) and the change is counted; a final day is not fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restated_days_are_replaced_until_final() {
    let start = t("2024-03-01T00:00:00+08:00");
    let now1 = t("2024-03-03T02:00:00+08:00");
    let end = t("2024-03-03T00:00:00+08:00");
    let rig = Rig::new(
        SimConfig {
            now: Some(sim_now(now1)),
            ..SimConfig::default()
        },
        Warehouse::local().await,
        start,
    )
    .await;
    run_reports(&rig.engine(now1)).await;

    // The API recomputes yesterday (2024-03-02) with two more talk pairs.
    let day = NaiveDate::from_ymd_opt(2024, 3, 2).expect("date");
    assert_eq!(rig.sim.restate(day, 2), 2);
    let now2 = now1 + Duration::hours(1);
    let engine = rig.engine(now2);
    let reports = run_reports(&engine).await;
    for name in REPORTS {
        let p = pipeline(&engine, name);
        let counts = reports[name].report.clone().expect("report counts");
        assert_eq!(
            counts.refetched_windows, 2,
            "{name}: both days are provisional"
        );
        let table = table::read(&engine, &p.table).await;
        assert_report_table(&p, &table, &truth(&rig, &p, start, end, now1));
        assert_one_file_per_day(&p, &table, &["2024-03-01", "2024-03-02"]);
        // Every report counts the restated talks or talk time somewhere that day.
        assert!(counts.restated_periods > 0, "{name}: {counts}");
    }
    let gw = reports["report_gateway_numbers"]
        .report
        .clone()
        .expect("counts");
    assert_eq!(
        gw.restated_periods, 1,
        "one day period of the relay numbers changed"
    );

    // Two days later 2024-03-01 is final: restating it now changes nothing stored.
    let now3 = t("2024-03-04T02:00:00+08:00");
    let engine = rig.engine(now3);
    let before = table::read(&engine, "report_gateway_numbers")
        .await
        .snapshot();
    let first = NaiveDate::from_ymd_opt(2024, 3, 1).expect("date");
    rig.sim.restate(first, 3);
    let reports = run_reports(&engine).await;
    let gw = reports["report_gateway_numbers"]
        .report
        .clone()
        .expect("counts");
    // 2024-03-02 and 2024-03-03 are provisional (03-03 is new); 03-01 is not re-read.
    assert_eq!(gw.refetched_windows, 1, "{gw}");
    assert_eq!(gw.restated_periods, 0, "{gw}");
    let after = table::read(&engine, "report_gateway_numbers")
        .await
        .snapshot();
    let day1 = |snap: &BTreeMap<String, Vec<String>>| -> Vec<String> {
        snap.iter()
            .filter(|(path, _)| path.contains("dt=2024-03-01"))
            .flat_map(|(_, rows)| rows.clone())
            .collect()
    };
    assert_eq!(
        day1(&before),
        day1(&after),
        "a final day is never re-fetched"
    );

    // status shows up to when periods are final.
    let rows = sobot_sync::app::status::collect(&engine.catalog, &engine.state, now3)
        .await
        .expect("status");
    let gw = rows
        .iter()
        .find(|r| r.pipeline == "report_gateway_numbers")
        .expect("row");
    let settle = gw
        .report
        .clone()
        .expect("settle status of a report pipeline");
    assert_eq!(settle.final_until, Some(t("2024-03-02T00:00:00+08:00")));
    assert!(
        sobot_sync::app::status::render(&rows).contains("final until 2024-03-01T16:00:00+00:00"),
        "{}",
        sobot_sync::app::status::render(&rows)
    );
}

/// `reconcile` through the binary: 0 while reports and talks agree, 1 once a restated
/// (and then final) day makes the relay number report disagree with the talks, 2 for bad
/// arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_exit_codes() {
    let now = t("2024-03-03T02:00:00+08:00");
    let env = CliEnv::start(now, "2024-03-01").await;
    env.sync().await.expect_code(0);
    // Three days later both loaded days are final.
    let later = "2024-03-06";
    let o = env.run(&["reconcile", "--now", later]).await;
    o.expect_code(0);
    assert!(o.stdout.contains("4 checked: 4 equal"), "{}", o.all());

    env.sim
        .restate(NaiveDate::from_ymd_opt(2024, 3, 2).expect("date"), 1);
    env.sync().await.expect_code(0);
    let o = env.run(&["reconcile", "--now", later]).await;
    o.expect_code(1);
    assert!(
        o.stdout.contains("2024-03-02 inbound_calls") && o.stdout.contains("MISMATCH"),
        "{}",
        o.all()
    );
    // Within a tolerance of one call per day it passes again; the first day alone too.
    env.run(&["reconcile", "--now", later, "--tolerance", "1"])
        .await
        .expect_code(0);
    env.run(&["reconcile", "--now", later, "--to", "2024-03-02"])
        .await
        .expect_code(0);
    for bad in [
        vec!["reconcile", "--tolerance", "lots"],
        vec!["reconcile", "--from", "soon"],
        vec!["reconcile", "--from", "2024-03-02", "--to", "2024-03-01"],
    ] {
        env.run(&bad).await.expect_code(2);
    }
}
