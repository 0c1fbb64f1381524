//! `sobot-sync backfill PIPELINE --from --to`: a historical range, tracked apart from
//! the watermark (sharded forms: `app::shard`).

use crate::app::run::{print_report, run_error};
use crate::app::setup::{BackfillSetup, backfill_engine};
use crate::core::error::CommandError;
use crate::engine::run::Mode;

pub async fn backfill_cmd(
    config: Option<&std::path::Path>,
    name: &str,
    (from, to): (&str, &str),
    now: Option<&str>,
    tenant: Option<&str>,
    dry_run: bool,
) -> Result<(), CommandError> {
    let BackfillSetup {
        engine,
        from,
        to,
        http_addr,
        max_rps,
    } = backfill_engine(config, tenant, (from, to), now)?;
    let p = engine
        .catalog
        .select(&[name.to_string()])
        .map_err(CommandError::Config)?
        .into_iter()
        .next()
        .ok_or_else(|| CommandError::Config(format!("unknown pipeline {name:?}")))?
        .clone();
    if dry_run {
        let mode = Mode::Backfill { from, to };
        return crate::app::dry_run::print_estimates(&engine, &[&p], mode, max_rps).await;
    }
    let _http =
        crate::app::http::serve_configured(http_addr, std::slice::from_ref(&engine)).await?; // issue 4
    let bar = crate::io::obs::progress::BackfillBar::start(&p.name); // issue 4
    let report = engine
        .run(&p, Mode::Backfill { from, to })
        .await
        .map_err(run_error);
    drop(bar);
    let report = report?;
    print_report(
        &crate::app::tenant::label(engine.settings.tenant.as_deref()),
        &report,
    );
    Ok(())
}
