//! `sobot-sync backfill --shard I/N | --shards N`: one shard of a backfill
//! (`engine::shard`), as a process of a parallel job.

use crate::core::error::CommandError;
use crate::engine::shard::{INDEX_ENV, Shard, run};

/// `backfill PIPELINE --from --to --shard I/N | --shards N`.
pub async fn backfill_cmd(
    config: Option<&std::path::Path>,
    (name, from, to): (&str, &str, &str),
    now: Option<&str>,
    tenant: Option<&str>,
    (shard, shards): (Option<&str>, Option<&str>),
) -> Result<(), CommandError> {
    let job_index = std::env::var(INDEX_ENV).ok();
    let shard =
        Shard::from_args(shard, shards, job_index.as_deref()).map_err(CommandError::Config)?;
    let crate::app::setup::BackfillSetup {
        engine, from, to, ..
    } = crate::app::setup::backfill_engine(config, tenant, (from, to), now)?;
    let tz = engine.settings.timezone;
    let p = engine
        .catalog
        .get(name)
        .cloned()
        .ok_or_else(|| CommandError::Config(format!("unknown pipeline {name:?}")))?;
    let done = run(&engine, &p, from, to, shard).await.map_err(|e| {
        if e.is_config() {
            CommandError::Config(e.to_string())
        } else {
            CommandError::Failed(e.to_string())
        }
    })?;
    match (done.range, done.report) {
        (Some((a, b)), Some(r)) => {
            println!(
                "{} shard {}: [{}, {}) {} windows, {} rows, {} files, {} requests",
                r.pipeline,
                shard,
                a.with_timezone(&tz).to_rfc3339(),
                b.with_timezone(&tz).to_rfc3339(),
                r.windows,
                r.rows,
                r.files,
                r.requests
            );
            // issue 15
            if let Some(line) = crate::app::run::requests_line(&r.api_requests) {
                println!("  {line}");
            }
        }
        _ => println!(
            "{name} shard {shard}: nothing to do (the range has fewer local days than shards)"
        ),
    }
    Ok(())
}
