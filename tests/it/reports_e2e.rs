//! Report pipelines end to end: every shipped report pipeline against the simulator, on
//! local files and on S3, compared with `Dataset::report`; restatement of provisional
//! days; and `sobot-sync reconcile` through the binary.

use crate::support::both::local_and_s3;
use crate::support::cli_proc::CliEnv;
use crate::support::rig::{Rig, Warehouse, pipeline};
use crate::support::table::{self, Table};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMillisecondType};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::Value;
use sobot_sync::cli;
use sobot_sync::pipeline::Pipeline;
use sobot_sync::report::period::Period;
use sobot_sync::report::request;
use sobot_sync::report::spec::{ColumnKind, dimension_fields};
use sobot_sync::runner::{Engine, Report};
use sobot_sync::sim::{Dialect, Faults, ReportQuery, SimConfig};
use std::collections::BTreeMap;

const REPORTS: [&str; 6] = [
    "report_agents_inbound",
    "report_agents_outbound",
    "report_agents_status",
    "report_departments_inbound",
    "report_departments_outbound",
    "report_gateway_numbers",
];

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("test time {s:?}: {e}"))
}

/// The simulator's clock, a day past the engine's: every call of a loaded day has ended.
fn sim_now(now: DateTime<Utc>) -> DateTime<Utc> {
    now + Duration::days(1)
}

async fn run_reports(engine: &Engine) -> BTreeMap<String, Report> {
    let names: Vec<String> = REPORTS.iter().map(|s| s.to_string()).collect();
    cli::run_pipelines(engine, &names)
        .await
        .expect("report run succeeds")
        .into_iter()
        .map(|r| (r.pipeline.clone(), r))
        .collect()
}

/// A row key as the tables key it: period start (epoch ms) and the family's id.
type Key = (i64, String);

/// The simulator's rows of `p` over the windows `[from, to)` (whole days), by key. The
/// key's period start is the simulator's own instant for the row (`ReportTable::periods`),
/// not a reading of its `result_date`: across a DST fall-back two periods share their
/// labels (issue 13).
fn truth(
    rig: &Rig,
    p: &Pipeline,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> BTreeMap<Key, serde_json::Map<String, Value>> {
    let def = p.report.as_deref().expect("a report pipeline");
    let grid = def.window_grid();
    let id_field = dimension_fields(def.spec.family)[0].0;
    let ds = rig.sim.dataset();
    let mut out = BTreeMap::new();
    for w in grid.periods(from, to) {
        let mut body = request::page_body(&def.spec, rig.tz, w.start, w.end, 1).expect("body");
        body["pageSize"] = 1_000_000.into();
        let q = ReportQuery::parse(def.spec.family, &body).expect("the simulator takes it");
        let table = ds.report(&q, rig.tz, sim_now(now), &Faults::default());
        assert_eq!(table.total, table.rows.len(), "{}", p.name);
        assert_eq!(table.periods.len(), table.rows.len(), "{}", p.name);
        for (row, span) in table.rows.into_iter().zip(table.periods) {
            let row = row.as_object().cloned().expect("rows are objects");
            let rd = row["result_date"].as_str().expect("result_date is text");
            let (start_ms, end_ms) = span.expect("rows by period");
            let period = Period {
                start: DateTime::from_timestamp_millis(start_ms).expect("start"),
                end: DateTime::from_timestamp_millis(end_ms).expect("end"),
            };
            assert!(request::wanted(&period, w.start, w.end), "{rd}");
            let id = row[id_field]
                .as_str()
                .expect("id is text")
                .trim()
                .to_string();
            let dup = out.insert((period.start.timestamp_millis(), id), row);
            assert!(dup.is_none(), "{}: the simulator repeats a key", p.name);
        }
    }
    out
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.trim().parse().expect("numeric string")),
        _ => None,
    }
}

/// Asserts `table` holds exactly `truth`: keys unique, every period parsed, every column
/// typed as its indicator kind says and equal to the simulator's value.
fn assert_report_table(
    p: &Pipeline,
    table: &Table,
    truth: &BTreeMap<Key, serde_json::Map<String, Value>>,
) {
    let def = p.report.as_deref().expect("a report pipeline");
    let id_col = def.spec.key_columns()[1];
    let columns = def.spec.columns();
    let mut seen: BTreeMap<Key, ()> = BTreeMap::new();
    for f in &table.files {
        let b = &f.batch;
        for c in &columns {
            let ty = b
                .column_by_name(&c.name)
                .expect("column")
                .data_type()
                .clone();
            let want = match c.kind {
                ColumnKind::PeriodStart | ColumnKind::PeriodEnd | ColumnKind::Timestamp => {
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
                }
                ColumnKind::Text => DataType::Utf8,
                ColumnKind::Int => DataType::Int64,
                ColumnKind::Float => DataType::Float64,
            };
            assert_eq!(ty, want, "{}: column {}", p.name, c.name);
        }
        let starts = table::col_ms(b, "period_start");
        let ids = table::col_str(b, id_col);
        let errors = table::col_str(b, "_errors");
        for i in 0..b.num_rows() {
            let start =
                starts[i].unwrap_or_else(|| panic!("{}: null period in {}", p.name, f.path));
            assert_eq!(errors[i], None, "{}: {}", p.name, f.path);
            let key = (start, ids[i].clone().unwrap_or_default());
            assert!(
                seen.insert(key.clone(), ()).is_none(),
                "{}: key {key:?} twice",
                p.name
            );
            let want = truth
                .get(&key)
                .unwrap_or_else(|| panic!("{}: row {key:?} is not in the report", p.name));
            for c in &columns {
                let col = b.column_by_name(&c.name).expect("column");
                let got = col.is_valid(i);
                match c.kind {
                    ColumnKind::PeriodStart | ColumnKind::PeriodEnd => assert!(got),
                    ColumnKind::Text => {
                        let w = want.get(&c.field).map(|v| match v {
                            Value::String(s) => s.trim().to_string(),
                            other => other.to_string(),
                        });
                        assert_eq!(table::str_at(b, &c.name, i), w, "{} {}", p.name, c.name);
                    }
                    ColumnKind::Int => {
                        let v = col.as_primitive::<Int64Type>();
                        let w = want.get(&c.field).and_then(num).map(|x| x as i64);
                        assert_eq!(got.then(|| v.value(i)), w, "{} {}", p.name, c.name);
                    }
                    ColumnKind::Float => {
                        let v = col.as_primitive::<Float64Type>();
                        let w = want.get(&c.field).and_then(num);
                        assert_eq!(got.then(|| v.value(i)), w, "{} {}", p.name, c.name);
                    }
                    ColumnKind::Timestamp => {
                        let v = col.as_primitive::<TimestampMillisecondType>();
                        let w = want
                            .get(&c.field)
                            .and_then(num)
                            .map(|x| x as i64)
                            .filter(|&x| x != 0);
                        assert_eq!(got.then(|| v.value(i)), w, "{} {}", p.name, c.name);
                    }
                }
            }
        }
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        truth.keys().collect::<Vec<_>>(),
        "{}: keys",
        p.name
    );
}

/// One file per table and loaded day, named by the day's window.
fn assert_one_file_per_day(p: &Pipeline, table: &Table, days: &[&str]) {
    let mut dts: Vec<String> = table
        .files
        .iter()
        .map(|f| {
            f.path
                .split('/')
                .nth(1)
                .unwrap_or_default()
                .trim_start_matches("dt=")
                .to_string()
        })
        .collect();
    dts.sort();
    let want: Vec<String> = days.iter().map(|d| d.to_string()).collect();
    // A day without rows (no traffic) has no file.
    assert!(
        dts.iter().all(|d| want.contains(d)) && dts.windows(2).all(|w| w[0] != w[1]),
        "{}: files {dts:?}",
        p.name
    );
}

/// Scenario: two days of every report pipeline, loaded exactly.
async fn every_report_exact(warehouse: Warehouse) {
    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-03T02:00:00+08:00");
    let end = t("2024-03-03T00:00:00+08:00");
    let rig = Rig::new(
        SimConfig {
            now: Some(sim_now(now)),
            ..SimConfig::default()
        },
        warehouse,
        start,
    )
    .await;
    let engine = rig.engine(now);
    let reports = run_reports(&engine).await;
    for name in REPORTS {
        let p = pipeline(&engine, name);
        let r = &reports[name];
        assert_eq!(r.watermark, Some(end), "{name}");
        assert_eq!(r.windows, 2, "{name}");
        let counts = r.report.clone().expect("report counts");
        assert_eq!(counts.amount_mismatches, 0, "{name}: amount reconciled");
        assert_eq!(counts.unreadable_periods, 0, "{name}");
        let table = table::read(&engine, &p.table).await;
        assert!(table.rows() > 0, "{name}");
        assert_report_table(&p, &table, &truth(&rig, &p, start, end, now));
        assert_one_file_per_day(&p, &table, &["2024-03-01", "2024-03-02"]);
    }
    // A second run at the same instant re-fetches the provisional days and changes nothing.
    let again = run_reports(&engine).await;
    for name in REPORTS {
        let p = pipeline(&engine, name);
        let counts = again[name].report.clone().expect("report counts");
        assert_eq!(counts.refetched_windows, 2, "{name}");
        assert_eq!(counts.restated_periods, 0, "{name}");
        let table = table::read(&engine, &p.table).await;
        assert_report_table(&p, &table, &truth(&rig, &p, start, end, now));
    }
}

local_and_s3!(
    every_report_pipeline_exact_local,
    every_report_pipeline_exact_s3 => every_report_exact,
);

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
    let rows = sobot_sync::status::collect(&engine.catalog, &engine.state, now3)
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
        sobot_sync::status::render(&rows).contains("final until 2024-03-01T16:00:00+00:00"),
        "{}",
        sobot_sync::status::render(&rows)
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
    let reports = cli::run_pipelines(&engine, &[]).await.expect("run");
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

/// Backfill of report pipelines: a past range before the incremental start loads exactly
/// (every report, compared with `Dataset::report`, keys unique across both ranges) and
/// leaves the incremental state alone: same watermark, the next run re-fetches only its
/// own provisional days. A window that fails stops the backfill there; it resumes past
/// its done windows; `status` lists it, then shows it finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_backfill_loads_the_past_and_leaves_the_watermark() {
    use sobot_sync::runner::{Mode, RunError};
    use sobot_sync::sim::Faults;
    use sobot_sync::state::model::Span;
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
        let before = sobot_sync::cli::load_state(&engine.state, name)
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
        let after = sobot_sync::cli::load_state(&engine.state, name)
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
    let status = sobot_sync::status::collect(&engine.catalog, &engine.state, now)
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
    let st = sobot_sync::cli::load_state(&engine.state, "report_gateway_numbers")
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
    let status = sobot_sync::status::collect(&engine.catalog, &engine.state, now)
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
    let st = sobot_sync::cli::load_state(&engine.state, "report_gateway_numbers")
        .await
        .expect("state")
        .expect("loaded");
    assert!(st.backfills.iter().all(|b| !b.is_open()));
    assert!(st.completed.covers(Span {
        start: b_from,
        end: wm
    }));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy file");
        }
    }
}

/// Indicator catalogues follow SOBOT_SYNC_SCHEMAS: in a copied schemas folder, an added
/// indicator becomes a column of its kind's type, and an indicator whose kind is changed
/// is loaded with the new type (values as the simulator serves them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indicator_catalogues_come_from_the_schemas_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let schemas = dir.path().join("schemas");
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas"),
        &schemas,
    );
    let file = schemas.join("indicators/gateway_numbers.toml");
    let shipped = std::fs::read_to_string(&file).expect("read catalogue");
    // inbound_calls: a counter in the shipped file, a ratio here.
    let marker = "name = \"inbound_calls\"\n";
    let at = shipped.find(marker).expect("inbound_calls is listed") + marker.len();
    let (head, tail) = shipped.split_at(at);
    let retyped = format!(
        "{head}{}",
        tail.replacen("kind = \"counter\"", "kind = \"ratio\"", 1)
    );
    assert_ne!(retyped, shipped);
    let added = format!(
        "{retyped}\n[[indicators]]\nname = \"inbound_brand_new\"\nlabel = \"New\"\nkind = \"duration\"\ndirection = \"inbound\"\n"
    );
    std::fs::write(&file, &added).expect("write catalogue");

    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-02T02:00:00+08:00");
    let mut rig = Rig::new(
        SimConfig {
            now: Some(sim_now(now)),
            ..SimConfig::default()
        },
        Warehouse::local().await,
        start,
    )
    .await;
    rig.set("SOBOT_SYNC_SCHEMAS", &schemas.display().to_string());
    let engine = rig.engine(now);
    let p = pipeline(&engine, "report_gateway_numbers");
    let ty = |p: &Pipeline, name: &str| {
        p.schema
            .arrow
            .field_with_name(name)
            .map(|f| f.data_type().clone())
            .ok()
    };
    assert_eq!(ty(&p, "inbound_brand_new"), Some(DataType::Int64));
    assert_eq!(ty(&p, "inbound_calls"), Some(DataType::Float64));
    let def = p.report.as_deref().expect("report");
    assert!(
        def.spec
            .indicators
            .iter()
            .any(|i| i.name == "inbound_brand_new")
    );
    // The shipped catalogues of the other families are untouched.
    assert_eq!(
        ty(
            &pipeline(&engine, "report_agents_inbound"),
            "inbound_brand_new"
        ),
        None
    );

    // Without the added indicator (the simulator does not know it), the retyped one is
    // loaded as a float, equal to what the API serves.
    std::fs::write(&file, &retyped).expect("write catalogue");
    let engine = rig.engine(now);
    let p = pipeline(&engine, "report_gateway_numbers");
    assert_eq!(ty(&p, "inbound_brand_new"), None);
    let report = engine
        .run(&p, sobot_sync::runner::Mode::Incremental)
        .await
        .expect("run");
    assert_eq!(report.windows, 1);
    let table = table::read(&engine, &p.table).await;
    assert!(table.rows() > 0);
    assert_report_table(
        &p,
        &table,
        &truth(&rig, &p, start, t("2024-03-02T00:00:00+08:00"), now),
    );
}

/// issue 13: a DST day of a zone, and what its periods look like in each dialect.
struct DstDay {
    tz: chrono_tz::Tz,
    /// The local date of the change.
    day: &'static str,
    /// Hours in the day (25 fall back, 23 spring forward).
    hours: i64,
    /// The start of an hour period whose end label differs between the dialects: the first
    /// pass of a repeated hour, or the hour before a gap.
    hour_at: &'static str,
    /// That hour's labels (`HH:mm HH:mm`) in the `Enveloped` and in the `Literal` dialect,
    /// then the same for the half hour starting 30 minutes later.
    hour_labels: [&'static str; 2],
    half_labels: [&'static str; 2],
}

const DST_DAYS: [DstDay; 4] = [
    DstDay {
        tz: chrono_tz::America::New_York,
        day: "2024-03-10",
        hours: 23,
        hour_at: "2024-03-10T06:00:00Z",
        hour_labels: ["01:00 02:00", "01:00 03:00"],
        half_labels: ["01:30 02:00", "01:30 03:00"],
    },
    DstDay {
        tz: chrono_tz::America::New_York,
        day: "2024-11-03",
        hours: 25,
        hour_at: "2024-11-03T05:00:00Z",
        hour_labels: ["01:00 02:00", "01:00 01:00"],
        half_labels: ["01:30 02:00", "01:30 01:00"],
    },
    DstDay {
        tz: chrono_tz::Europe::London,
        day: "2024-03-31",
        hours: 23,
        hour_at: "2024-03-31T00:00:00Z",
        hour_labels: ["00:00 01:00", "00:00 02:00"],
        half_labels: ["00:30 01:00", "00:30 02:00"],
    },
    DstDay {
        tz: chrono_tz::Europe::London,
        day: "2024-10-27",
        hours: 25,
        hour_at: "2024-10-27T00:00:00Z",
        hour_labels: ["01:00 02:00", "01:00 01:00"],
        half_labels: ["01:30 02:00", "01:30 01:00"],
    },
];

/// The half-hour and hour report pipelines.
const DST_REPORTS: [(&str, i64); 2] = [("report_agents_status", 30), ("report_agents_inbound", 60)];

/// issue 13: the DST days of `tz` (both transitions), two days each from local midnight of
/// the change, loaded by the half-hour and hour report pipelines against a simulator
/// speaking `dialect`. Exact rows with distinct keys, every period of the day (25 or 23
/// hours, 50 or 46 half hours, one row per agent each), the dialect's labels stored as
/// sent, and the watermark past both days.
async fn dst_report_days(tz: chrono_tz::Tz, dialect: Dialect) {
    let agents = 4;
    for d in DST_DAYS.iter().filter(|d| d.tz == tz) {
        let date = NaiveDate::parse_from_str(d.day, "%Y-%m-%d").expect("date");
        let midnight = |n: i64| sobot_sync::timeutil::local_midnight(tz, date + Duration::days(n));
        let (start, end) = (midnight(0), midnight(2));
        let now = end + Duration::hours(2);
        let rig = Rig::new(
            SimConfig {
                timezone: tz,
                agents,
                calls_per_hour: 4.0,
                dialect,
                now: Some(sim_now(now)),
                ..SimConfig::default()
            },
            Warehouse::local().await,
            start,
        )
        .await;
        let engine = rig.engine(now);
        let names: Vec<String> = DST_REPORTS.iter().map(|(n, _)| n.to_string()).collect();
        let reports: BTreeMap<String, Report> = cli::run_pipelines(&engine, &names)
            .await
            .unwrap_or_else(|e| panic!("{} {dialect:?}: {e}", d.day))
            .into_iter()
            .map(|r| (r.pipeline.clone(), r))
            .collect();
        for (name, minutes) in DST_REPORTS {
            let what = format!("{name} {} {} {dialect:?}", tz.name(), d.day);
            let p = pipeline(&engine, name);
            let r = &reports[name];
            assert_eq!(r.watermark, Some(end), "{what}: past the day");
            assert_eq!(r.windows, 2, "{what}");
            let counts = r.report.clone().expect("report counts");
            assert_eq!(counts.unreadable_periods, 0, "{what}");
            assert_eq!(counts.amount_mismatches, 0, "{what}");
            let table = table::read(&engine, &p.table).await;
            let want = truth(&rig, &p, start, end, now);
            assert_report_table(&p, &table, &want);
            assert_one_file_per_day(
                &p,
                &table,
                &[d.day, &(date + Duration::days(1)).to_string()],
            );

            // Every period of the DST day, each with one row per agent.
            let mut per_period: BTreeMap<i64, usize> = BTreeMap::new();
            let mut labels: BTreeMap<i64, Vec<String>> = BTreeMap::new();
            for f in &table.files {
                let starts = table::col_ms(&f.batch, "period_start");
                let dates = table::col_str(&f.batch, "result_date");
                for (s, rd) in starts.iter().zip(dates) {
                    let s = s.expect("period_start");
                    if s < midnight(1).timestamp_millis() {
                        *per_period.entry(s).or_default() += 1;
                        let rd: String = rd.expect("result_date").split_whitespace().collect();
                        labels.entry(s).or_default().push(rd);
                    }
                }
            }
            assert_eq!(
                per_period.len() as i64,
                d.hours * 60 / minutes,
                "{what}: periods"
            );
            assert!(
                per_period.values().all(|n| *n == agents),
                "{what}: {per_period:?}"
            );
            let span = |ms: i64| {
                let next = per_period.range(ms + 1..).next().map(|(k, _)| *k);
                next.map(|n| n - ms)
            };
            assert!(
                per_period
                    .keys()
                    .all(|s| span(*s).is_none_or(|len| len == minutes * 60_000)),
                "{what}: every period is {minutes} minutes"
            );
            // The dialect's labels, stored as the API sent them.
            let at = t(d.hour_at).timestamp_millis() + if minutes == 30 { 1_800_000 } else { 0 };
            let pair = if minutes == 30 {
                d.half_labels
            } else {
                d.hour_labels
            };
            let pick = usize::from(dialect == Dialect::Literal);
            let (a, b) = pair[pick].split_once(' ').expect("two labels");
            let want_label = format!("{}{a}{}{b}", d.day, d.day);
            let got = &labels[&at];
            assert!(
                got.iter().all(|l| *l == want_label),
                "{what}: {got:?} != {want_label}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_report_periods_new_york_enveloped() {
    dst_report_days(chrono_tz::America::New_York, Dialect::Enveloped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_report_periods_new_york_literal() {
    dst_report_days(chrono_tz::America::New_York, Dialect::Literal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_report_periods_london_enveloped() {
    dst_report_days(chrono_tz::Europe::London, Dialect::Enveloped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_report_periods_london_literal() {
    dst_report_days(chrono_tz::Europe::London, Dialect::Literal).await;
}
