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
use sobot_sync::core::pipeline::Pipeline;
use sobot_sync::core::report::period::Period;
use sobot_sync::core::report::request;
use sobot_sync::core::report::spec::{ColumnKind, dimension_fields};
use sobot_sync::engine::run::{Engine, Report};
use sobot_sync::sim::{Dialect, Faults, ReportQuery, SimConfig};
use std::collections::BTreeMap;

mod backfill;
mod catalogues;
mod periods;
mod restatement;

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
    sobot_sync::app::run::run_pipelines(engine, &names)
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
        let midnight =
            |n: i64| sobot_sync::core::timeutil::local_midnight(tz, date + Duration::days(n));
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
        let reports: BTreeMap<String, Report> =
            sobot_sync::app::run::run_pipelines(&engine, &names)
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
