//! Several Sobot tenants (companies) in one configuration (issue 4, part 6).
//!
//! A config without tenants behaves exactly as before. With tenants, every command works
//! on one tenant's *effective settings*: the top-level settings with that tenant's
//! credentials, API root, time zone, rate cap and concurrency cap laid over them
//! ([`Settings::for_tenant`]). Everything else follows from those settings alone:
//!
//! - `crate::app::setup::engine` builds one `Engine` per tenant, so each tenant has its own API client
//!   (own token, own rate cap and concurrency limit shared by all its pipelines) and its
//!   own zone for windows and `dt`;
//! - `crate::app::setup::locations` calls [`scope`], which puts the tenant's tables under
//!   `<table>/tenant=<name>/dt=.../` (through `Location::with_table_partition`, the one
//!   place keys are built) and its state under `<state>/tenants/<name>/`, so tenants
//!   never share a lock, watermark, ledger or file.
//!
//! Configuration: `[tenants.<name>]` tables in the settings file, and in the
//! environment `SOBOT_TENANTS=acme,globex` (the list; it replaces the file's when set)
//! and `SOBOT_TENANT_<NAME>_<FIELD>` overrides. Names are `[a-z0-9]+`, so the variable
//! splits without ambiguity at the first `_` after the name.

use crate::app::settings::Settings;
use crate::core::error::{CommandError, ConfigError};
use crate::core::secret::Secret;
use crate::core::timeutil;
use crate::io::store::Location;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use tracing::Instrument;

/// The settings file key holding the `[tenants.<name>]` tables.
pub const FILE_KEY: &str = "tenants";
/// The environment variable listing the tenants.
pub const LIST_ENV: &str = "SOBOT_TENANTS";
/// The prefix of per-tenant environment overrides: `SOBOT_TENANT_<NAME>_<FIELD>`.
pub const ENV_PREFIX: &str = "SOBOT_TENANT_";
/// Tenant names become folder names (`tenant=<name>`, `tenants/<name>`) on every store.
const MAX_NAME_LEN: usize = 32;

/// The per-tenant fields, as file keys; the environment spells them in upper case.
const FIELDS: &[&str] = &[
    "app_id",
    "app_secret",
    "token",
    "agent_token",
    "operator_user_id",
    "timezone",
    "max_rps",
    "max_concurrency",
    "base_url",
];

/// One tenant's own settings; `None` inherits the top-level setting.
#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub name: String,
    pub base_url: Option<String>,
    /// Credentials are taken whole: a tenant naming any of app id, app secret or token
    /// inherits none of the top-level ones (mixing one company's id with another's secret
    /// can only fail).
    pub app_id: Option<String>,
    pub app_secret: Option<Secret>,
    pub token: Option<Secret>,
    /// issue 13: the tenant's own `SOBOT_AGENT_TOKEN` and `SOBOT_OPERATOR_USER_ID`. A
    /// tenant with its own credentials inherits neither: another company's agent token
    /// must never be sent to this tenant's API, nor its operator asked for.
    pub agent_token: Option<Secret>,
    pub operator_user_id: Option<String>,
    pub timezone: Option<Tz>,
    pub max_rps: Option<u32>,
    pub max_concurrency: Option<usize>,
    /// `SOBOT_SYNC_START` read again in this tenant's zone (a bare date is local midnight).
    pub start: Option<DateTime<Utc>>,
}

impl TenantSettings {
    fn has_credentials(&self) -> bool {
        self.app_id.is_some() || self.app_secret.is_some() || self.token.is_some()
    }
}

/// A raw per-tenant value and where it came from, for error messages.
#[derive(Debug, Clone)]
struct Raw {
    value: String,
    /// `SOBOT_TENANT_ACME_MAX_RPS (environment)` or `tenants.acme.max_rps (in c.toml)`.
    setting: String,
}

/// Reads the tenants of the settings file (if any) and the environment. `top` is the
/// top-level settings already loaded from the same sources.
pub fn load(
    config_file: Option<&Path>,
    env: &BTreeMap<String, String>,
    top: &Settings,
) -> Result<Vec<TenantSettings>, ConfigError> {
    let mut file_start: Option<String> = None;
    // The tenants in order, and name -> field -> raw value.
    let mut listed: Vec<String> = Vec::new();
    let mut raw: BTreeMap<String, BTreeMap<&'static str, Raw>> = BTreeMap::new();
    if let Some(path) = config_file {
        let shown = path.display().to_string();
        // The file was read and checked as TOML by `Settings`; read it again for the
        // tables `Settings` leaves to this module.
        let table: toml::Table = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_default();
        file_start = table
            .get("sync_start")
            .and_then(|v| v.as_str().map(str::to_string));
        if let Some(value) = table.get(FILE_KEY) {
            let toml::Value::Table(tenants) = value else {
                return Err(ConfigError::new(
                    format!("{FILE_KEY} (in {shown})"),
                    "must be a table of tenant tables: [tenants.<name>]",
                ));
            };
            for (name, fields) in tenants {
                let at = format!("{FILE_KEY}.{name} (in {shown})");
                validate_name(name).map_err(|why| ConfigError::new(&at, why))?;
                let toml::Value::Table(fields) = fields else {
                    return Err(ConfigError::new(
                        at,
                        "must be a table: [tenants.<name>] with app_id, app_secret, token, agent_token, operator_user_id, timezone, max_rps, max_concurrency, base_url",
                    ));
                };
                let mine = raw.entry(name.clone()).or_default();
                for (key, value) in fields {
                    let setting = format!("{FILE_KEY}.{name}.{key} (in {shown})");
                    let Some(field) = FIELDS.iter().find(|f| **f == key) else {
                        return Err(ConfigError::new(
                            setting,
                            format!("unknown tenant setting; known: {}", FIELDS.join(", ")),
                        ));
                    };
                    let value = match value {
                        toml::Value::String(s) => s.clone(),
                        toml::Value::Integer(i) => i.to_string(),
                        toml::Value::Float(f) => f.to_string(),
                        toml::Value::Boolean(b) => b.to_string(),
                        _ => {
                            return Err(ConfigError::new(
                                setting,
                                "must be a string, number or boolean",
                            ));
                        }
                    };
                    mine.insert(field, Raw { value, setting });
                }
                listed.push(name.clone());
            }
        }
    }
    if let Some(list) = env.get(LIST_ENV).filter(|v| !v.trim().is_empty()) {
        // The environment wins: its list replaces the file's; a listed tenant still takes
        // the file's `[tenants.<name>]` values.
        listed.clear();
        let at = format!("{LIST_ENV} (environment)");
        for name in list.split(',').map(str::trim) {
            validate_name(name).map_err(|why| ConfigError::new(&at, why))?;
            if listed.iter().any(|n| n == name) {
                return Err(ConfigError::new(
                    &at,
                    format!("tenant {name:?} is listed twice"),
                ));
            }
            listed.push(name.to_string());
        }
    }
    for (key, value) in env {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let setting = format!("{key} (environment)");
        let Some((upper, field)) = rest.split_once('_') else {
            return Err(ConfigError::new(
                setting,
                "expected SOBOT_TENANT_<NAME>_<FIELD>, e.g. SOBOT_TENANT_ACME_APP_SECRET",
            ));
        };
        if upper.is_empty()
            || !upper
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(ConfigError::new(
                setting,
                "the tenant name in the variable must be A-Z and 0-9 (the name in upper case)",
            ));
        }
        let name = upper.to_ascii_lowercase();
        let field_key = field.to_ascii_lowercase();
        let Some(field) = FIELDS.iter().find(|f| **f == field_key) else {
            return Err(ConfigError::new(
                setting,
                format!(
                    "unknown tenant setting {field:?}; known: {}",
                    FIELDS
                        .iter()
                        .map(|f| f.to_ascii_uppercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if !listed.contains(&name) {
            return Err(ConfigError::new(
                setting,
                format!(
                    "tenant {name:?} is not configured: list it in {LIST_ENV} or add [{FILE_KEY}.{name}] to the settings file"
                ),
            ));
        }
        raw.entry(name).or_default().insert(
            field,
            Raw {
                value: value.clone(),
                setting,
            },
        );
    }
    let start = env
        .get("SOBOT_SYNC_START")
        .filter(|v| !v.trim().is_empty())
        .cloned()
        .or(file_start);
    let mut out = Vec::with_capacity(listed.len());
    for name in listed {
        let fields = raw.remove(&name).unwrap_or_default();
        out.push(parse_tenant(&name, &fields, top, start.as_deref())?);
    }
    Ok(out)
}

fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant name {name:?} is not valid: use 1-{MAX_NAME_LEN} characters of a-z and 0-9 (it becomes a folder name and part of SOBOT_TENANT_<NAME>_* variables)"
        ))
    }
}

fn parse_tenant(
    name: &str,
    fields: &BTreeMap<&'static str, Raw>,
    top: &Settings,
    start: Option<&str>,
) -> Result<TenantSettings, ConfigError> {
    let get = |f: &str| {
        fields
            .get(f)
            .map(|r| (r.value.trim().to_string(), r.setting.clone()))
            .filter(|(v, _)| !v.is_empty())
    };
    let positive = |f: &str| -> Result<Option<u64>, ConfigError> {
        match get(f) {
            None => Ok(None),
            Some((v, setting)) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(ConfigError::new(
                    setting,
                    format!("must be a positive whole number, got {v:?}"),
                )),
            },
        }
    };
    let timezone = match get("timezone") {
        None => None,
        Some((v, setting)) => Some(v.parse::<Tz>().map_err(|_| {
            ConfigError::new(
                setting,
                format!("{v:?} is not an IANA time zone (e.g. Asia/Singapore)"),
            )
        })?),
    };
    let base_url = match get("base_url") {
        None => None,
        Some((v, setting)) => match url::Url::parse(&v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                Some(v.trim_end_matches('/').to_string())
            }
            _ => {
                return Err(ConfigError::new(
                    setting,
                    format!("{v:?} is not an http(s) URL"),
                ));
            }
        },
    };
    let app_id = get("app_id").map(|(v, _)| v);
    let app_secret = get("app_secret").map(|(v, _)| Secret::new(v));
    let token = get("token").map(|(v, _)| Secret::new(v));
    let agent_token = get("agent_token").map(|(v, _)| Secret::new(v));
    let operator_user_id = get("operator_user_id").map(|(v, _)| v);
    if app_id.is_some() != app_secret.is_some() {
        let missing = if app_id.is_none() {
            "app_id"
        } else {
            "app_secret"
        };
        return Err(ConfigError::new(
            format!(
                "{ENV_PREFIX}{}_{} / {FILE_KEY}.{name}.{missing}",
                name.to_ascii_uppercase(),
                missing.to_ascii_uppercase()
            ),
            format!(
                "tenant {name}: app_id and app_secret go together: set both (or token instead)"
            ),
        ));
    }
    let max_rps = match positive("max_rps")? {
        None => None,
        Some(n) => Some(u32::try_from(n).map_err(|_| {
            let setting = get("max_rps").map(|(_, s)| s).unwrap_or_default();
            ConfigError::new(setting, "is too large")
        })?),
    };
    let max_concurrency = positive("max_concurrency")?.map(|n| n as usize);
    let tz = timezone.unwrap_or(top.timezone);
    let start = match start {
        None => None,
        Some(v) => Some(timeutil::parse_time(v, tz).map_err(|why| {
            ConfigError::new(
                format!("SOBOT_SYNC_START (for tenant {name}, in {})", tz.name()),
                why,
            )
        })?),
    };
    Ok(TenantSettings {
        name: name.to_string(),
        base_url,
        app_id,
        app_secret,
        token,
        agent_token,
        operator_user_id,
        timezone,
        max_rps,
        max_concurrency,
        start,
    })
}

impl Settings {
    /// One tenant's effective settings: the top-level ones with the tenant's own laid
    /// over them, and `tenant` set, which scopes tables and state to it (see [`scope`]).
    pub fn for_tenant(&self, t: &TenantSettings) -> Settings {
        let mut s = self.clone();
        if let Some(url) = &t.base_url {
            s.base_url = url.clone();
        }
        if t.has_credentials() {
            s.app_id = t.app_id.clone();
            s.app_secret = t.app_secret.clone();
            s.token = t.token.clone();
            s.agent_token = None;
            s.operator_user_id = None;
        }
        if let Some(a) = &t.agent_token {
            s.agent_token = Some(a.clone());
        }
        if let Some(o) = &t.operator_user_id {
            s.operator_user_id = Some(o.clone());
        }
        if let Some(tz) = t.timezone {
            s.timezone = tz;
        }
        if let Some(rps) = t.max_rps {
            s.max_rps = rps;
        }
        if let Some(c) = t.max_concurrency {
            s.max_concurrency = c;
        }
        s.start = t.start;
        s.tenant = Some(t.name.clone());
        s
    }
}

fn names(settings: &Settings) -> String {
    settings
        .tenants
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The settings a command works on: without tenants, `settings` itself (and `--tenant`
/// is an error); with tenants, the one `wanted` names, or every tenant.
pub fn select(settings: &Settings, wanted: Option<&str>) -> Result<Vec<Settings>, CommandError> {
    if settings.tenants.is_empty() {
        return match wanted {
            None => Ok(vec![settings.clone()]),
            Some(w) => Err(CommandError::Config(format!(
                "--tenant {w:?}: no tenants are configured (add [{FILE_KEY}.<name>] to the settings file or set {LIST_ENV})"
            ))),
        };
    }
    match wanted {
        None => Ok(settings
            .tenants
            .iter()
            .map(|t| settings.for_tenant(t))
            .collect()),
        Some(w) => match settings.tenants.iter().find(|t| t.name == w) {
            Some(t) => Ok(vec![settings.for_tenant(t)]),
            None => Err(CommandError::Config(format!(
                "--tenant {w:?}: unknown tenant; configured: {}",
                names(settings)
            ))),
        },
    }
}

/// For commands that work on one tenant (`backfill`, `reconcile`): the one `wanted`
/// names, or the only one configured; several without `--tenant` is a usage error.
pub fn one(
    settings: &Settings,
    wanted: Option<&str>,
    command: &str,
) -> Result<Settings, CommandError> {
    let mut chosen = select(settings, wanted)?;
    if chosen.len() != 1 {
        return Err(CommandError::Config(format!(
            "{command} works on one tenant: add --tenant NAME ({} tenants are configured: {})",
            settings.tenants.len(),
            names(settings)
        )));
    }
    Ok(chosen.remove(0))
}

/// Scopes the warehouse and state locations to the settings' tenant: tables under
/// `<table>/tenant=<name>/`, state under `<state>/tenants/<name>/`. Without tenants they
/// are returned unchanged. Settings of a multi-tenant config that were not narrowed to
/// one tenant are refused, so nothing is ever written outside a tenant's partition.
pub fn scope(
    settings: &Settings,
    warehouse: Location,
    state: Location,
) -> Result<(Location, Location), CommandError> {
    match &settings.tenant {
        Some(name) => Ok((
            warehouse.with_table_partition(&format!("tenant={name}")),
            state.join(&format!("tenants/{name}")),
        )),
        None if settings.tenants.is_empty() => Ok((warehouse, state)),
        None => Err(CommandError::Config(format!(
            "tenants are configured ({}); this command needs one tenant's settings (Settings::for_tenant or --tenant)",
            names(settings)
        ))),
    }
}

/// `"tenant acme: "` for one tenant's messages, `""` without tenants.
pub fn label(tenant: Option<&str>) -> String {
    tenant.map_or(String::new(), |t| format!("tenant {t}: "))
}

/// Runs `f` for every selected tenant at once (each has its own API limits and locks,
/// so one slow or busy tenant does not hold the others back). Without tenants it is
/// just `f(settings)`. Every tenant's failure is printed; the result is exit 2 when all
/// failures are configuration errors, else exit 1.
pub async fn each<F, Fut>(
    selected: Vec<crate::engine::run::Engine>,
    f: F,
) -> Result<(), CommandError>
where
    F: Fn(crate::engine::run::Engine) -> Fut,
    Fut: Future<Output = Result<(), CommandError>>,
{
    if let [only] = selected.as_slice()
        && only.settings.tenant.is_none()
    {
        return f(only.clone()).await;
    }
    let total = selected.len();
    let runs = selected.into_iter().map(|s| {
        let name = s.settings.tenant.clone().unwrap_or_default();
        // Log lines of tenants running at once say whose they are.
        let span = tracing::info_span!("tenant", tenant = %name);
        let run = f(s);
        async move { (name, run.await) }.instrument(span)
    });
    let results = futures::future::join_all(runs).await;
    let mut failed = Vec::new();
    let mut all_config = true;
    for (name, result) in results {
        if let Err(e) = result {
            eprintln!("error: tenant {name}: {e}");
            all_config &= matches!(e, CommandError::Config(_));
            failed.push(name);
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    let message = format!(
        "{} of {total} tenant(s) failed: {}",
        failed.len(),
        failed.join(", ")
    );
    if all_config {
        Err(CommandError::Config(message))
    } else {
        Err(CommandError::Failed(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let f = dir.path().join("c.toml");
        std::fs::write(&f, text).expect("write config");
        (dir, f)
    }

    fn err(config: Option<&Path>, pairs: &[(&str, &str)]) -> String {
        Settings::from_sources(config, &env(pairs))
            .expect_err("settings are refused")
            .to_string()
    }

    #[test]
    fn no_tenants_is_the_single_tenant_setup() {
        let s = Settings::from_sources(None, &env(&[])).expect("defaults");
        assert!(s.tenants.is_empty() && s.tenant.is_none());
        let chosen = select(&s, None).expect("one");
        assert_eq!(chosen.len(), 1);
        assert!(chosen[0].tenant.is_none());
        assert!(select(&s, Some("acme")).is_err());
    }

    #[test]
    fn tenants_from_the_file_inherit_and_env_wins() {
        let (_d, f) = file(
            r#"
timezone = "Asia/Singapore"
max_rps = 10
app_id = "top"
app_secret = "top-secret"
sync_start = "2024-03-01"

[tenants.acme]
app_id = "acme-id"
app_secret = "acme-secret"
timezone = "America/New_York"
max_rps = 3

[tenants.globex]
max_concurrency = 2
"#,
        );
        let s = Settings::from_sources(
            Some(&f),
            &env(&[
                ("SOBOT_TENANT_ACME_MAX_RPS", "5"),
                ("SOBOT_TENANT_GLOBEX_TOKEN", "globex-token"),
            ]),
        )
        .expect("valid");
        let names: Vec<&str> = s.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["acme", "globex"]);
        let acme = s.for_tenant(&s.tenants[0]);
        assert_eq!(acme.tenant.as_deref(), Some("acme"));
        assert_eq!(acme.max_rps, 5, "env wins over the file");
        assert_eq!(acme.timezone, chrono_tz::America::New_York);
        assert_eq!(acme.app_id.as_deref(), Some("acme-id"));
        assert_eq!(acme.max_concurrency, 4, "inherited default");
        // A bare date is midnight in the tenant's zone.
        assert_eq!(
            acme.start.map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-03-01T05:00:00+00:00")
        );
        let globex = s.for_tenant(&s.tenants[1]);
        assert_eq!(globex.timezone, chrono_tz::Asia::Singapore);
        assert_eq!(globex.max_rps, 10);
        assert_eq!(globex.max_concurrency, 2);
        // Own token: none of the top-level credentials are mixed in.
        assert_eq!(globex.app_id, None);
        assert_eq!(
            globex.token.as_ref().map(|t| t.expose()),
            Some("globex-token")
        );
        assert_eq!(
            globex.start.map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-02-29T16:00:00+00:00")
        );
        assert!(!format!("{acme:?}{globex:?}").contains("acme-secret"));
        assert!(!format!("{globex:?}").contains("globex-token"));
    }

    /// issue 13: a tenant with its own credentials inherits neither the top-level agent
    /// token nor the operator; one without credentials inherits both; its own win.
    #[test]
    fn agent_token_and_operator_follow_the_credentials() {
        let (_d, f) = file(
            "app_id = \"top\"\napp_secret = \"s\"\nagent_token = \"top-agent\"\n\
             operator_user_id = \"top-op\"\n[tenants.acme]\n[tenants.globex]\ntoken = \"g\"\n\
             [tenants.initech]\nagent_token = \"initech-agent\"\n",
        );
        let s = Settings::from_sources(
            Some(&f),
            &env(&[("SOBOT_TENANT_GLOBEX_OPERATOR_USER_ID", "globex-op")]),
        )
        .expect("valid");
        let agent = |i: usize| {
            let t = s.for_tenant(&s.tenants[i]);
            (
                t.agent_token.map(|a| a.expose().to_string()),
                t.operator_user_id,
            )
        };
        let names: Vec<&str> = s.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["acme", "globex", "initech"]);
        assert_eq!(agent(0), (Some("top-agent".into()), Some("top-op".into())));
        assert_eq!(agent(1), (None, Some("globex-op".into())));
        assert_eq!(
            agent(2),
            (Some("initech-agent".into()), Some("top-op".into()))
        );
        assert!(!format!("{:?}", s.tenants).contains("initech-agent"));
    }

    #[test]
    fn the_environment_list_replaces_the_files() {
        let (_d, f) = file("[tenants.acme]\nmax_rps = 3\n[tenants.globex]\n");
        let s = Settings::from_sources(Some(&f), &env(&[("SOBOT_TENANTS", "initech, acme")]))
            .expect("valid");
        let names: Vec<&str> = s.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["initech", "acme"]);
        assert_eq!(s.tenants[1].max_rps, Some(3));
    }

    #[test]
    fn bad_tenant_settings_name_the_setting() {
        let (_d, f) = file("[tenants.Acme]\n");
        assert!(err(Some(&f), &[]).contains("tenants.Acme"));
        let (_d, f) = file("[tenants.acme]\nmax_rsp = 3\n");
        let e = err(Some(&f), &[]);
        assert!(e.contains("tenants.acme.max_rsp"), "{e}");
        let (_d, f) = file("tenants = 3\n");
        assert!(err(Some(&f), &[]).contains("setting tenants"));
        let e = err(None, &[("SOBOT_TENANTS", "acme,acme")]);
        assert!(e.contains("SOBOT_TENANTS") && e.contains("twice"), "{e}");
        let e = err(None, &[("SOBOT_TENANTS", "acme,ac-me")]);
        assert!(e.contains("SOBOT_TENANTS") && e.contains("ac-me"), "{e}");
        let e = err(None, &[("SOBOT_TENANT_ACME_APP_SECRET", "x")]);
        assert!(e.contains("SOBOT_TENANT_ACME_APP_SECRET"), "{e}");
        assert!(
            !e.contains(": x") && !e.contains("\"x\""),
            "secret shown: {e}"
        );
        let e = err(
            None,
            &[
                ("SOBOT_TENANTS", "acme"),
                ("SOBOT_TENANT_ACME_MAX_RSP", "3"),
            ],
        );
        assert!(e.contains("SOBOT_TENANT_ACME_MAX_RSP"), "{e}");
        let e = err(
            None,
            &[
                ("SOBOT_TENANTS", "acme"),
                ("SOBOT_TENANT_ACME_TIMEZONE", "Mars/Base"),
            ],
        );
        assert!(
            e.contains("SOBOT_TENANT_ACME_TIMEZONE") && e.contains("Mars/Base"),
            "{e}"
        );
        let e = err(
            None,
            &[
                ("SOBOT_TENANTS", "acme"),
                ("SOBOT_TENANT_ACME_MAX_RPS", "0"),
            ],
        );
        assert!(e.contains("SOBOT_TENANT_ACME_MAX_RPS"), "{e}");
        let e = err(
            None,
            &[
                ("SOBOT_TENANTS", "acme"),
                ("SOBOT_TENANT_ACME_APP_ID", "id"),
            ],
        );
        assert!(e.contains("SOBOT_TENANT_ACME_APP_SECRET"), "{e}");
        let e = err(
            None,
            &[
                ("SOBOT_TENANTS", "acme"),
                ("SOBOT_TENANT_ACME_BASE_URL", "ftp://x"),
            ],
        );
        assert!(e.contains("SOBOT_TENANT_ACME_BASE_URL"), "{e}");
    }

    #[test]
    fn commands_pick_tenants() {
        let s =
            Settings::from_sources(None, &env(&[("SOBOT_TENANTS", "acme,globex")])).expect("valid");
        assert_eq!(select(&s, None).expect("all").len(), 2);
        assert_eq!(
            select(&s, Some("globex")).expect("one")[0]
                .tenant
                .as_deref(),
            Some("globex")
        );
        let e = select(&s, Some("initech"))
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("acme, globex"), "{e}");
        let e = one(&s, None, "backfill").expect_err("ambiguous");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--tenant"), "{e}");
        let only = Settings::from_sources(None, &env(&[("SOBOT_TENANTS", "acme")])).expect("ok");
        assert_eq!(
            one(&only, None, "backfill")
                .expect("the only one")
                .tenant
                .as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn locations_are_scoped_per_tenant_and_refused_unscoped() {
        let s = Settings::from_sources(
            None,
            &env(&[
                ("SOBOT_TENANTS", "acme"),
                ("SOBOT_SYNC_WAREHOUSE", "s3://bucket/wh"),
            ]),
        )
        .expect("valid");
        let open = |url: &str| Location::parse(url, &s.s3).expect("location");
        let (w, st) = (open("s3://bucket/wh"), open("s3://bucket/wh/_state"));
        assert!(scope(&s, w.clone(), st.clone()).is_err());
        let acme = s.for_tenant(&s.tenants[0]);
        let (w, st) = scope(&acme, w, st).expect("scoped");
        assert_eq!(
            w.display("talks/dt=2024-03-01/x.parquet"),
            "s3://bucket/wh/talks/tenant=acme/dt=2024-03-01/x.parquet"
        );
        assert_eq!(st.url(), "s3://bucket/wh/_state/tenants/acme");
    }
}
