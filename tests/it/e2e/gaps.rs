//! Gaps and how they close: backfills load exactly and resume (scenario 4), a broken
//! window stops incremental runs there (scenario 5), and a backfill writes a file per day.

use super::*;

/// The talks search requests a range needs: one page per window, or more past 200 calls.
fn talk_pages(ds: &Dataset, engine: &Engine, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    let p = pipeline(engine, "talks");
    engine
        .grid(&p)
        .windows(from, to)
        .iter()
        .map(|w| {
            let n = ds.talks(w.start, w.end).len() as u64;
            n.div_ceil(u64::from(p.page_size)).max(1)
        })
        .sum()
}

fn maincdrs_ok(rig: &Rig) -> u64 {
    rig.sim
        .stats()
        .by_endpoint_status
        .get("maincdrs 200")
        .copied()
        .unwrap_or(0)
}

/// Scenario 4: backfills load exactly, leave the watermark alone, show up and close in
/// `status`; a broken window stops one, which then resumes past its done windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_fills_the_gap_and_resumes() {
    let start = t("2024-03-02T00:00:00+08:00");
    let now = t("2024-03-02T06:00:00+08:00");
    let mut rig = Rig::new(sim_ahead(now), Warehouse::local().await, start).await;
    // A broken window fails after a couple of quick retries, not after minutes.
    rig.set("SOBOT_MAX_RETRIES", "2");
    let ds = rig.sim.dataset();
    let engine = rig.engine(now);
    let talks = pipeline(&engine, "talks");
    let wm = t("2024-03-02T05:00:00+08:00");

    engine
        .run(&talks, Mode::Incremental)
        .await
        .expect("incremental run");
    assert_eq!(watermark(&engine, "talks").await, wm);

    // A backfill reaching past now - lag is refused as configuration, before any work.
    let err = engine
        .run(&talks, Mode::Backfill { from: wm, to: now })
        .await
        .expect_err("a backfill into the lag");
    assert!(err.is_config(), "{err}");

    // A backfill before the incremental start, leaving a gap up to it.
    let (b1_from, b1_to) = (
        t("2024-03-01T00:00:00+08:00"),
        t("2024-03-01T12:00:00+08:00"),
    );
    let report = engine
        .run(
            &talks,
            Mode::Backfill {
                from: b1_from,
                to: b1_to,
            },
        )
        .await
        .expect("first backfill");
    assert_eq!(report.windows, 12);
    assert_eq!(
        watermark(&engine, "talks").await,
        wm,
        "a backfill leaves the watermark"
    );
    let table = table::read(&engine, "talks").await;
    let grid = engine.grid(&talks);
    let loaded = truth::talks(&ds, b1_from, b1_to);
    let mut both = truth::talks(&ds, start, wm);
    both.recs.extend(loaded.recs.iter().cloned());
    truth::assert_exact(&table, &both, &grid);

    let status = sobot_sync::app::status::collect(&engine.catalog, &engine.state, now)
        .await
        .expect("status");
    let row = status
        .iter()
        .find(|r| r.pipeline == "talks")
        .expect("talks status");
    assert_eq!(
        row.gaps,
        vec![span(b1_to, start)],
        "the gap before the incremental start"
    );
    assert!(row.backfills.iter().all(|b| b.finished));

    // A second backfill over the gap meets a window that never answers.
    let broken = (
        t("2024-03-01T15:00:00+08:00"),
        t("2024-03-01T16:00:00+08:00"),
    );
    rig.sim.set_faults(Faults {
        broken_from: Some(broken.0),
        broken_to: Some(broken.1),
        ..Faults::default()
    });
    let err = engine
        .run(
            &talks,
            Mode::Backfill {
                from: b1_to,
                to: start,
            },
        )
        .await
        .expect_err("the broken window fails the backfill");
    match &err {
        RunError::Window {
            pipeline, window, ..
        } => {
            assert_eq!(pipeline, "talks");
            assert_eq!((window.start, window.end), broken);
        }
        other => panic!("expected a window error, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("[2024-03-01T07:00:00Z, 2024-03-01T08:00:00Z)"),
        "{err}"
    );
    let st = sobot_sync::app::setup::load_state(&engine.state, "talks")
        .await
        .expect("state")
        .expect("some");
    assert_eq!(st.watermark, wm);
    let open = st
        .backfills
        .iter()
        .find(|b| b.is_open())
        .expect("an open backfill");
    assert_eq!(
        open.done.0,
        vec![span(b1_to, broken.0)],
        "done up to the broken window"
    );

    // Cleared: the same backfill resumes at the broken window, asking for nothing before it.
    rig.sim.set_faults(Faults::default());
    let before = maincdrs_ok(&rig);
    let report = engine
        .run(
            &talks,
            Mode::Backfill {
                from: b1_to,
                to: start,
            },
        )
        .await
        .expect("resumed backfill");
    assert_eq!(report.windows, 9, "15:00..24:00 only");
    let asked = maincdrs_ok(&rig) - before;
    assert_eq!(
        asked,
        talk_pages(&ds, &engine, broken.0, start),
        "requests of the resumed windows only"
    );
    assert_eq!(asked, report.requests);

    assert_eq!(
        watermark(&engine, "talks").await,
        wm,
        "backfills leave the watermark"
    );
    let table = table::read(&engine, "talks").await;
    truth::assert_exact(&table, &truth::talks(&ds, b1_from, wm), &grid);
    let status = sobot_sync::app::status::collect(&engine.catalog, &engine.state, now)
        .await
        .expect("status");
    let row = status
        .iter()
        .find(|r| r.pipeline == "talks")
        .expect("talks status");
    assert!(row.gaps.is_empty(), "gaps closed: {:?}", row.gaps);
    assert!(
        row.backfills.iter().all(|b| b.finished),
        "{:?}",
        row.backfills
    );
}

/// Scenario 5: a window that never answers stops an incremental run there: the error
/// names pipeline and window, everything before it is committed with its files, nothing
/// after it; once it answers, the next run completes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_window_stops_incremental_runs_there() {
    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-01T12:00:00+08:00");
    let broken = (
        t("2024-03-01T05:00:00+08:00"),
        t("2024-03-01T06:00:00+08:00"),
    );
    let config = SimConfig {
        faults: Faults {
            broken_from: Some(broken.0),
            broken_to: Some(broken.1),
            ..Faults::default()
        },
        ..sim_ahead(now)
    };
    let mut rig = Rig::new(config, Warehouse::local().await, start).await;
    rig.set("SOBOT_MAX_RETRIES", "2");
    let ds = rig.sim.dataset();
    let engine = rig.engine(now);
    for name in ["talks", "parties"] {
        let p = pipeline(&engine, name);
        let outcome = engine.run(&p, Mode::Incremental).await;
        if name == "parties" {
            // issue 15: parties reads the calls talks committed; it stops where talks
            // did, and the windows after wait for talks instead of failing.
            let report = outcome.expect("parties stops at talks' watermark");
            let waiting = report.waiting.expect("windows wait for talks");
            assert_eq!((waiting.parent.as_str(), waiting.from), ("talks", broken.0));
        } else {
            let err = outcome.expect_err("the broken window fails the run");
            match &err {
                RunError::Window {
                    pipeline, window, ..
                } => {
                    assert_eq!(pipeline, name);
                    assert_eq!((window.start, window.end), broken);
                }
                other => panic!("{name}: expected a window error, got {other}"),
            }
            let text = err.to_string();
            assert!(
                text.contains(name)
                    && text.contains("[2024-02-29T21:00:00Z, 2024-02-29T22:00:00Z)"),
                "{text}"
            );
        }
        let st = sobot_sync::app::setup::load_state(&engine.state, name)
            .await
            .expect("state")
            .expect("some");
        assert_eq!(
            st.watermark, broken.0,
            "{name}: watermark at the broken window"
        );
        assert_eq!(
            st.completed.0,
            vec![span(start, broken.0)],
            "{name}: nothing after it"
        );
        assert_eq!(
            sobot_sync::app::status::last_failed(&st),
            name == "talks",
            "{name}: talks' run is recorded as failed, parties' is not"
        );
        // Windows before it are in place; the broken one has no file.
        let table = table::read(&engine, name).await;
        let grid = engine.grid(&p);
        truth::assert_exact(
            &files_within(&table, start, broken.0),
            &truth_of(name, &ds, start, broken.0),
            &grid,
        );
        assert!(files_within(&table, broken.0, broken.1).files.is_empty());
    }

    rig.sim.set_faults(Faults::default());
    let end = t("2024-03-01T11:00:00+08:00");
    for name in ["talks", "parties"] {
        let p = pipeline(&engine, name);
        engine
            .run(&p, Mode::Incremental)
            .await
            .expect("run after the fault clears");
        assert_eq!(watermark(&engine, name).await, end);
        let table = table::read(&engine, name).await;
        truth::assert_exact(&table, &truth_of(name, &ds, start, end), &engine.grid(&p));
    }
}

/// A backfill writes one file per day for talks and their parties; backfilling part of
/// a day again replaces exactly those windows' rows inside the day's file (their
/// `_run_id` changes, the others' does not) and nothing is duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_writes_a_file_per_day_and_a_rerun_replaces_inside_it() {
    let start = t("2024-03-03T00:00:00+08:00");
    let now = t("2024-03-03T06:00:00+08:00");
    let rig = Rig::new(sim_ahead(now), Warehouse::local().await, start).await;
    let ds = rig.sim.dataset();
    let engine = rig.engine(now);
    let (from, to) = (t("2024-03-01T00:00:00+08:00"), start);
    for name in ["talks", "parties"] {
        let report = engine
            .run(&pipeline(&engine, name), Mode::Backfill { from, to })
            .await
            .unwrap_or_else(|e| panic!("backfill {name}: {e}"));
        assert_eq!(
            (report.windows, report.files),
            (48, 2),
            "{name}: {report:?}"
        );
    }
    let first_talks = assert_table(&engine, &truth::talks(&ds, from, to)).await;
    assert_table(&engine, &truth::parties(&ds, from, to)).await;
    assert_eq!(first_talks.files.len(), 2);

    let (again_from, again_to) = (
        t("2024-03-02T05:00:00+08:00"),
        t("2024-03-02T08:00:00+08:00"),
    );
    for name in ["talks", "parties"] {
        let report = engine
            .run(
                &pipeline(&engine, name),
                Mode::Backfill {
                    from: again_from,
                    to: again_to,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("second backfill {name}: {e}"));
        assert_eq!(report.windows, 3, "{name}");
    }
    let talks = assert_table(&engine, &truth::talks(&ds, from, to)).await;
    assert_table(&engine, &truth::parties(&ds, from, to)).await;
    let paths = |t: &Table| t.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    assert_eq!(paths(&talks), paths(&first_talks), "the same two day files");

    // Rows of the rerun windows carry the second run's id, all others the first's.
    let run_ids = |t: &Table| -> Vec<(i64, String)> {
        t.files
            .iter()
            .flat_map(|f| {
                let ws = table::col_ms(&f.batch, "_window_start");
                let ids = table::col_str(&f.batch, "_run_id");
                ws.into_iter()
                    .zip(ids)
                    .map(|(w, id)| (w.expect("window"), id.expect("run id")))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let before = run_ids(&first_talks);
    let after = run_ids(&talks);
    assert_eq!(before.len(), after.len());
    let inside = |w: i64| w >= again_from.timestamp_millis() && w < again_to.timestamp_millis();
    let mut rerun_rows = 0;
    for ((w0, id0), (w1, id1)) in before.iter().zip(&after) {
        assert_eq!(w0, w1, "rows stay in order");
        if inside(*w1) {
            assert_ne!(id0, id1, "a rerun window's row was not replaced");
            rerun_rows += 1;
        } else {
            assert_eq!(id0, id1, "a row outside the rerun windows was rewritten");
        }
    }
    assert!(rerun_rows > 0, "the rerun windows hold rows");
}
