//! `sobot-sync reconcile [--from DATE] [--to DATE] [--tolerance T] [--now TIME]`: the
//! relay number report against the talks, day by day, from the warehouse.
//!
//! Reads `period_start`, `inbound_calls` and `outbound_calls` of the table of the
//! relay number report pipeline (`report_gateway_numbers`) and `start_time`, `call_type`
//! of `talks`, adds them up per local day in SOBOT_TIMEZONE, and prints the days where
//! they differ (`report::reconcile::gateway_vs_talks`, `format_table`).
//!
//! Only days both sides can vouch for are compared: days inside the ranges both
//! pipelines have loaded (from the first loaded day to the watermark), and only report
//! days that are final (`end + settle_secs <= now`), since a provisional day may still be
//! restated. `--from` / `--to` narrow that range (`--to` exclusive, like `backfill`).
//!
//! Exit status: 0 when no day differs beyond the tolerance (`--tolerance`, else
//! SOBOT_SYNC_RECONCILE_TOLERANCE, else exact), 1 when one does or a table cannot be
//! read, 2 for bad arguments or a setup that cannot be reconciled.

use crate::app::settings::Settings;
use crate::core::error::CommandError;
use crate::core::pipeline::{Catalog, Kind, Pipeline};
use crate::core::report::definition::ReportDef;
use crate::core::report::indicators::Family;
use crate::core::report::reconcile::{
    DayCounts, Summary, Tolerance, format_table, gateway_vs_talks, talk_day_counts,
};
use crate::core::report::settle;
use crate::core::timeutil;
use crate::engine::report::warehouse;
use crate::io::state::model::PipelineState;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampMillisecondType};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;
use std::path::Path;

/// The table of the relay number report compared with talks.
pub const GATEWAY_TABLE: &str = "report_gateway_numbers";
/// The talks table.
pub const TALKS_TABLE: &str = "talks";

/// The command's arguments as typed.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub from: Option<String>,
    pub to: Option<String>,
    pub tolerance: Option<String>,
    pub now: Option<String>,
    /// issue 4: the tenant (needed when several are configured).
    pub tenant: Option<String>,
}

fn by_table<'a>(catalog: &'a Catalog, table: &str) -> Result<&'a Pipeline, CommandError> {
    catalog
        .pipelines
        .values()
        .find(|p| p.table == table)
        .ok_or_else(|| {
            CommandError::Config(format!(
                "reconcile needs a pipeline writing table {table:?}; none is defined in {}",
                catalog.source
            ))
        })
}

/// The first loaded instant and the watermark of a pipeline, from its state.
async fn loaded_range(
    state: &crate::io::state::store::StateStore,
    p: &Pipeline,
) -> Result<(DateTime<Utc>, DateTime<Utc>), CommandError> {
    let st: PipelineState = crate::app::setup::load_state(state, &p.name)
        .await?
        .ok_or_else(|| {
            CommandError::Failed(format!(
                "pipeline {} has never run: nothing of table {} to reconcile",
                p.name, p.table
            ))
        })?;
    let first = st.completed.0.first().map_or(st.watermark, |s| s.start);
    Ok((first.min(st.watermark), st.watermark))
}

/// Runs the command.
pub async fn run(config: Option<&Path>, args: &Args) -> Result<(), CommandError> {
    let settings = crate::app::tenant::one(
        &Settings::load(config)?,
        args.tenant.as_deref(),
        "reconcile",
    )?;
    let tz = settings.timezone;
    let tolerance: Tolerance = match &args.tolerance {
        Some(t) => t
            .parse()
            .map_err(|why| CommandError::Config(format!("--tolerance: {why}")))?,
        None => settings.reconcile_tolerance,
    };
    let parse = |flag: &str, v: &Option<String>| -> Result<Option<DateTime<Utc>>, CommandError> {
        v.as_deref()
            .map(|s| timeutil::parse_time(s, tz))
            .transpose()
            .map_err(|why| CommandError::Config(format!("{flag}: {why}")))
    };
    let from = parse("--from", &args.from)?;
    let to = parse("--to", &args.to)?;
    let now = parse("--now", &args.now)?.unwrap_or_else(Utc::now);
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(CommandError::Config(format!(
            "--from {} is not before --to {}",
            f.to_rfc3339(),
            t.to_rfc3339()
        )));
    }
    let catalog = crate::app::setup::load_catalog(&settings)?;
    let gateway = by_table(&catalog, GATEWAY_TABLE)?;
    let talks = by_table(&catalog, TALKS_TABLE)?;
    let def: &ReportDef = match (gateway.kind, gateway.report.as_deref()) {
        (Kind::Report, Some(def)) if def.spec.family == Family::GatewayNumbers => def,
        _ => {
            return Err(CommandError::Config(format!(
                "pipeline {} (table {GATEWAY_TABLE}) is not a relay number report",
                gateway.name
            )));
        }
    };
    let date_type = def.spec.date_type;
    if !matches!(
        date_type,
        crate::core::report::period::DateType::HalfHour
            | crate::core::report::period::DateType::Hour
            | crate::core::report::period::DateType::Day
    ) {
        return Err(CommandError::Config(format!(
            "pipeline {} has {date_type} periods; reconcile compares days, so it needs half_hour, hour or day",
            gateway.name
        )));
    }
    let (warehouse_loc, state) = crate::app::setup::locations(&settings)?;
    let (g_first, g_wm) = loaded_range(&state, gateway).await?;
    let (t_first, t_wm) = loaded_range(&state, talks).await?;
    let grid = def.window_grid();
    let final_until = settle::final_until(&grid, def.spec.settle_secs, now);
    // Whole days only: the range's ends go to day boundaries (start up, end down).
    let start = [Some(g_first), Some(t_first), from]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(g_first);
    let end = [Some(g_wm), Some(t_wm), Some(final_until), to]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(g_wm);
    let first_day = {
        let p = grid.period_of(start);
        if p.start == start { p.start } else { p.end }
    };
    let end_day = grid.period_of(end).start;
    let first_date = timeutil::local_date(tz, first_day);
    let end_date = timeutil::local_date(tz, end_day);
    if first_day >= end_day {
        println!(
            "{GATEWAY_TABLE} vs {TALKS_TABLE}: no final day loaded by both in range (report final until {}, report loaded to {}, talks loaded to {})",
            final_until.to_rfc3339(),
            g_wm.to_rfc3339(),
            t_wm.to_rfc3339()
        );
        return Ok(());
    }
    let in_range = |d: NaiveDate| first_date <= d && d < end_date;
    let in_span = |ms: i64| first_day.timestamp_millis() <= ms && ms < end_day.timestamp_millis();

    let report = warehouse::read_table(
        &warehouse_loc,
        &gateway.table,
        &["period_start", "inbound_calls", "outbound_calls"],
        in_range,
    )
    .await
    .map_err(|e| CommandError::Failed(format!("table {}: {e}", gateway.table)))?;
    let mut gateway_days: BTreeMap<NaiveDate, DayCounts> = BTreeMap::new();
    let mut unreadable = 0usize;
    for b in &report {
        let (Some(starts), Some(inb), Some(outb)) = (
            b.column_by_name("period_start")
                .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>()),
            b.column_by_name("inbound_calls")
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
            b.column_by_name("outbound_calls")
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
        ) else {
            return Err(CommandError::Failed(format!(
                "table {}: needs period_start, inbound_calls and outbound_calls (does the pipeline name fewer indicators?)",
                gateway.table
            )));
        };
        for i in 0..b.num_rows() {
            if starts.is_null(i) {
                unreadable += 1;
                continue;
            }
            let ms = starts.value(i);
            if !in_span(ms) {
                continue;
            }
            let Some(t) = DateTime::from_timestamp_millis(ms) else {
                continue;
            };
            let e = gateway_days.entry(timeutil::local_date(tz, t)).or_default();
            e.inbound += if inb.is_null(i) { 0 } else { inb.value(i) };
            e.outbound += if outb.is_null(i) { 0 } else { outb.value(i) };
        }
    }

    let talk_batches = warehouse::read_table(
        &warehouse_loc,
        &talks.table,
        &["start_time", "call_type"],
        in_range,
    )
    .await
    .map_err(|e| CommandError::Failed(format!("table {}: {e}", talks.table)))?;
    let mut pairs = Vec::new();
    for b in &talk_batches {
        let (Some(starts), Some(types)) = (
            b.column_by_name("start_time")
                .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>()),
            b.column_by_name("call_type")
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
        ) else {
            return Err(CommandError::Failed(format!(
                "table {}: needs start_time and call_type",
                talks.table
            )));
        };
        for i in 0..b.num_rows() {
            if starts.is_null(i) || types.is_null(i) || !in_span(starts.value(i)) {
                continue;
            }
            if let Some(t) = DateTime::from_timestamp_millis(starts.value(i)) {
                pairs.push((t, types.value(i)));
            }
        }
    }
    let talk_days = talk_day_counts(pairs, tz);
    let comparisons = gateway_vs_talks(&gateway_days, &talk_days);
    let last_date = end_date.pred_opt().unwrap_or(end_date);
    let title = format!(
        "{} vs {} callType, {first_date} .. {last_date} (final days)",
        gateway.table, talks.table
    );
    print!("{}", format_table(&title, &comparisons, &tolerance));
    if unreadable > 0 {
        println!("{unreadable} report rows without a period were left out (see their _errors)");
    }
    let summary = Summary::of(&comparisons, &tolerance);
    if summary.passed() {
        Ok(())
    } else {
        Err(CommandError::Failed(format!(
            "{} of {} comparisons differ beyond the tolerance ({tolerance})",
            summary.mismatched, summary.checked
        )))
    }
}
