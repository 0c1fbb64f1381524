//! Backfill of report pipelines: the past loads exactly and the incremental state stays.

use super::*;

/// Backfill of report pipelines: a past range before the incremental start loads exactly
/// (every report, compared with `Dataset::report`, keys unique across both ranges) and
/// leaves the incremental state alone: same watermark, the next run re-fetches only its
/// own provisional days. A window that fails stops the backfill there; it resumes past
/// its done windows; `status` lists it, then shows it finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_backfill_loads_the_past_and_leaves_the_watermark() {
    use sobot_sync::engine::run::{Mode, RunError};
    use sobot_sync::io::state::model::Span;
    use sobot_sync::sim::Faults;
    let start = t("2024-03-05T00:00:00+08:00");
    let now = t("2024-03-07T02:00:00+08:00");
    let wm = t("2024-03-07T00:00:00+08:00");
    let mut rig = Rig::new(
        SimConfig {
            now: Some(sim_now(now)),
            ..SimConfig::default()
        },
        Warehouse::local().await,
        start,
    )
    .await;
    // The broken window below fails after a couple of quick retries.
    rig.set("SOBOT_MAX_RETRIES", "2");
    let engine = rig.engine(now);
    run_reports(&engine).await;

    // From and to inside their days: the range widens to whole days (windows).
    let (from, to) = (
        t("2024-03-01T07:30:00+08:00"),
        t("2024-03-02T23:00:00+08:00"),
    );
    let (b_from, b_to) = (
        t("2024-03-01T00:00:00+08:00"),
        t("2024-03-03T00:00:00+08:00"),
    );
    for name in REPORTS {
        let p = pipeline(&engine, name);
        let before = sobot_sync::app::setup::load_state(&engine.state, name)
            .await
            .expect("state")
            .expect("loaded");
        let r = engine
            .run(&p, Mode::Backfill { from, to })
            .await
            .unwrap_or_else(|e| panic!("backfill {name}: {e}"));
        assert_eq!(r.windows, 2, "{name}");
        assert_eq!(
            r.watermark,
            Some(wm),
            "{name}: a backfill leaves the watermark"
        );
        let after = sobot_sync::app::setup::load_state(&engine.state, name)
            .await
            .expect("state")
            .expect("loaded");
        assert_eq!(after.watermark, before.watermark, "{name}");
        assert_eq!(after.window_secs, before.window_secs, "{name}");
        let b = after.backfills.last().expect("the backfill is recorded");
        assert_eq!((b.from, b.to), (b_from, b_to), "{name}");
        assert!(!b.is_open(), "{name}: finished");
        assert_eq!(
            after.last_run.as_ref().map(|r| r.kind.as_str()),
            Some("backfill")
        );

        let mut want = truth(&rig, &p, b_from, b_to, now);
        want.extend(truth(&rig, &p, start, wm, now));
        let table = table::read(&engine, &p.table).await;
        assert_report_table(&p, &table, &want);
        assert_one_file_per_day(
            &p,
            &table,
            &["2024-03-01", "2024-03-02", "2024-03-05", "2024-03-06"],
        );
    }
    let status = sobot_sync::app::status::collect(&engine.catalog, &engine.state, now)
        .await
        .expect("status");
    for name in REPORTS {
        let row = status.iter().find(|r| r.pipeline == name).expect("row");
        assert_eq!(
            row.gaps,
            vec![Span {
                start: b_to,
                end: start
            }],
            "{name}: the gap between backfill and incremental start"
        );
        assert!(row.backfills.iter().all(|b| b.finished), "{name}");
    }

    // The incremental state is untouched: the next run at the same instant re-fetches its
    // own two provisional days, not the (final) backfilled ones, and loads nothing new.
    let again = run_reports(&engine).await;
    for name in REPORTS {
        let r = &again[name];
        let counts = r.report.clone().expect("report counts");
        assert_eq!(counts.refetched_windows, 2, "{name}");
        assert_eq!(r.windows, 2, "{name}");
        assert_eq!(r.watermark, Some(wm), "{name}");
    }

    // A backfill into the lag is refused as configuration.
    let gw = pipeline(&engine, "report_gateway_numbers");
    let err = engine
        .run(
            &gw,
            Mode::Backfill {
                from: start,
                to: now,
            },
        )
        .await
        .expect_err("a backfill into the lag");
    assert!(err.is_config(), "{err}");

    // A broken day stops a backfill of the gap there, with the earlier day committed.
    let broken = (
        t("2024-03-04T00:00:00+08:00"),
        t("2024-03-05T00:00:00+08:00"),
    );
    rig.sim.set_faults(Faults {
        broken_from: Some(broken.0),
        broken_to: Some(broken.1),
        ..Faults::default()
    });
    let gap = Mode::Backfill {
        from: b_to,
        to: start,
    };
    let err = engine
        .run(&gw, gap)
        .await
        .expect_err("the broken day fails the backfill");
    match &err {
        RunError::Window { window, .. } => assert_eq!((window.start, window.end), broken),
        other => panic!("expected a window error, got {other}"),
    }
    let st = sobot_sync::app::setup::load_state(&engine.state, "report_gateway_numbers")
        .await
        .expect("state")
        .expect("loaded");
    assert_eq!(st.watermark, wm);
    let open = st.backfills.iter().find(|b| b.is_open()).expect("open");
    assert_eq!(
        open.done.0,
        vec![Span {
            start: b_to,
            end: broken.0
        }]
    );
    let status = sobot_sync::app::status::collect(&engine.catalog, &engine.state, now)
        .await
        .expect("status");
    let row = status
        .iter()
        .find(|r| r.pipeline == "report_gateway_numbers")
        .expect("row");
    assert!(row.backfills.iter().any(|b| !b.finished), "listed as open");

    // Cleared: the backfill resumes at the broken day only.
    rig.sim.set_faults(Faults::default());
    let r = engine.run(&gw, gap).await.expect("resumed backfill");
    assert_eq!(r.windows, 1, "only the broken day is left");
    assert_eq!(r.watermark, Some(wm));
    let table = table::read(&engine, &gw.table).await;
    assert_report_table(&gw, &table, &truth(&rig, &gw, b_from, wm, now));
    let st = sobot_sync::app::setup::load_state(&engine.state, "report_gateway_numbers")
        .await
        .expect("state")
        .expect("loaded");
    assert!(st.backfills.iter().all(|b| !b.is_open()));
    assert!(st.completed.covers(Span {
        start: b_from,
        end: wm
    }));
}
