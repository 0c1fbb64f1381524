//! The command line (CONTRACT section 1). Every command returns an exit status:
//! 0 success, 1 a pipeline (or the API check) failed, 2 bad usage or configuration.

use crate::core::error::CommandError;
use crate::sim;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
        /// Only this tenant (default: every configured tenant).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
        /// Print the windows and the estimated requests and time, from cheap probes; write nothing, take no lock.
        #[arg(long)]
        dry_run: bool,
    },
    /// Load the historical range [from, to) of one pipeline; resumable, never moves the watermark.
    Backfill {
        /// The pipeline to load.
        pipeline: String,
        /// Start of the range, inclusive (RFC 3339 or a date).
        #[arg(long, value_name = "TIME")]
        from: String,
        /// End of the range, exclusive (RFC 3339 or a date).
        #[arg(long, value_name = "TIME")]
        to: String,
        /// Pretend the current time is TIME (RFC 3339 or a date).
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// The tenant (needed when several are configured).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
        /// Load only shard I of N (I from 0): the range split at local midnights into N parts that run at once (see docs/operations.md, sharded backfill).
        #[arg(long, value_name = "I/N", conflicts_with = "shards")]
        shard: Option<String>,
        /// N shards, this one's index from JOB_COMPLETION_INDEX (a Kubernetes indexed Job).
        #[arg(long, value_name = "N", conflicts_with = "shard")]
        shards: Option<String>,
        /// Print the windows and the estimated requests and time, from cheap probes; write nothing, take no lock.
        #[arg(long, conflicts_with_all = ["shard", "shards"])]
        dry_run: bool,
    },
    /// Where each pipeline stands: watermark, lag, gaps, last run, open backfills.
    Status {
        /// One JSON array, an object per pipeline.
        #[arg(long)]
        json: bool,
        /// Pretend the current time is TIME (RFC 3339 or a date).
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// Only this tenant (default: every configured tenant).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
    },
    /// Validate settings, pipelines and schemas, prove storage access, then prove every endpoint the enabled pipelines use with one cheap request each.
    Check {
        /// Only this tenant (default: every configured tenant).
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,
        /// One JSON object: the checks and an array of endpoint results.
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
        /// Pretend the current time is TIME (RFC 3339 or a date).
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// The tenant (needed when several are configured).
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
        /// Which of the API document's answer forms the demo's simulator speaks
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
        /// The SQL engine the statements are for.
        #[arg(long, value_enum)]
        dialect: crate::app::ddl::Dialect,
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
        /// The table whose closed partitions are merged.
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
        /// The pipeline whose lock is released.
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

pub async fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Receive { addr } => {
            crate::app::receive::run(cli.config.as_deref(), addr.as_deref()).await
        }
        Command::Unlock {
            pipeline,
            force,
            range,
            tenant,
        } => {
            let args = crate::app::unlock::Args {
                pipeline,
                force,
                range,
                tenant,
            };
            crate::app::unlock::run(cli.config.as_deref(), &args).await
        }
        Command::Sim(args) => sim::serve(args.as_ref())
            .await
            .map_err(|e| CommandError::Config(format!("simulator: {e}"))),
        Command::Demo {
            summary_json,
            dialect,
        } => crate::app::demo::run(cli.config.as_deref(), summary_json.as_deref(), dialect).await,
        Command::Compact {
            table,
            before,
            now,
            tenant,
        } => {
            let args = crate::app::compact::Args {
                table,
                before,
                now,
                tenant,
            };
            crate::app::compact::run(cli.config.as_deref(), &args).await
        }
        Command::Ddl {
            dialect,
            location,
            schema,
            tables,
        } => crate::app::ddl::run(
            cli.config.as_deref(),
            &crate::app::ddl::Args {
                dialect,
                location,
                schema,
                tables,
            },
        ),
        Command::WatchMetrics { tenant } => {
            crate::app::watch_metrics::run_cmd(cli.config.as_deref(), tenant.as_deref()).await
        }
        Command::Check { tenant, json, now } => {
            let (tenant, now) = (tenant.as_deref(), now.as_deref());
            crate::app::check::run(cli.config.as_deref(), tenant, json, now).await
        }
        Command::Daemon { pipelines, now } => {
            crate::app::daemon::run(cli.config.as_deref(), &pipelines, now.as_deref()).await
        }
        Command::Reconcile {
            from,
            to,
            tolerance,
            now,
            tenant,
        } => {
            let args = crate::app::reconcile_cmd::Args {
                from,
                to,
                tolerance,
                now,
                tenant,
            };
            crate::app::reconcile_cmd::run(cli.config.as_deref(), &args).await
        }
        Command::Status { json, now, tenant } => {
            crate::app::status::status_cmd(
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
            dry_run,
        } => {
            crate::app::run::run_cmd(
                cli.config.as_deref(),
                &pipelines,
                now.as_deref(),
                tenant.as_deref(),
                dry_run,
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
            dry_run,
        } => {
            crate::app::backfill::backfill_cmd(
                cli.config.as_deref(),
                &pipeline,
                (&from, &to),
                now.as_deref(),
                tenant.as_deref(),
                dry_run,
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
            dry_run: _,
        } => {
            let (shard, shards) = (shard.as_deref(), shards.as_deref());
            let args = (pipeline.as_str(), from.as_str(), to.as_str());
            crate::app::shard::backfill_cmd(
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Whether `text` names an issue ("issue 4", "Issue 15:"): a note for developers,
    /// not for the reader of `--help`.
    fn names_an_issue(text: &str) -> bool {
        let lower = text.to_ascii_lowercase();
        lower.match_indices("issue").any(|(i, _)| {
            lower[i + "issue".len()..]
                .trim_start()
                .starts_with(|c: char| c.is_ascii_digit())
        })
    }

    /// Every text clap shows for `cmd` and the commands below it, with where it shows.
    fn help_texts(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
        let here = format!("{path} {}", cmd.get_name()).trim().to_string();
        for about in [cmd.get_about(), cmd.get_long_about()]
            .into_iter()
            .flatten()
        {
            out.push((here.clone(), about.to_string()));
        }
        for arg in cmd.get_arguments() {
            let at = format!("{here} {}", arg.get_id());
            for help in [arg.get_help(), arg.get_long_help()].into_iter().flatten() {
                out.push((at.clone(), help.to_string()));
            }
            for value in arg.get_possible_values() {
                if let Some(help) = value.get_help() {
                    out.push((format!("{at}={}", value.get_name()), help.to_string()));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            help_texts(sub, &here, out);
        }
    }

    /// Every argument of `cmd` and the commands below it without help text.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        let here = format!("{path} {}", cmd.get_name()).trim().to_string();
        for arg in cmd.get_arguments() {
            let automatic = matches!(arg.get_id().as_str(), "help" | "version");
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if !automatic && help.trim().is_empty() {
                out.push(format!("{here} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            undocumented(sub, &here, out);
        }
    }

    #[test]
    fn every_argument_has_help() {
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn help_carries_no_issue_notes() {
        let mut texts = Vec::new();
        help_texts(&Cli::command(), "", &mut texts);
        assert!(texts.len() > 50, "the walk found too little: {texts:?}");
        let notes: Vec<_> = texts.iter().filter(|(_, t)| names_an_issue(t)).collect();
        assert!(notes.is_empty(), "help with issue notes: {notes:?}");
    }

    #[test]
    fn the_issue_matcher_matches_what_it_should() {
        assert!(names_an_issue("issue 4: only this tenant"));
        assert!(names_an_issue("see Issue  15"));
        assert!(!names_an_issue("issues the token"));
        assert!(!names_an_issue("no issue here"));
    }

    #[test]
    fn shard_and_shards_conflict_in_clap() {
        let args = [
            "sobot-sync",
            "backfill",
            "talks",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
            "--shard",
            "0/2",
            "--shards",
            "2",
        ];
        let err = Cli::try_parse_from(args).err();
        let kind = err.as_ref().map(clap::Error::kind);
        assert_eq!(
            kind,
            Some(clap::error::ErrorKind::ArgumentConflict),
            "{err:?}"
        );
        assert_eq!(err.map(|e| e.exit_code()), Some(2));
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}
