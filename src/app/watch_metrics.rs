//! `sobot-sync watch-metrics`: the agent metrics stream (`engine::watch_metrics`) for one
//! tenant, until SIGTERM/SIGINT.

use crate::app::settings::Settings;
use crate::app::tenant;
use crate::core::error::CommandError;
use crate::engine::watch_metrics::{WatchError, watch};
use tokio_util::sync::CancellationToken;

impl From<WatchError> for CommandError {
    fn from(e: WatchError) -> Self {
        match e {
            WatchError::Config(_) => CommandError::Config(e.to_string()),
            _ => CommandError::Failed(e.to_string()),
        }
    }
}

/// `sobot-sync watch-metrics [--tenant NAME]`: runs until SIGTERM/SIGINT.
pub async fn run_cmd(
    config: Option<&std::path::Path>,
    tenant: Option<&str>,
) -> Result<(), CommandError> {
    let settings = Settings::load(config)?;
    let settings = tenant::one(&settings, tenant, "watch-metrics")?;
    let engine = crate::app::setup::engine(
        settings,
        std::sync::Arc::new(crate::core::clock::SystemClock),
    )?;
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        match crate::io::signal::shutdown_signal().await {
            Ok(name) => tracing::info!(signal = name, "stopping after the current write"),
            Err(e) => tracing::error!(error = %e, "cannot listen for signals"),
        }
        on_signal.cancel();
    });
    let report = watch(&engine, stop).await?;
    println!(
        "watch-metrics: {} snapshots written, {} skipped while disconnected; {} connections, {} bad messages, {} unknown operations",
        report.written.len(),
        report.skipped.len(),
        report.connections,
        report.bad_messages,
        report.unknown_ops
    );
    Ok(())
}
