//! `sobot-sync run [PIPELINE ...]`: every selected pipeline of every selected tenant,
//! from its watermark to now.

use crate::app::settings::Settings;
use crate::app::setup::{clock, engine};
use crate::core::error::CommandError;
use crate::engine::run::{Engine, Mode, Report, RunError};
use crate::io::api::ApiUsage;

pub(crate) fn run_error(e: RunError) -> CommandError {
    if e.is_config() {
        CommandError::Config(e.to_string())
    } else {
        CommandError::Failed(e.to_string())
    }
}

pub(crate) fn print_report(tenant: &str, r: &Report) {
    println!(
        "{tenant}{}: {} windows ({} lookback), {} rows, {} files, {} requests; watermark {}",
        r.pipeline,
        r.windows,
        r.lookback_windows,
        r.rows,
        r.files,
        r.requests,
        r.watermark.map_or("-".into(), |w| w.to_rfc3339())
    );
    if let Some(line) = requests_line(&r.api_requests) {
        println!("  {line}");
    }
    if let Some(counts) = &r.report {
        println!("  {counts}");
    }
    if !r.skipped.is_empty() {
        let parts: Vec<String> = r.skipped.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!("  skipped (see the log): {}", parts.join(", "));
    }
    if let Some(w) = &r.waiting {
        println!("  {}", waiting_line(w));
    }
}

/// issue 15: child windows held back for their parent, in one line.
pub(crate) fn waiting_line(w: &crate::io::state::model::Waiting) -> String {
    format!(
        "{} window(s) from {} wait for {} to commit them (a child never runs ahead of its parent)",
        w.windows,
        w.from.to_rfc3339(),
        w.parent
    )
}

/// issue 15: a run's request budget in one line: the total, the share that were
/// retries, then each endpoint (`None` when the run made no request).
pub(crate) fn requests_line(usage: &ApiUsage) -> Option<String> {
    if usage.is_empty() {
        return None;
    }
    let total = usage.total();
    let each: Vec<String> = usage
        .0
        .iter()
        .map(|(endpoint, u)| match u.retries {
            0 => format!("{endpoint} {}", u.requests),
            n => format!("{endpoint} {} ({})", u.requests, retries(n)),
        })
        .collect();
    Some(format!(
        "api requests: {}, {} ({:.1}%): {}",
        total.requests,
        retries(total.retries),
        100.0 * usage.retry_share(),
        each.join(", ")
    ))
}

fn retries(n: u64) -> String {
    match n {
        1 => "1 retry".to_owned(),
        n => format!("{n} retries"),
    }
}

/// Runs pipelines incrementally; parents before their children, independent ones at once.
pub async fn run_pipelines(engine: &Engine, names: &[String]) -> Result<Vec<Report>, CommandError> {
    let selected = engine.catalog.select(names).map_err(CommandError::Config)?;
    let run_id = Engine::new_run_id();
    let wanted: Vec<&str> = selected.iter().map(|p| p.name.as_str()).collect();
    // Every lock up front: a second run started at the same time is refused whole.
    let claim = engine.claim(&wanted, &run_id).await.map_err(run_error)?;
    // Parents first so that children see the parent's fresh windows in the same run.
    let (parents, children): (Vec<_>, Vec<_>) =
        selected.into_iter().partition(|p| p.parent.is_none());
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for stage in [parents, children] {
        let results = futures::future::join_all(
            stage
                .iter()
                .map(|p| engine.run_claimed(p, Mode::Incremental, &run_id, &claim)),
        )
        .await;
        for r in results {
            match r {
                Ok(rep) => {
                    print_report(
                        &crate::app::tenant::label(engine.settings.tenant.as_deref()),
                        &rep,
                    );
                    reports.push(rep);
                }
                Err(e) => {
                    let config = e.is_config();
                    eprintln!(
                        "error: {}{e}",
                        crate::app::tenant::label(engine.settings.tenant.as_deref())
                    );
                    errors.push((config, e.to_string()));
                }
            }
        }
    }
    claim.release().await;
    if errors.is_empty() {
        Ok(reports)
    } else if errors.iter().all(|(c, _)| *c) {
        Err(CommandError::Config(format!(
            "{} pipeline(s) misconfigured",
            errors.len()
        )))
    } else {
        Err(CommandError::Failed(format!(
            "{} of {} pipeline(s) failed",
            errors.len(),
            errors.len() + reports.len()
        )))
    }
}

pub async fn run_cmd(
    config: Option<&std::path::Path>,
    names: &[String],
    now: Option<&str>,
    tenant: Option<&str>,
    dry_run: bool,
) -> Result<(), CommandError> {
    let settings = Settings::load(config)?;
    // issue 4: every selected tenant at once, each with its own engine; one
    // /metrics and /healthz for all of them.
    let selected = crate::app::tenant::select(&settings, tenant)?;
    let http_addr = settings.http_addr;
    let mut engines = Vec::with_capacity(selected.len());
    let mut rates = std::collections::BTreeMap::new();
    for settings in selected {
        let clock = clock(&settings, now)?;
        rates.insert(settings.tenant.clone(), settings.max_rps);
        engines.push(engine(settings, clock)?);
    }
    if dry_run {
        // issue 15: no /metrics, no lock, no commit: the estimate only.
        let rates = &rates;
        return crate::app::tenant::each(engines, |engine| async move {
            let selected = engine.catalog.select(names).map_err(CommandError::Config)?;
            // Parents first, as a run orders them.
            let (mut order, children): (Vec<_>, Vec<_>) =
                selected.into_iter().partition(|p| p.parent.is_none());
            order.extend(children);
            let rps = rates.get(&engine.settings.tenant).copied().unwrap_or(1);
            crate::app::dry_run::print_estimates(&engine, &order, Mode::Incremental, rps).await
        })
        .await;
    }
    let _http = crate::app::http::serve_configured(http_addr, &engines).await?;
    crate::app::tenant::each(engines, |engine| async move {
        run_pipelines(&engine, names).await.map(|_| ())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::api::EndpointUsage;

    #[test]
    fn the_requests_line_names_each_endpoint_and_the_retry_share() {
        assert_eq!(requests_line(&ApiUsage::default()), None);
        let usage = ApiUsage(
            [
                (
                    "/a/_search".to_string(),
                    EndpointUsage {
                        requests: 9,
                        retries: 1,
                    },
                ),
                (
                    "/tokens/company".to_string(),
                    EndpointUsage {
                        requests: 1,
                        retries: 0,
                    },
                ),
            ]
            .into(),
        );
        assert_eq!(
            requests_line(&usage).as_deref(),
            Some("api requests: 10, 1 retry (10.0%): /a/_search 9 (1 retry), /tokens/company 1")
        );
    }
}
