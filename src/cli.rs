//! The command line (CONTRACT section 1). Every command returns an exit status:
//! 0 success, 1 a pipeline (or the API check) failed, 2 bad usage or configuration.

use crate::api::ApiClient;
use crate::clock::{FixedClock, SharedClock, SystemClock};
use crate::pipeline::Catalog;
use crate::runner::{Engine, Mode, Report, RunError};
use crate::settings::{ConfigError, Settings};
use crate::state::model::{Outcome, PipelineState};
use crate::state::store::StateStore;
use crate::store::Location;
use crate::{sim, status, timeutil};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "sobot-sync",
    version,
    about = "Keeps a data warehouse in sync with a Sobot call centre"
)]
pub struct Cli {
    /// Settings file (TOML); environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Incremental sync: every window from each pipeline's watermark to now - lag, then the lookback windows.
    Run {
        /// Pipelines to run (default: every enabled one).
        pipelines: Vec<String>,
        /// Pretend the current time is TIME (RFC 3339 or a date).
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// issue 4: only this tenant (default: every configured tenant).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
    },
    /// Load the historical range [from, to) of one pipeline; resumable, never moves the watermark.
    Backfill {
        pipeline: String,
        #[arg(long, value_name = "TIME")]
        from: String,
        #[arg(long, value_name = "TIME")]
        to: String,
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// issue 4: the tenant (needed when several are configured).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
        /// Load only shard I of N (I from 0): the range split at local midnights into N parts that run at once (see docs/operations.md, sharded backfill).
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// N shards, this one's index from JOB_COMPLETION_INDEX (a Kubernetes indexed Job).
        #[arg(long, value_name = "N")]
        shards: Option<String>,
    },
    /// Where each pipeline stands: watermark, lag, gaps, last run, open backfills.
    Status {
        /// One JSON array, an object per pipeline.
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// issue 4: only this tenant (default: every configured tenant).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
    },
    /// Validate settings, pipelines and schemas, prove storage access, then prove every endpoint the enabled pipelines use with one cheap request each.
    Check {
        /// issue 4: only this tenant (default: every configured tenant).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
        /// issue 13: one JSON object: the checks and an array of endpoint results.
        #[arg(long)]
        json: bool,
        /// Pretend the current time is TIME (the windows and periods probed).
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
    },
    /// Compare the relay number report with the talks, per final day; exit 1 on a difference beyond the tolerance.
    Reconcile {
        /// First day (RFC 3339 or a date; default: the first day both tables loaded).
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// End, exclusive (default: the last final day both tables loaded).
        #[arg(long, value_name = "DATE")]
        to: Option<String>,
        /// 5 (absolute), 0.5% (relative) or 5,0.5% (either); default SOBOT_SYNC_RECONCILE_TOLERANCE, else exact.
        #[arg(long, value_name = "T")]
        tolerance: Option<String>,
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// issue 4: the tenant (needed when several are configured).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
    },
    /// Long-running scheduler: each pipeline on its own cron schedule until SIGTERM/SIGINT.
    Daemon {
        /// Pipelines to schedule (default: every enabled one).
        pipelines: Vec<String>,
        /// Pretend the current time is TIME in every run (replays and tests).
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
    },
    /// The built-in Sobot API simulator.
    Sim(Box<sim::SimArgs>),
    /// Start the simulator in-process and sync three simulated days into the warehouse.
    Demo {
        /// Also write what the demo wrote (rows and files per table) as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        summary_json: Option<PathBuf>,
        /// issue 13: which of the API document's answer forms the demo's simulator speaks
        /// (`literal`: the unwrapped token, `code: 0` reports, bare metrics, recordings on
        /// another host); the product reads both.
        #[arg(long, value_enum, default_value_t = crate::sim::Dialect::Enveloped, env = "SOBOT_SIM_DIALECT")]
        dialect: crate::sim::Dialect,
    },
    // --- issue 5 (M): agent metrics stream, see src/watch_metrics/ ---
    /// Follow the agent metrics stream and write an agent_metrics snapshot every SOBOT_SYNC_METRICS_SNAPSHOT_SECS, until SIGTERM/SIGINT.
    WatchMetrics {
        /// The tenant (needed when several are configured).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
    },
    // --- issue 4 (C): warehouse integration, see src/ddl.rs and src/compact.rs ---
    /// Print CREATE statements that make every enabled table queryable in Trino or DuckDB.
    Ddl {
        #[arg(long, value_enum)]
        dialect: crate::ddl::Dialect,
        /// Where the tables are (default: SOBOT_SYNC_WAREHOUSE).
        #[arg(long, value_name = "URL")]
        location: Option<String>,
        /// The schema the tables and views are created in.
        #[arg(long, value_name = "NAME", default_value = "sobot")]
        schema: String,
        /// Tables to print (default: every enabled one).
        tables: Vec<String>,
    },
    /// Merge the window files of closed partitions of TABLE into files of SOBOT_SYNC_COMPACT_TARGET_BYTES.
    Compact {
        table: String,
        /// Only partitions before this date (default: today in SOBOT_TIMEZONE).
        #[arg(long, value_name = "DATE")]
        before: Option<String>,
        /// Pretend the current time is TIME (RFC 3339 or a date).
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// The tenant (needed when several are configured).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
    },
    // --- issue 13: crash recovery, see src/unlock.rs ---
    /// Release a pipeline's lock left by a crashed run (like terraform force-unlock); refuses (exit 1) while a live holder's lease is fresh, unless --force.
    Unlock {
        pipeline: String,
        /// Release even while the holder's lease is fresh and its process may be alive.
        #[arg(long)]
        force: bool,
        /// Release this range lock (a shard's FROM_TO scope, or `compact`) instead of the pipeline lock.
        #[arg(long, value_name = "SCOPE")]
        range: Option<String>,
        /// The tenant (needed when several are configured).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
    },
    // --- issue 5 (R): push receiver, see src/receive/ ---
    /// Receive Sobot's pushes: verify, log durably, acknowledge, flush to Parquet; until SIGTERM.
    Receive {
        /// Listen address (default SOBOT_SYNC_RECEIVE_ADDR, else 0.0.0.0:8780).
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
    },
}

/// Errors with their exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Config(e.to_string())
    }
}

pub async fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Receive { addr } => {
            crate::receive::run(cli.config.as_deref(), addr.as_deref()).await
        }
        Command::Unlock {
            pipeline,
            force,
            range,
            tenant,
        } => {
            let args = crate::unlock::Args {
                pipeline,
                force,
                range,
                tenant,
            };
            crate::unlock::run(cli.config.as_deref(), &args).await
        }
        Command::Sim(args) => sim::serve(args.as_ref())
            .await
            .map_err(|e| CliError::Config(format!("simulator: {e}"))),
        Command::Demo {
            summary_json,
            dialect,
        } => crate::demo::run(cli.config.as_deref(), summary_json.as_deref(), dialect).await,
        Command::Compact {
            table,
            before,
            now,
            tenant,
        } => {
            let args = crate::compact::Args {
                table,
                before,
                now,
                tenant,
            };
            crate::compact::run(cli.config.as_deref(), &args).await
        }
        Command::Ddl {
            dialect,
            location,
            schema,
            tables,
        } => crate::ddl::run(
            cli.config.as_deref(),
            &crate::ddl::Args {
                dialect,
                location,
                schema,
                tables,
            },
        ),
        Command::WatchMetrics { tenant } => {
            crate::watch_metrics::run_cmd(cli.config.as_deref(), tenant.as_deref()).await
        }
        Command::Check { tenant, json, now } => {
            let (tenant, now) = (tenant.as_deref(), now.as_deref());
            crate::check::run(cli.config.as_deref(), tenant, json, now).await
        }
        Command::Daemon { pipelines, now } => {
            crate::daemon::run(cli.config.as_deref(), &pipelines, now.as_deref()).await
        }
        Command::Reconcile {
            from,
            to,
            tolerance,
            now,
            tenant,
        } => {
            let args = crate::report::reconcile_cmd::Args {
                from,
                to,
                tolerance,
                now,
                tenant,
            };
            crate::report::reconcile_cmd::run(cli.config.as_deref(), &args).await
        }
        Command::Status { json, now, tenant } => {
            status_cmd(
                cli.config.as_deref(),
                json,
                now.as_deref(),
                tenant.as_deref(),
            )
            .await
        }
        Command::Run {
            pipelines,
            now,
            tenant,
        } => {
            run_cmd(
                cli.config.as_deref(),
                &pipelines,
                now.as_deref(),
                tenant.as_deref(),
            )
            .await
        }
        Command::Backfill {
            pipeline,
            from,
            to,
            now,
            tenant,
            shard: None,
            shards: None,
        } => {
            backfill_cmd(
                cli.config.as_deref(),
                &pipeline,
                &from,
                &to,
                now.as_deref(),
                tenant.as_deref(),
            )
            .await
        }
        // issue 4 (deploy): sharded backfill for the Kubernetes indexed Job.
        Command::Backfill {
            pipeline,
            from,
            to,
            now,
            tenant,
            shard,
            shards,
        } => {
            let (shard, shards) = (shard.as_deref(), shards.as_deref());
            let args = (pipeline.as_str(), from.as_str(), to.as_str());
            crate::shard::backfill_cmd(
                cli.config.as_deref(),
                args,
                now.as_deref(),
                tenant.as_deref(),
                (shard, shards),
            )
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

pub(crate) fn clock(settings: &Settings, now: Option<&str>) -> Result<SharedClock, CliError> {
    match now {
        None => Ok(Arc::new(SystemClock)),
        Some(s) => {
            let t = timeutil::parse_time(s, settings.timezone)
                .map_err(|why| CliError::Config(format!("--now: {why}")))?;
            Ok(Arc::new(FixedClock(t)))
        }
    }
}

pub fn load_catalog(settings: &Settings) -> Result<Catalog, CliError> {
    Catalog::load(
        &settings.pipelines_dir,
        &settings.schemas_dir,
        settings.timezone,
    )
    .map_err(|e| CliError::Config(e.to_string()))
}

pub fn locations(settings: &Settings) -> Result<(Location, StateStore), CliError> {
    let warehouse = Location::parse(&settings.warehouse, &settings.s3)
        .map_err(|e| CliError::Config(format!("setting SOBOT_SYNC_WAREHOUSE: {e}")))?;
    let state = Location::parse(&settings.state_url(), &settings.s3)
        .map_err(|e| CliError::Config(format!("setting SOBOT_SYNC_STATE: {e}")))?;
    // issue 4: one tenant's tables and state (unchanged without tenants).
    let (warehouse, state) = crate::tenant::scope(settings, warehouse, state)?;
    Ok((warehouse, StateStore::new(state)))
}

/// Builds the engine: settings are already loaded; this validates the rest.
pub fn engine(settings: Settings, clock: SharedClock) -> Result<Engine, CliError> {
    let catalog = load_catalog(&settings)?;
    crate::privacy::validate(&catalog, settings.pii_key.as_ref())?; // issue 4 privacy
    let api = settings.api_settings()?;
    let client = ApiClient::new(api).map_err(|e| CliError::Config(e.to_string()))?;
    let (warehouse, state) = locations(&settings)?;
    Ok(Engine {
        settings,
        catalog,
        client,
        warehouse,
        state,
        clock,
        stop: Default::default(),
    })
}

fn run_error(e: RunError) -> CliError {
    if e.is_config() {
        CliError::Config(e.to_string())
    } else {
        CliError::Failed(e.to_string())
    }
}

fn print_report(tenant: &str, r: &Report) {
    println!(
        "{tenant}{}: {} windows ({} lookback), {} rows, {} files, {} requests; watermark {}",
        r.pipeline,
        r.windows,
        r.lookback_windows,
        r.rows,
        r.files,
        r.requests,
        r.watermark.map_or("-".into(), |w| w.to_rfc3339())
    );
    if let Some(counts) = &r.report {
        println!("  {counts}");
    }
    if !r.skipped.is_empty() {
        let parts: Vec<String> = r.skipped.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!("  skipped (see the log): {}", parts.join(", "));
    }
}

/// Runs pipelines incrementally; parents before their children, independent ones at once.
pub async fn run_pipelines(engine: &Engine, names: &[String]) -> Result<Vec<Report>, CliError> {
    let selected = engine.catalog.select(names).map_err(CliError::Config)?;
    let run_id = Engine::new_run_id();
    let wanted: Vec<&str> = selected.iter().map(|p| p.name.as_str()).collect();
    // Every lock up front: a second run started at the same time is refused whole.
    let claim = engine.claim(&wanted, &run_id).await.map_err(run_error)?;
    // Parents first so that children see the parent's fresh windows in the same run.
    let (parents, children): (Vec<_>, Vec<_>) =
        selected.into_iter().partition(|p| p.parent.is_none());
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for stage in [parents, children] {
        let results = futures::future::join_all(
            stage
                .iter()
                .map(|p| engine.run_claimed(p, Mode::Incremental, &run_id, &claim)),
        )
        .await;
        for r in results {
            match r {
                Ok(rep) => {
                    print_report(&crate::tenant::label(&engine.settings), &rep);
                    reports.push(rep);
                }
                Err(e) => {
                    let config = e.is_config();
                    eprintln!("error: {}{e}", crate::tenant::label(&engine.settings));
                    errors.push((config, e.to_string()));
                }
            }
        }
    }
    claim.release().await;
    if errors.is_empty() {
        Ok(reports)
    } else if errors.iter().all(|(c, _)| *c) {
        Err(CliError::Config(format!(
            "{} pipeline(s) misconfigured",
            errors.len()
        )))
    } else {
        Err(CliError::Failed(format!(
            "{} of {} pipeline(s) failed",
            errors.len(),
            errors.len() + reports.len()
        )))
    }
}

async fn run_cmd(
    config: Option<&std::path::Path>,
    names: &[String],
    now: Option<&str>,
    tenant: Option<&str>,
) -> Result<(), CliError> {
    let settings = Settings::load(config)?;
    // issue 4: every selected tenant at once, each with its own engine; one
    // /metrics and /healthz for all of them.
    let selected = crate::tenant::select(&settings, tenant)?;
    let mut engines = Vec::with_capacity(selected.len());
    for settings in selected {
        let clock = clock(&settings, now)?;
        engines.push(engine(settings, clock)?);
    }
    let _http = crate::obs::http::serve_configured(&engines).await?;
    crate::tenant::each(engines, |engine| async move {
        run_pipelines(&engine, names).await.map(|_| ())
    })
    .await
}

/// What every form of `backfill` starts from: the (one) tenant's engine and the range,
/// read in that tenant's zone.
pub(crate) fn backfill_engine(
    config: Option<&std::path::Path>,
    tenant: Option<&str>,
    (from, to): (&str, &str),
    now: Option<&str>,
) -> Result<
    (
        Engine,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ),
    CliError,
> {
    let settings = crate::tenant::one(&Settings::load(config)?, tenant, "backfill")?;
    let tz = settings.timezone;
    let from =
        timeutil::parse_time(from, tz).map_err(|why| CliError::Config(format!("--from: {why}")))?;
    let to =
        timeutil::parse_time(to, tz).map_err(|why| CliError::Config(format!("--to: {why}")))?;
    let clock = clock(&settings, now)?;
    Ok((engine(settings, clock)?, from, to))
}

async fn backfill_cmd(
    config: Option<&std::path::Path>,
    name: &str,
    from: &str,
    to: &str,
    now: Option<&str>,
    tenant: Option<&str>,
) -> Result<(), CliError> {
    let (engine, from, to) = backfill_engine(config, tenant, (from, to), now)?;
    let p = engine
        .catalog
        .select(&[name.to_string()])
        .map_err(CliError::Config)?
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Config(format!("unknown pipeline {name:?}")))?
        .clone();
    let _http = crate::obs::http::serve_configured(std::slice::from_ref(&engine)).await?; // issue 4
    let bar = crate::obs::progress::BackfillBar::start(&p.name); // issue 4
    let report = engine
        .run(&p, Mode::Backfill { from, to })
        .await
        .map_err(run_error);
    drop(bar);
    let report = report?;
    print_report(&crate::tenant::label(&engine.settings), &report);
    Ok(())
}

async fn status_cmd(
    config: Option<&std::path::Path>,
    json: bool,
    now: Option<&str>,
    tenant: Option<&str>,
) -> Result<(), CliError> {
    let all = Settings::load(config)?;
    let mut rows = Vec::new();
    // issue 4: one block of rows per tenant, each row naming its tenant.
    for settings in crate::tenant::select(&all, tenant)? {
        let clock = clock(&settings, now)?;
        let catalog = load_catalog(&settings)?;
        let (_, state) = locations(&settings)?;
        let mut tenant_rows = status::collect(&catalog, &state, clock.now())
            .await
            .map_err(|e| CliError::Failed(format!("{}{e}", crate::tenant::label(&settings))))?;
        for row in &mut tenant_rows {
            row.tenant = settings.tenant.clone();
        }
        rows.extend(tenant_rows);
    }
    if json {
        let text =
            serde_json::to_string_pretty(&rows).map_err(|e| CliError::Failed(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", status::render(&rows));
    }
    Ok(())
}

/// For status: a pipeline's committed state, if any.
pub async fn load_state(state: &StateStore, name: &str) -> Result<Option<PipelineState>, CliError> {
    state
        .load::<PipelineState>(name)
        .await
        .map(|v| v.map(|v| v.value))
        .map_err(|e| CliError::Failed(e.to_string()))
}

/// Whether a state's last run failed (status colouring, tests).
pub fn last_failed(st: &PipelineState) -> bool {
    st.last_run
        .as_ref()
        .is_some_and(|r| r.outcome == Outcome::Failed)
}
