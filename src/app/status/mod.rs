//! `status`: where each pipeline stands, read from committed state only.

pub mod settle;

use crate::app::settings::Settings;
use crate::app::setup::{clock, load_catalog, locations};
use crate::core::error::CommandError;
use crate::core::pipeline::Catalog;
use crate::io::state::model::{Outcome, PipelineState, RunRecord, Span};
use crate::io::state::store::{LockView, StateError, StateStore};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct BackfillRow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub done: Vec<Span>,
    pub finished: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub pipeline: String,
    pub table: String,
    pub enabled: bool,
    /// RFC 3339; null for a pipeline that never ran.
    pub watermark: Option<DateTime<Utc>>,
    /// Seconds from the watermark to now.
    pub lag_secs: Option<i64>,
    pub gaps: Vec<Span>,
    pub last_run: Option<RunRecord>,
    pub backfills: Vec<BackfillRow>,
    /// Report pipelines only: up to when periods are final (`settle::settle_row`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<settle::SettleRow>,
    /// issue 4: the tenant the row belongs to; absent without tenants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// issue 13: why `last_run` shows as interrupted (it is recorded as running, but no
    /// live lock of it exists); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

pub fn row(
    p: &crate::core::pipeline::Pipeline,
    st: Option<&PipelineState>,
    now: DateTime<Utc>,
) -> StatusRow {
    StatusRow {
        pipeline: p.name.clone(),
        table: p.table.clone(),
        enabled: p.enabled,
        watermark: st.map(|s| s.watermark),
        lag_secs: st.map(|s| (now - s.watermark).num_seconds()),
        gaps: st
            .map(|s| s.completed.gaps(s.watermark))
            .unwrap_or_default(),
        last_run: st.and_then(|s| s.last_run.clone()),
        backfills: st
            .map(|s| {
                s.backfills
                    .iter()
                    .map(|b| BackfillRow {
                        from: b.from,
                        to: b.to,
                        done: b.done.0.clone(),
                        finished: !b.is_open(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        report: settle::settle_row(p, st, now),
        tenant: None,
        interrupted: None,
    }
}

/// issue 13: why a run that `pipeline`'s state records as running is not running any
/// more, or `None` while a lock of that run is held (by a process not known to be dead).
/// A crash leaves the record saying "running" forever; the locks tell the truth, on the
/// wall clock like their leases. Sharded backfills hold range locks, not the pipeline's.
pub async fn interruption(
    state: &StateStore,
    pipeline: &str,
    run: &RunRecord,
) -> Result<Option<String>, StateError> {
    let now = Utc::now();
    let mut locks: Vec<LockView> = state.lock_view(pipeline, None).await?.into_iter().collect();
    locks.extend(state.range_lock_views(pipeline).await?);
    if locks
        .iter()
        .any(|l| l.is_of_run(&run.run_id) && l.is_held(now))
    {
        return Ok(None);
    }
    let reason = match locks.iter().find(|l| l.is_of_run(&run.run_id)) {
        Some(l) if l.released => {
            "its lock was released while it was still recorded as running".to_string()
        }
        Some(l) if l.liveness == crate::io::state::holder::Liveness::Dead => format!(
            "its process ({}) no longer exists",
            l.holder
                .as_ref()
                .map_or_else(|| l.owner.clone(), |h| h.to_string())
        ),
        Some(l) => format!(
            "its lock expired at {} without being renewed",
            l.expires_at.to_rfc3339()
        ),
        None => match locks.first() {
            Some(l) if l.scope.is_none() && l.is_held(now) => {
                format!("another run holds the lock now: {}", l.shown_holder())
            }
            _ => "no lock of it is held".to_string(),
        },
    };
    Ok(Some(reason))
}

pub async fn collect(
    catalog: &Catalog,
    state: &StateStore,
    now: DateTime<Utc>,
) -> Result<Vec<StatusRow>, StateError> {
    let mut rows = Vec::new();
    for p in catalog.pipelines.values() {
        let st = state.load::<PipelineState>(&p.name).await?.map(|v| v.value);
        let mut r = row(p, st.as_ref(), now);
        if let Some(run) = r.last_run.as_mut()
            && run.outcome == Outcome::Running
            && let Some(why) = interruption(state, &p.name, run).await?
        {
            run.outcome = Outcome::Interrupted;
            r.interrupted = Some(why);
        }
        rows.push(r);
    }
    Ok(rows)
}

fn human_secs(s: i64) -> String {
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else {
        format!("{m}m")
    }
}

pub fn render(rows: &[StatusRow]) -> String {
    let mut out = String::new();
    for r in rows {
        let wm = r.watermark.map_or("never run".into(), |w| w.to_rfc3339());
        let lag = r.lag_secs.map_or("-".into(), human_secs);
        out.push_str(&format!(
            "{}{}{} (table {}): watermark {wm}, lag {lag}\n",
            r.tenant
                .as_ref()
                .map_or(String::new(), |t| format!("[{t}] ")),
            r.pipeline,
            if r.enabled { "" } else { " [disabled]" },
            r.table
        ));
        if r.gaps.is_empty() {
            out.push_str("  gaps: none\n");
        } else {
            for g in &r.gaps {
                out.push_str(&format!(
                    "  gap: {} .. {}\n",
                    g.start.to_rfc3339(),
                    g.end.to_rfc3339()
                ));
            }
        }
        if let Some(run) = &r.last_run {
            out.push_str(&format!(
                "  last {}: {} started {} ended {} — {} windows, {} rows, {} files{}\n",
                run.kind,
                serde_json::to_value(&run.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                run.started_at.format("%Y-%m-%dT%H:%M:%SZ"),
                run.ended_at
                    .map_or("-".into(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                run.windows,
                run.rows,
                run.files,
                run.error
                    .as_ref()
                    .map(|e| format!("\n  error: {e}"))
                    .unwrap_or_default()
            ));
        }
        // issue 15: what the last run cost the tenant's request budget.
        if let Some(line) = r
            .last_run
            .as_ref()
            .and_then(|run| crate::app::run::requests_line(&run.api_requests))
        {
            out.push_str(&format!(
                "  {line}
"
            ));
        }
        // issue 15: child windows the last run held back for their parent.
        if let Some(w) = r.last_run.as_ref().and_then(|run| run.waiting.as_ref()) {
            out.push_str(&format!("  {}\n", crate::app::run::waiting_line(w)));
        }
        if let Some(why) = &r.interrupted {
            out.push_str(&format!(
                "  interrupted: {why}; the next run or backfill carries on from what was committed\n"
            ));
        }
        if let Some(settle) = &r.report {
            out.push_str(&settle::render_settle(settle));
        }
        for b in r.backfills.iter().filter(|b| !b.finished) {
            out.push_str(&format!(
                "  open backfill {} .. {}: {} span(s) done\n",
                b.from.to_rfc3339(),
                b.to.to_rfc3339(),
                b.done.len()
            ));
        }
    }
    out
}

pub async fn status_cmd(
    config: Option<&std::path::Path>,
    json: bool,
    now: Option<&str>,
    tenant: Option<&str>,
) -> Result<(), CommandError> {
    let all = Settings::load(config)?;
    let mut rows = Vec::new();
    // issue 4: one block of rows per tenant, each row naming its tenant.
    for settings in crate::app::tenant::select(&all, tenant)? {
        let clock = clock(&settings, now)?;
        let catalog = load_catalog(&settings)?;
        let (_, state) = locations(&settings)?;
        let mut tenant_rows = collect(&catalog, &state, clock.now()).await.map_err(|e| {
            CommandError::Failed(format!(
                "{}{e}",
                crate::app::tenant::label(settings.tenant.as_deref())
            ))
        })?;
        for row in &mut tenant_rows {
            row.tenant = settings.tenant.clone();
        }
        rows.extend(tenant_rows);
    }
    if json {
        let text =
            serde_json::to_string_pretty(&rows).map_err(|e| CommandError::Failed(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", render(&rows));
    }
    Ok(())
}

/// Whether a state's last run failed (status colouring, tests).
pub fn last_failed(st: &PipelineState) -> bool {
    st.last_run
        .as_ref()
        .is_some_and(|r| r.outcome == Outcome::Failed)
}
