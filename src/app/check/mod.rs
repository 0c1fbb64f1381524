//! `sobot-sync check` (issue 13 part 8): the first command a new user runs against a
//! real tenant, so its output has to say which setting or permission to fix.
//!
//! Validation first, purely (settings, pipeline definitions and schemas, privacy), then
//! storage (a probe object written and removed, the warehouse listed), then one cheap
//! request to every endpoint the enabled pipelines use, each read the way the pipeline
//! reads it. A settings validation that passes says little about a tenant: the token may
//! lack a permission, one endpoint may answer in a form we do not read. Only a request
//! to each endpoint proves them.
//!
//! The probes, in order: the token; each search (one page of one record over the window
//! the pipeline's next run would load, so that a call to probe its children with is likely
//! to be found); the children of one call of that page (the party list); each report with
//! the parameters its pipeline sends, over one period; the indicator display schemes;
//! the agent metrics; and, when a recordings pipeline is on, one recording of that page.
//! A probe that needs a call and finds none is ok with a note ("no call to probe").
//!
//! Exit status: 2 when the configuration is wrong (nothing is requested then), 1 when
//! storage or any endpoint fails, 0 when all is proven.

mod endpoints;
mod failure;
mod output;
mod probes;
mod storage;

pub use endpoints::RECORDINGS_PATH;
pub use output::{CheckReport, EndpointResult, Step, render};

use crate::app::settings::Settings;
use crate::core::error::CommandError;
use crate::io::api::Credentials;
use output::{Output, failed_step, step};
use std::path::Path;

/// `check [--tenant NAME] [--json] [--now TIME]`.
pub async fn run(
    config: Option<&Path>,
    tenant: Option<&str>,
    json: bool,
    now: Option<&str>,
) -> Result<(), CommandError> {
    let mut out = Output::new(json);
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            out.step(failed_step(
                &None,
                "settings",
                &e.to_string(),
                "fix the setting named in the error",
            ));
            out.finish()?;
            return Err(e.into());
        }
    };
    out.step(step(
        &None,
        "settings",
        config.map_or("environment only".into(), |p| p.display().to_string()),
    ));
    // issue 4: every selected tenant in turn, each proving its own storage and endpoints.
    let selected = match crate::app::tenant::select(&settings, tenant) {
        Ok(s) => s,
        Err(e) => {
            out.step(failed_step(
                &None,
                "settings",
                &e.to_string(),
                "check --tenant",
            ));
            out.finish()?;
            return Err(e);
        }
    };
    if selected.len() == 1 && selected[0].tenant.is_none() {
        let result = check_tenant(&mut out, settings, now).await;
        out.finish()?;
        return result;
    }
    let mut failures = Vec::new();
    for settings in selected {
        let label = crate::app::tenant::label(settings.tenant.as_deref());
        out.line(&format!("---- {}", label.trim_end_matches([':', ' '])));
        if let Err(e) = check_tenant(&mut out, settings, now).await {
            out.line(&format!("FAIL {label}{e}"));
            failures.push(e);
        }
    }
    out.finish()?;
    match failures.len() {
        0 => Ok(()),
        n if failures
            .iter()
            .all(|e| matches!(e, CommandError::Config(_))) =>
        {
            Err(CommandError::Config(format!(
                "{n} tenant(s) failed the check"
            )))
        }
        n => Err(CommandError::Failed(format!(
            "{n} tenant(s) failed the check"
        ))),
    }
}

/// One tenant's settings (or the only settings without tenants): validation, storage,
/// credentials, then every endpoint.
async fn check_tenant(
    out: &mut Output,
    settings: Settings,
    now: Option<&str>,
) -> Result<(), CommandError> {
    let tenant = settings.tenant.clone();
    let config_step = |out: &mut Output, check, e: CommandError| {
        out.step(failed_step(
            &tenant,
            check,
            &e.to_string(),
            "fix the setting or file named in the error",
        ));
        e
    };
    let now = match crate::app::setup::clock(&settings, now) {
        Ok(c) => c.now(),
        Err(e) => return Err(config_step(out, "settings", e)),
    };
    let catalog = match crate::app::setup::load_catalog(&settings) {
        Ok(c) => c,
        Err(e) => return Err(config_step(out, "pipelines", e)),
    };
    out.step(step(
        &tenant,
        "pipelines",
        format!(
            "{} pipeline definitions and their schemas ({}): {}",
            catalog.pipelines.len(),
            catalog.source,
            catalog
                .pipelines
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ));
    if let Err(e) = crate::core::privacy::validate(&catalog, settings.pii_key.as_ref()) {
        return Err(config_step(out, "privacy", e.into()));
    }
    out.step(step(
        &tenant,
        "privacy",
        crate::core::privacy::describe(&catalog, settings.pii_key.as_ref()),
    ));
    let storage = match storage::prove_storage(&settings).await {
        Ok(detail) => {
            out.step(step(&tenant, "storage", detail));
            None
        }
        Err(CommandError::Config(m)) => {
            return Err(config_step(out, "storage", CommandError::Config(m)));
        }
        Err(e) => {
            out.step(failed_step(
                &tenant,
                "storage",
                &e.to_string(),
                "check SOBOT_SYNC_WAREHOUSE and SOBOT_SYNC_STATE, and the storage credentials \
                 (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for s3://): write access is needed",
            ));
            Some(e)
        }
    };
    let client = match endpoints::client(&settings) {
        Ok(c) => c,
        Err(e) => return Err(config_step(out, "credentials", e)),
    };
    let who = match settings.credentials() {
        Ok(Credentials::Company { app_id, .. }) => format!("company app {app_id}"),
        _ => "the access token in SOBOT_TOKEN".to_string(),
    };
    out.step(step(
        &tenant,
        "credentials",
        format!("{who} at {}", settings.base_url),
    ));
    let mut rows = endpoints::probe_all(&client, &settings, &catalog, now).await;
    for r in &mut rows {
        r.tenant = tenant.clone();
    }
    let mut failed: Vec<&str> = Vec::new();
    for r in rows.iter().filter(|r| !r.ok) {
        if !failed.contains(&r.endpoint.as_str()) {
            failed.push(&r.endpoint);
        }
    }
    // The first real failure in full: the others are in the table.
    let first = rows
        .iter()
        .find(|r| !r.ok && !r.error.as_deref().is_some_and(failure::not_probed))
        .and_then(|r| r.error.clone());
    let token_error = rows
        .iter()
        .find(|r| !r.ok && r.endpoint == crate::io::api::TOKEN_ENDPOINT)
        .and_then(|r| r.error.clone());
    let message = (!failed.is_empty()).then(|| match &token_error {
        // Nothing else could be asked: the credentials are what to fix.
        Some(e) => format!("API credentials: {e}"),
        None => format!(
            "{} of {} endpoint(s) not proven ({}){}",
            rows.iter().filter(|r| !r.ok).count(),
            rows.len(),
            failed.join(", "),
            first.map_or(String::new(), |e| format!("; first: {e}"))
        ),
    });
    out.endpoints(rows);
    if let Some(message) = message {
        return Err(CommandError::Failed(message));
    }
    match storage {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
