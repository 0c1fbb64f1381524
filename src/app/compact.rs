//! `sobot-sync compact TABLE`: the command around `engine::compact`.

use crate::app::settings::Settings;
use crate::app::tenant;
use crate::core::clock::{FixedClock, SharedClock, SystemClock};
use crate::core::error::CommandError;
use crate::core::timeutil;
use crate::engine::compact::{CompactError, compact};
use chrono::NaiveDate;
use std::path::Path;
use std::sync::Arc;

/// Arguments of the `compact` command.
#[derive(Debug, Clone)]
pub struct Args {
    pub table: String,
    pub before: Option<String>,
    pub now: Option<String>,
    /// Which tenant's partitions, when several are configured.
    pub tenant: Option<String>,
}

/// `sobot-sync compact TABLE [--before DATE]`.
pub async fn run(config: Option<&Path>, args: &Args) -> Result<(), CommandError> {
    let settings = tenant::one(&Settings::load(config)?, args.tenant.as_deref(), "compact")?;
    let tz = settings.timezone;
    let before = match &args.before {
        None => None,
        Some(s) => Some(
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|e| {
                CommandError::Config(format!("--before {s:?}: not a date YYYY-MM-DD: {e}"))
            })?,
        ),
    };
    let clock: SharedClock = match &args.now {
        None => Arc::new(SystemClock),
        Some(s) => Arc::new(FixedClock(
            timeutil::parse_time(s, tz)
                .map_err(|why| CommandError::Config(format!("--now: {why}")))?,
        )),
    };
    let mut settings = settings;
    if settings.credentials().is_err() {
        // compact reads and writes storage only; the engine's API client is never used,
        // so a warehouse host without API credentials can still compact.
        settings.token = Some(crate::core::secret::Secret::new(String::from(
            "unused-by-compact",
        )));
    }
    let engine = crate::app::setup::engine(settings, clock)?;
    match compact(&engine, &args.table, before).await {
        Ok(r) => {
            println!(
                "{}: {} closed partitions{}, {} compacted, files {} -> {}, {} rows merged",
                r.table,
                r.partitions,
                r.closed_before
                    .map(|d| format!(" (before {d})"))
                    .unwrap_or_default(),
                r.compacted,
                r.files_before,
                r.files_after,
                r.rows_merged
            );
            Ok(())
        }
        Err(CompactError::Config(m)) => Err(CommandError::Config(m)),
        Err(CompactError::Run(e)) if e.is_config() => Err(CommandError::Config(e.to_string())),
        Err(e) => Err(CommandError::Failed(e.to_string())),
    }
}
