//! Settings: CONTRACT section 2. Read from an optional TOML file, then the environment,
//! the environment winning. The TOML keys are the variable names without the `SOBOT_`
//! prefix, in lower case (`SOBOT_MAX_RPS` -> `max_rps`, `AWS_REGION` -> `aws_region`).
//!
//! Every value is parsed here, once, into types; a bad value is a [`ConfigError`] that
//! names the setting, where it came from and why it is wrong, and never echoes a secret.

use crate::core::error::ConfigError;
use crate::core::secret::Secret;
use crate::core::timeutil;
use crate::io::store::S3Options;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One known setting: its environment name and whether its value is secret.
struct Known {
    env: &'static str,
    secret: bool,
}

const KNOWN: &[Known] = &[
    Known {
        env: "SOBOT_BASE_URL",
        secret: false,
    },
    Known {
        env: "SOBOT_APP_ID",
        secret: false,
    },
    Known {
        env: "SOBOT_APP_SECRET",
        secret: true,
    },
    Known {
        env: "SOBOT_TOKEN",
        secret: true,
    },
    // issue 13: the "Agent token" the API document names for recordings, work-status
    // logs, reports and plans; and the operator the agent metrics are asked for.
    Known {
        env: "SOBOT_AGENT_TOKEN",
        secret: true,
    },
    Known {
        env: "SOBOT_OPERATOR_USER_ID",
        secret: false,
    },
    Known {
        env: "SOBOT_MAX_RPS",
        secret: false,
    },
    Known {
        env: "SOBOT_MAX_CONCURRENCY",
        secret: false,
    },
    Known {
        env: "SOBOT_TIMEZONE",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_WAREHOUSE",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_STATE",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_PIPELINES",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_SCHEMAS",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_START",
        secret: false,
    },
    Known {
        env: "SOBOT_REQUEST_TIMEOUT_SECS",
        secret: false,
    },
    Known {
        env: "SOBOT_MAX_RETRIES",
        secret: false,
    },
    Known {
        env: "SOBOT_RETRY_MIN_BACKOFF_MS",
        secret: false,
    },
    Known {
        env: "SOBOT_RETRY_MAX_BACKOFF_MS",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_LOCK_TTL_SECS",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_WINDOW_CONCURRENCY",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_RECONCILE_TOLERANCE",
        secret: false,
    },
    Known {
        env: "AWS_ENDPOINT_URL",
        secret: false,
    },
    Known {
        env: "AWS_ACCESS_KEY_ID",
        secret: false,
    },
    Known {
        env: "AWS_SECRET_ACCESS_KEY",
        secret: true,
    },
    Known {
        env: "AWS_REGION",
        secret: false,
    },
    Known {
        env: "AWS_ALLOW_HTTP",
        secret: false,
    },
    // issue 4 privacy (src/privacy.rs)
    Known {
        env: "SOBOT_SYNC_PII_KEY",
        secret: true,
    },
    // issue 4 (C): compact
    Known {
        env: "SOBOT_SYNC_COMPACT_TARGET_BYTES",
        secret: false,
    },
    // issue 4 (daemon)
    Known {
        env: "SOBOT_SYNC_SHUTDOWN_GRACE_SECS",
        secret: false,
    },
    // issue 4 (observability)
    Known {
        env: "SOBOT_SYNC_HTTP_ADDR",
        secret: false,
    },
    // issue 5 (M): watch-metrics
    Known {
        env: "SOBOT_SYNC_METRICS_SNAPSHOT_SECS",
        secret: false,
    },
    // issue 5 (receive): see src/receive/settings.rs
    Known {
        env: "SOBOT_PUSH_APP_KEY",
        secret: true,
    },
    Known {
        env: "SOBOT_PUSH_MAX_SKEW_SECS",
        secret: false,
    },
    Known {
        env: "SOBOT_PUSH_COMPANY_IDS",
        secret: false,
    },
    Known {
        env: "SOBOT_PUSH_AES_KEY",
        secret: true,
    },
    Known {
        env: "SOBOT_PUSH_CIPHER",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_RECEIVE_ADDR",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_RECEIVE_WAL",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_RECEIVE_FLUSH_ROWS",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_RECEIVE_FLUSH_SECS",
        secret: false,
    },
    Known {
        env: "SOBOT_SYNC_RECEIVE_MAX_BODY_BYTES",
        secret: false,
    },
];

fn file_key(env: &str) -> String {
    env.strip_prefix("SOBOT_")
        .unwrap_or(env)
        .to_ascii_lowercase()
}

/// Where a raw value came from, for error messages.
#[derive(Debug, Clone)]
struct Raw {
    value: String,
    origin: String,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub base_url: String,
    pub app_id: Option<String>,
    pub app_secret: Option<Secret>,
    pub token: Option<Secret>,
    /// issue 13: `SOBOT_AGENT_TOKEN`, sent to the endpoints the API document asks an
    /// agent token of (`api::AuthScope::Agent`); `None`: the company credentials there too.
    pub agent_token: Option<Secret>,
    /// issue 13: `SOBOT_OPERATOR_USER_ID`, sent as `operatorUserId` with the agent
    /// metrics, which the API requires under a company token.
    pub operator_user_id: Option<String>,
    pub max_rps: u32,
    pub max_concurrency: usize,
    pub timezone: Tz,
    pub warehouse: String,
    /// `None`: `<warehouse>/_state`.
    pub state: Option<String>,
    pub pipelines_dir: PathBuf,
    pub schemas_dir: PathBuf,
    /// Initial watermark for pipelines without state; overrides `initial_start`.
    pub start: Option<DateTime<Utc>>,
    pub request_timeout: Duration,
    pub max_retries: usize,
    /// First retry delay (doubles with jitter per attempt) and the cap on one delay.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub lock_ttl: Duration,
    /// Windows of one pipeline extracted at once (their commits stay in order).
    pub window_concurrency: usize,
    /// How far report figures may differ and still agree: `reconcile` and the report
    /// runner's `amount` check (`report::reconcile::Tolerance`; default exact).
    pub reconcile_tolerance: crate::core::report::reconcile::Tolerance,
    pub s3: S3Options,
    /// issue 4 (multi-tenant): the configured tenants (`[tenants.<name>]` in the file,
    /// `SOBOT_TENANTS` and `SOBOT_TENANT_<NAME>_<FIELD>`, see `tenant`); empty: one
    /// tenant, the layout of CONTRACT section 3.
    pub tenants: Vec<crate::app::tenant::TenantSettings>,
    /// issue 4: set on one tenant's effective settings (`Settings::for_tenant`); scopes
    /// that tenant's tables and state (`tenant::scope`).
    pub tenant: Option<String>,
    /// issue 4 privacy: the HMAC key for `pii` columns (`SOBOT_SYNC_PII_KEY`); `None`
    /// leaves `hash_if_key` columns as sent and refuses `hash` columns.
    pub pii_key: Option<crate::core::privacy::PiiKey>,
    /// issue 4 (C): `compact` starts a new file once the window files merged into the
    /// current one reach this many bytes on storage (`SOBOT_SYNC_COMPACT_TARGET_BYTES`).
    pub compact_target_bytes: u64,
    /// issue 4 (daemon): how long `daemon` lets its runs finish after SIGTERM/SIGINT
    /// before it abandons them uncommitted, releases their locks and exits.
    pub shutdown_grace: Duration,
    /// issue 4: where `/metrics` and `/healthz` are served (`HOST:PORT`); `None`: off.
    pub http_addr: Option<std::net::SocketAddr>,
    /// issue 5 (M): `watch-metrics` writes one `agent_metrics` snapshot per this many
    /// seconds (`SOBOT_SYNC_METRICS_SNAPSHOT_SECS`): whole minutes that divide a day, so
    /// snapshots sit on the local grid and never straddle a `dt` partition.
    pub metrics_snapshot_secs: u64,
    /// issue 5: the push receiver's settings (`SOBOT_PUSH_*`, `SOBOT_SYNC_RECEIVE_*`).
    pub receive: crate::engine::receive::settings::ReceiveSettings,
}

impl Settings {
    /// The part of the settings a run reads (`engine::settings`).
    pub fn engine_settings(&self) -> crate::engine::settings::EngineSettings {
        crate::engine::settings::EngineSettings {
            timezone: self.timezone,
            start: self.start,
            tenant: self.tenant.clone(),
            lock_ttl: self.lock_ttl,
            window_concurrency: self.window_concurrency,
            pii_key: self.pii_key.clone(),
            reconcile_tolerance: self.reconcile_tolerance,
            operator_user_id: self.operator_user_id.clone(),
            base_url: self.base_url.clone(),
            request_timeout: self.request_timeout,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            metrics_snapshot_secs: self.metrics_snapshot_secs,
            compact_target_bytes: self.compact_target_bytes,
        }
    }

    /// Reads the file (if any) and the process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::from_sources(config_file, &env)
    }

    /// The same, with the environment given explicitly (tests, `demo`).
    pub fn from_sources(
        config_file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut raw: BTreeMap<&'static str, Raw> = BTreeMap::new();
        if let Some(path) = config_file {
            read_file(path, &mut raw)?;
        }
        for k in KNOWN {
            if let Some(v) = env.get(k.env) {
                raw.insert(
                    k.env,
                    Raw {
                        value: v.clone(),
                        origin: "environment".into(),
                    },
                );
            }
        }
        let mut settings = Self::from_raw(&raw)?;
        // issue 4: the tenants, read from the same file and environment.
        settings.tenants = crate::app::tenant::load(config_file, env, &settings)?;
        Ok(settings)
    }

    fn from_raw(raw: &BTreeMap<&'static str, Raw>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            raw.get(k)
                .map(|r| r.value.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let err = |k: &str, why: String| {
            let origin = raw.get(k).map(|r| r.origin.clone()).unwrap_or_default();
            ConfigError::new(format!("{k} ({origin})"), why)
        };
        let shown = |k: &str| -> String {
            let secret = KNOWN.iter().any(|x| x.env == k && x.secret);
            match raw.get(k) {
                Some(_) if secret => "(secret)".into(),
                Some(r) => format!("{:?}", r.value),
                None => String::new(),
            }
        };
        let positive = |k: &str, default: u64| -> Result<u64, ConfigError> {
            match get(k) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(err(
                        k,
                        format!("must be a positive whole number, got {}", shown(k)),
                    )),
                },
            }
        };

        let timezone = match get("SOBOT_TIMEZONE") {
            None => chrono_tz::Asia::Singapore,
            Some(v) => v.parse::<Tz>().map_err(|_| {
                err(
                    "SOBOT_TIMEZONE",
                    format!(
                        "{} is not an IANA time zone (e.g. Asia/Singapore)",
                        shown("SOBOT_TIMEZONE")
                    ),
                )
            })?,
        };
        let base_url = get("SOBOT_BASE_URL").unwrap_or_else(|| "https://sg.sobot.io".into());
        match url::Url::parse(&base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(err(
                    "SOBOT_BASE_URL",
                    format!("{} is not an http(s) URL", shown("SOBOT_BASE_URL")),
                ));
            }
        }
        let base_url = base_url.trim_end_matches('/').to_string();
        let app_id = get("SOBOT_APP_ID");
        let app_secret = get("SOBOT_APP_SECRET").map(Secret::new);
        let token = get("SOBOT_TOKEN").map(Secret::new);
        if app_id.is_some() != app_secret.is_some() {
            let missing = if app_id.is_none() {
                "SOBOT_APP_ID"
            } else {
                "SOBOT_APP_SECRET"
            };
            return Err(ConfigError::new(
                missing,
                "SOBOT_APP_ID and SOBOT_APP_SECRET go together: set both (or SOBOT_TOKEN instead)",
            ));
        }
        let start = match get("SOBOT_SYNC_START") {
            None => None,
            Some(v) => Some(
                timeutil::parse_time(&v, timezone).map_err(|why| err("SOBOT_SYNC_START", why))?,
            ),
        };
        let allow_http = match get("AWS_ALLOW_HTTP").map(|v| v.to_ascii_lowercase()) {
            None => false,
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => true,
            Some(v) if matches!(v.as_str(), "false" | "0" | "no") => false,
            Some(_) => {
                return Err(err(
                    "AWS_ALLOW_HTTP",
                    format!("must be true or false, got {}", shown("AWS_ALLOW_HTTP")),
                ));
            }
        };
        // issue 13: a folder that is named but missing (a typo, a volume not mounted) is
        // an error, never a silent switch to the built-in definitions; those serve only
        // when the setting is unset and the default folder is absent.
        let folder = |k: &str, default: &str| -> Result<PathBuf, ConfigError> {
            let Some(v) = get(k) else {
                return Ok(PathBuf::from(default));
            };
            let path = PathBuf::from(&v);
            if path.is_dir() {
                return Ok(path);
            }
            let why = if path.exists() {
                "is not a folder"
            } else {
                "does not exist"
            };
            Err(err(
                k,
                format!(
                    "{} {why}; fix the path, or unset {k} to use {default} (or the built-in copies when {default} is absent)",
                    shown(k)
                ),
            ))
        };
        let pipelines_dir = folder("SOBOT_SYNC_PIPELINES", "./pipelines")?;
        let schemas_dir = folder("SOBOT_SYNC_SCHEMAS", "./schemas")?;
        let max_rps = positive("SOBOT_MAX_RPS", 10)?;
        let max_rps =
            u32::try_from(max_rps).map_err(|_| err("SOBOT_MAX_RPS", "is too large".into()))?;
        Ok(Self {
            base_url,
            app_id,
            app_secret,
            token,
            agent_token: get("SOBOT_AGENT_TOKEN").map(Secret::new),
            operator_user_id: get("SOBOT_OPERATOR_USER_ID"),
            max_rps,
            max_concurrency: positive("SOBOT_MAX_CONCURRENCY", 4)? as usize,
            timezone,
            warehouse: get("SOBOT_SYNC_WAREHOUSE").unwrap_or_else(|| "file://./warehouse".into()),
            state: get("SOBOT_SYNC_STATE"),
            pipelines_dir,
            schemas_dir,
            start,
            request_timeout: Duration::from_secs(positive("SOBOT_REQUEST_TIMEOUT_SECS", 30)?),
            max_retries: match get("SOBOT_MAX_RETRIES") {
                None => 8,
                Some(v) => v.parse::<usize>().map_err(|_| {
                    err(
                        "SOBOT_MAX_RETRIES",
                        format!("must be a whole number, got {}", shown("SOBOT_MAX_RETRIES")),
                    )
                })?,
            },
            min_backoff: Duration::from_millis(positive("SOBOT_RETRY_MIN_BACKOFF_MS", 200)?),
            max_backoff: Duration::from_millis(positive("SOBOT_RETRY_MAX_BACKOFF_MS", 30_000)?),
            lock_ttl: Duration::from_secs(positive("SOBOT_SYNC_LOCK_TTL_SECS", 120)?),
            window_concurrency: positive("SOBOT_SYNC_WINDOW_CONCURRENCY", 2)? as usize,
            reconcile_tolerance: match get("SOBOT_SYNC_RECONCILE_TOLERANCE") {
                None => crate::core::report::reconcile::Tolerance::EXACT,
                Some(v) => v
                    .parse()
                    .map_err(|why| err("SOBOT_SYNC_RECONCILE_TOLERANCE", why))?,
            },
            s3: S3Options {
                endpoint: get("AWS_ENDPOINT_URL"),
                access_key_id: get("AWS_ACCESS_KEY_ID"),
                secret_access_key: get("AWS_SECRET_ACCESS_KEY").map(Secret::new),
                region: get("AWS_REGION"),
                allow_http,
            },
            tenants: Vec::new(),
            tenant: None,
            pii_key: match get("SOBOT_SYNC_PII_KEY") {
                None => None,
                Some(v) => Some(
                    crate::core::privacy::PiiKey::new(Secret::new(v))
                        .map_err(|why| err("SOBOT_SYNC_PII_KEY", why))?,
                ),
            },
            compact_target_bytes: positive("SOBOT_SYNC_COMPACT_TARGET_BYTES", 128 << 20)?,
            // Below Kubernetes' default 30 s termination grace, so the daemon exits
            // (locks released) before it would be killed.
            shutdown_grace: Duration::from_secs(positive("SOBOT_SYNC_SHUTDOWN_GRACE_SECS", 25)?),
            http_addr: match get("SOBOT_SYNC_HTTP_ADDR") {
                None => None,
                Some(v) => Some(v.parse().map_err(|_| {
                    err(
                        "SOBOT_SYNC_HTTP_ADDR",
                        format!(
                            "must be an IP address and port such as 0.0.0.0:9090, got {}",
                            shown("SOBOT_SYNC_HTTP_ADDR")
                        ),
                    )
                })?),
            },
            metrics_snapshot_secs: {
                let secs = positive("SOBOT_SYNC_METRICS_SNAPSHOT_SECS", 60)?;
                if secs % 60 != 0 || 86_400 % secs != 0 {
                    return Err(err(
                        "SOBOT_SYNC_METRICS_SNAPSHOT_SECS",
                        format!(
                            "must be whole minutes that divide a day (60, 300, 900, 3600 ...), got {}",
                            shown("SOBOT_SYNC_METRICS_SNAPSHOT_SECS")
                        ),
                    ));
                }
                secs
            },
            receive: crate::engine::receive::settings::ReceiveSettings::parse(&get, &err)?,
        })
    }

    /// The API credentials, or an error telling the user which settings to give.
    pub fn credentials(&self) -> Result<crate::io::api::Credentials, ConfigError> {
        match (&self.app_id, &self.app_secret, &self.token) {
            (Some(id), Some(secret), _) => Ok(crate::io::api::Credentials::Company {
                app_id: id.clone(),
                app_secret: secret.clone(),
            }),
            (_, _, Some(token)) => Ok(crate::io::api::Credentials::Token(token.clone())),
            _ => Err(ConfigError::new(
                "SOBOT_APP_ID/SOBOT_APP_SECRET or SOBOT_TOKEN",
                "no API credentials: set SOBOT_APP_ID and SOBOT_APP_SECRET (or SOBOT_TOKEN)",
            )),
        }
    }

    pub fn api_settings(&self) -> Result<crate::io::api::ApiSettings, ConfigError> {
        Ok(crate::io::api::ApiSettings {
            base_url: self.base_url.clone(),
            credentials: self.credentials()?,
            max_rps: self.max_rps,
            max_concurrency: self.max_concurrency,
            timezone: self.timezone.name().to_string(),
            request_timeout: self.request_timeout,
            max_retries: self.max_retries,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff.max(self.min_backoff),
            tenant: self.tenant.clone(),
            agent_token: self.agent_token.clone(),
        })
    }

    /// The state URL: `SOBOT_SYNC_STATE`, or `<warehouse>/_state`.
    pub fn state_url(&self) -> String {
        match &self.state {
            Some(s) => s.clone(),
            None => format!("{}/_state", self.warehouse.trim_end_matches('/')),
        }
    }
}

fn read_file(path: &Path, raw: &mut BTreeMap<&'static str, Raw>) -> Result<(), ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("--config {shown}"), format!("cannot read: {e}")))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError::new(
            format!("--config {shown}"),
            format!("not valid TOML: {}", e.message()),
        )
    })?;
    for (key, value) in table {
        if key == crate::app::tenant::FILE_KEY {
            continue; // issue 4: `[tenants.<name>]` tables, read by `tenant::load`.
        }
        let Some(known) = KNOWN.iter().find(|k| file_key(k.env) == key) else {
            let names: Vec<String> = KNOWN.iter().map(|k| file_key(k.env)).collect();
            return Err(ConfigError::new(
                format!("{key} (in {shown})"),
                format!("unknown setting; known settings are: {}", names.join(", ")),
            ));
        };
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            _ => {
                return Err(ConfigError::new(
                    format!("{key} (in {shown})"),
                    "must be a string, number or boolean",
                ));
            }
        };
        raw.insert(
            known.env,
            Raw {
                value,
                origin: shown.clone(),
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A setting missing from `KNOWN` is never read from the environment or the file,
    /// so a receiver setting left out of it would silently keep its default.
    #[test]
    fn every_receiver_setting_is_known() {
        use crate::engine::receive::settings as rs;
        for name in [
            rs::APP_KEY,
            rs::MAX_SKEW,
            rs::COMPANY_IDS,
            rs::AES_KEY,
            rs::CIPHER,
            rs::ADDR,
            rs::WAL,
            rs::FLUSH_ROWS,
            rs::FLUSH_SECS,
            rs::MAX_BODY,
        ] {
            assert!(
                KNOWN.iter().any(|k| k.env == name),
                "{name} is not in KNOWN"
            );
        }
        for secret in [rs::APP_KEY, rs::AES_KEY] {
            assert!(
                KNOWN.iter().any(|k| k.env == secret && k.secret),
                "{secret} must be redacted"
            );
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let s = Settings::from_sources(None, &env(&[])).unwrap();
        assert_eq!(s.base_url, "https://sg.sobot.io");
        assert_eq!(s.max_rps, 10);
        assert_eq!(s.max_concurrency, 4);
        assert_eq!(s.timezone, chrono_tz::Asia::Singapore);
        assert_eq!(s.warehouse, "file://./warehouse");
        assert_eq!(s.state_url(), "file://./warehouse/_state");
    }

    #[test]
    fn env_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "max_rps = 3\ntimezone = \"America/New_York\"\nsync_warehouse = \"file:///tmp/w\"\n",
        )
        .unwrap();
        let s = Settings::from_sources(Some(&f), &env(&[("SOBOT_MAX_RPS", "7")])).unwrap();
        assert_eq!(s.max_rps, 7);
        assert_eq!(s.timezone, chrono_tz::America::New_York);
        assert_eq!(s.warehouse, "file:///tmp/w");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = Settings::from_sources(None, &env(&[("SOBOT_MAX_RPS", "fast")])).unwrap_err();
        assert!(e.to_string().contains("SOBOT_MAX_RPS"), "{e}");
        assert!(e.to_string().contains("fast"), "{e}");
        let e = Settings::from_sources(None, &env(&[("SOBOT_TIMEZONE", "Mars/Base")])).unwrap_err();
        assert!(e.to_string().contains("SOBOT_TIMEZONE"), "{e}");
        let e = Settings::from_sources(None, &env(&[("SOBOT_APP_ID", "x")])).unwrap_err();
        assert!(e.to_string().contains("SOBOT_APP_SECRET"), "{e}");
    }

    #[test]
    fn metrics_snapshot_interval_is_whole_minutes_dividing_a_day() {
        let s = Settings::from_sources(None, &env(&[])).unwrap();
        assert_eq!(s.metrics_snapshot_secs, 60);
        let s = Settings::from_sources(None, &env(&[("SOBOT_SYNC_METRICS_SNAPSHOT_SECS", "300")]))
            .unwrap();
        assert_eq!(s.metrics_snapshot_secs, 300);
        for bad in ["90", "0", "7000", "soon"] {
            let e =
                Settings::from_sources(None, &env(&[("SOBOT_SYNC_METRICS_SNAPSHOT_SECS", bad)]))
                    .unwrap_err();
            assert!(
                e.to_string().contains("SOBOT_SYNC_METRICS_SNAPSHOT_SECS"),
                "{e}"
            );
        }
    }

    /// issue 13: a named folder that is missing is an error naming the setting and its
    /// origin (environment or file), never the built-in copies.
    #[test]
    fn named_definition_folders_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("pipelnes").display().to_string();
        for key in ["SOBOT_SYNC_PIPELINES", "SOBOT_SYNC_SCHEMAS"] {
            let e = Settings::from_sources(None, &env(&[(key, &missing)])).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(key) && text.contains("environment"), "{text}");
            assert!(
                text.contains("does not exist") && text.contains("pipelnes"),
                "{text}"
            );
            let file = dir.path().join("c.toml");
            let file_key = key.trim_start_matches("SOBOT_").to_ascii_lowercase();
            std::fs::write(&file, format!("{file_key} = {missing:?}\n")).unwrap();
            let e = Settings::from_sources(Some(&file), &env(&[])).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
            assert!(e.to_string().contains("c.toml"), "{e}");
            // A file, not a folder, is refused too.
            let e = Settings::from_sources(None, &env(&[(key, &file.display().to_string())]))
                .unwrap_err();
            assert!(e.to_string().contains("is not a folder"), "{e}");
        }
        let s = Settings::from_sources(
            None,
            &env(&[("SOBOT_SYNC_PIPELINES", &dir.path().display().to_string())]),
        )
        .unwrap();
        assert_eq!(s.pipelines_dir, dir.path());
        let unset = Settings::from_sources(None, &env(&[])).unwrap();
        assert_eq!(unset.pipelines_dir, PathBuf::from("./pipelines"));
        assert_eq!(unset.schemas_dir, PathBuf::from("./schemas"));
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "max_rsp = 3\n").unwrap();
        let e = Settings::from_sources(Some(&f), &env(&[])).unwrap_err();
        assert!(e.to_string().contains("max_rsp"), "{e}");
    }

    #[test]
    fn secrets_are_never_shown() {
        let s = Settings::from_sources(
            None,
            &env(&[
                ("SOBOT_APP_ID", "id"),
                ("SOBOT_APP_SECRET", "s3cr3t-value"),
                ("AWS_SECRET_ACCESS_KEY", "awskey-value"),
                ("SOBOT_AGENT_TOKEN", "agent-tok-value"),
                ("SOBOT_OPERATOR_USER_ID", "op-1"),
            ]),
        )
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("s3cr3t-value")
                && !dbg.contains("awskey-value")
                && !dbg.contains("agent-tok-value"),
            "{dbg}"
        );
        assert_eq!(s.operator_user_id.as_deref(), Some("op-1"));
        let api = s.api_settings().unwrap();
        assert_eq!(
            api.agent_token.as_ref().map(|t| t.expose()),
            Some("agent-tok-value")
        );
        assert!(!format!("{api:?}").contains("agent-tok-value"));
    }
}
