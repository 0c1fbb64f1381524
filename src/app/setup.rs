//! What every command starts from: the clock, the catalog, the warehouse and state
//! locations, and the engine, built from loaded settings.

use crate::app::settings::Settings;
use crate::core::clock::{FixedClock, SharedClock, SystemClock};
use crate::core::error::CommandError;
use crate::core::pipeline::Catalog;
use crate::core::timeutil;
use crate::engine::run::Engine;
use crate::io::api::ApiClient;
use crate::io::state::model::PipelineState;
use crate::io::state::store::StateStore;
use crate::io::store::Location;
use std::sync::Arc;

pub fn clock(settings: &Settings, now: Option<&str>) -> Result<SharedClock, CommandError> {
    match now {
        None => Ok(Arc::new(SystemClock)),
        Some(s) => {
            let t = timeutil::parse_time(s, settings.timezone)
                .map_err(|why| CommandError::Config(format!("--now: {why}")))?;
            Ok(Arc::new(FixedClock(t)))
        }
    }
}

pub fn load_catalog(settings: &Settings) -> Result<Catalog, CommandError> {
    Catalog::load(
        &settings.pipelines_dir,
        &settings.schemas_dir,
        settings.timezone,
    )
    .map_err(|e| CommandError::Config(e.to_string()))
}

pub fn locations(settings: &Settings) -> Result<(Location, StateStore), CommandError> {
    let warehouse = Location::parse(&settings.warehouse, &settings.s3)
        .map_err(|e| CommandError::Config(format!("setting SOBOT_SYNC_WAREHOUSE: {e}")))?;
    let state = Location::parse(&settings.state_url(), &settings.s3)
        .map_err(|e| CommandError::Config(format!("setting SOBOT_SYNC_STATE: {e}")))?;
    // issue 4: one tenant's tables and state (unchanged without tenants).
    let (warehouse, state) = crate::app::tenant::scope(settings, warehouse, state)?;
    Ok((warehouse, StateStore::new(state)))
}

/// Builds the engine: settings are already loaded; this validates the rest.
pub fn engine(settings: Settings, clock: SharedClock) -> Result<Engine, CommandError> {
    let catalog = load_catalog(&settings)?;
    crate::core::privacy::validate(&catalog, settings.pii_key.as_ref())?; // issue 4 privacy
    let api = settings.api_settings()?;
    let client = ApiClient::new(api).map_err(|e| CommandError::Config(e.to_string()))?;
    let (warehouse, state) = locations(&settings)?;
    Ok(Engine {
        settings: settings.engine_settings(),
        catalog,
        client,
        warehouse,
        state,
        clock,
        stop: Default::default(),
    })
}

/// What every form of `backfill` starts from: the (one) tenant's engine and the range,
/// read in that tenant's zone, and where to serve `/metrics` (if anywhere).
pub struct BackfillSetup {
    pub engine: Engine,
    pub from: chrono::DateTime<chrono::Utc>,
    pub to: chrono::DateTime<chrono::Utc>,
    pub http_addr: Option<std::net::SocketAddr>,
    /// `SOBOT_MAX_RPS`, which a dry run's time estimate is at (issue 15).
    pub max_rps: u32,
}

pub fn backfill_engine(
    config: Option<&std::path::Path>,
    tenant: Option<&str>,
    (from, to): (&str, &str),
    now: Option<&str>,
) -> Result<BackfillSetup, CommandError> {
    let settings = crate::app::tenant::one(&Settings::load(config)?, tenant, "backfill")?;
    let tz = settings.timezone;
    let from = timeutil::parse_time(from, tz)
        .map_err(|why| CommandError::Config(format!("--from: {why}")))?;
    let to =
        timeutil::parse_time(to, tz).map_err(|why| CommandError::Config(format!("--to: {why}")))?;
    let clock = clock(&settings, now)?;
    let http_addr = settings.http_addr;
    let max_rps = settings.max_rps;
    Ok(BackfillSetup {
        engine: engine(settings, clock)?,
        from,
        to,
        http_addr,
        max_rps,
    })
}

/// For status: a pipeline's committed state, if any.
pub async fn load_state(
    state: &StateStore,
    name: &str,
) -> Result<Option<PipelineState>, CommandError> {
    state
        .load::<PipelineState>(name)
        .await
        .map(|v| v.map(|v| v.value))
        .map_err(|e| CommandError::Failed(e.to_string()))
}
