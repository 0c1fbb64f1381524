//! An engine wired to a simulator and a warehouse (local files or in-process S3), built
//! the way the binary builds it: settings from an environment map, then `sobot_sync::app::setup::engine`.

use super::s3::{ACCESS_KEY, BUCKET, REGION, S3Server, SECRET_KEY};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sobot_sync::app::settings::Settings;
use sobot_sync::core::clock::FixedClock;
use sobot_sync::core::pipeline::Pipeline;
use sobot_sync::engine::run::Engine;
use sobot_sync::sim::{SimConfig, SimHandle};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The operator the literal-dialect rigs name (`SOBOT_OPERATOR_USER_ID`).
pub const OPERATOR_USER_ID: &str = "sim-operator";

/// Where a rig's tables and state go. Holding it keeps the directory or server alive.
pub struct Warehouse {
    pub url: String,
    env: BTreeMap<String, String>,
    _dir: Option<tempfile::TempDir>,
    _s3: Option<S3Server>,
}

impl Warehouse {
    pub async fn local() -> Warehouse {
        let dir = tempfile::tempdir().expect("temporary warehouse directory");
        let url = format!("file://{}", dir.path().join("warehouse").display());
        Warehouse {
            url,
            env: BTreeMap::new(),
            _dir: Some(dir),
            _s3: None,
        }
    }

    pub async fn s3() -> Warehouse {
        let server = S3Server::start().await;
        let env = [
            ("AWS_ENDPOINT_URL", server.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Warehouse {
            url: format!("s3://{BUCKET}/e2e"),
            env,
            _dir: None,
            _s3: Some(server),
        }
    }

    /// PUTs of Parquet files the S3 server received; `None` on a local warehouse.
    pub fn parquet_puts(&self) -> Option<u64> {
        self._s3.as_ref().map(|s| s.parquet_puts())
    }

    /// The settings this warehouse needs besides its URL (S3 endpoint and keys).
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }
}

/// A simulator, a warehouse and the settings every engine of a test shares.
pub struct Rig {
    pub sim: SimHandle,
    pub warehouse: Warehouse,
    pub tz: Tz,
    /// `SOBOT_SYNC_START`: the first watermark of every pipeline.
    pub start: DateTime<Utc>,
    extra: BTreeMap<String, String>,
}

impl Rig {
    /// Starts the simulator; the engine's zone is the simulator's.
    pub async fn new(config: SimConfig, warehouse: Warehouse, start: DateTime<Utc>) -> Rig {
        let tz = config.timezone;
        let literal = config.dialect == sobot_sync::sim::Dialect::Literal;
        let sim = sobot_sync::sim::start(config, ([127, 0, 0, 1], 0).into())
            .await
            .expect("simulator starts on a free port");
        Rig {
            sim,
            warehouse,
            tz,
            start,
            // issue 13: a literal-dialect server refuses agent metrics without an
            // operator under a company token, as the document says; a user of such a
            // tenant sets it.
            extra: if literal {
                BTreeMap::from([(
                    "SOBOT_OPERATOR_USER_ID".to_string(),
                    OPERATOR_USER_ID.to_string(),
                )])
            } else {
                BTreeMap::new()
            },
        }
    }

    /// Adds a setting to every engine built from now on.
    pub fn set(&mut self, key: &str, value: &str) {
        self.extra.insert(key.to_string(), value.to_string());
    }

    /// Removes a setting added by [`Rig::set`] (or by the rig itself) from engines built
    /// from now on.
    pub fn unset(&mut self, key: &str) {
        self.extra.remove(key);
    }

    pub fn env(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = [
            ("SOBOT_BASE_URL", self.sim.base_url()),
            ("SOBOT_APP_ID", SimConfig::default().app_id),
            ("SOBOT_APP_SECRET", SimConfig::default().app_secret),
            ("SOBOT_MAX_RPS", "5000".to_string()),
            ("SOBOT_MAX_CONCURRENCY", "16".to_string()),
            ("SOBOT_TIMEZONE", self.tz.name().to_string()),
            ("SOBOT_SYNC_START", self.start.to_rfc3339()),
            ("SOBOT_SYNC_WAREHOUSE", self.warehouse.url.clone()),
            // The repository's own definitions, not the compiled-in copies.
            (
                "SOBOT_SYNC_PIPELINES",
                concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines").to_string(),
            ),
            (
                "SOBOT_SYNC_SCHEMAS",
                concat!(env!("CARGO_MANIFEST_DIR"), "/schemas").to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(self.warehouse.env.clone());
        env.extend(self.extra.clone());
        env
    }

    /// An engine whose clock stands at `now`.
    pub fn engine(&self, now: DateTime<Utc>) -> Engine {
        let settings = Settings::from_sources(None, &self.env()).expect("valid test settings");
        sobot_sync::app::setup::engine(settings, Arc::new(FixedClock(now))).expect("engine builds")
    }
}

/// A pipeline of the engine's catalog by name.
pub fn pipeline(engine: &Engine, name: &str) -> Pipeline {
    engine
        .catalog
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("pipeline {name} is defined"))
}
