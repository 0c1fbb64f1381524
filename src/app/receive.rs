//! `sobot-sync receive`: the push receiver (`engine::receive`) with its settings.

use crate::app::settings::Settings;
use crate::core::error::CommandError;
use crate::engine::receive;
use crate::io::store::Location;
use std::path::Path;

/// Runs the receiver until SIGTERM/SIGINT.
pub async fn run(config_file: Option<&Path>, addr: Option<&str>) -> Result<(), CommandError> {
    let settings = Settings::load(config_file)?;
    let warehouse = Location::parse(&settings.warehouse, &settings.s3)
        .map_err(|e| CommandError::Config(format!("setting SOBOT_SYNC_WAREHOUSE: {e}")))?;
    let setup = receive::Setup {
        receive: settings.receive.clone(),
        warehouse,
        schemas_dir: settings.schemas_dir.clone(),
        timezone: settings.timezone,
        pii_key: settings.pii_key.clone(),
    };
    receive::run(setup, addr).await
}
