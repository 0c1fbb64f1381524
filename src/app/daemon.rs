//! `sobot-sync daemon` (CONTRACT section 1, issue 4 part 1): every pipeline on its own
//! cron `schedule`, in `SOBOT_TIMEZONE`, until SIGTERM or SIGINT.
//!
//! - A tick runs the pipeline as `sobot-sync run <pipeline>` does: the same [`Engine`],
//!   lock ([`Engine::claim`]) and driver ([`Engine::run_claimed`]). Missed ticks are not
//!   replayed: a run always loads everything due from the watermark, so one tick after
//!   downtime catches up. Every pipeline also runs once at start, so a restarted daemon
//!   does not wait up to a schedule period before catching up.
//! - No overlap: a tick that arrives while the same pipeline's previous run in this
//!   process is still going is skipped (logged), never queued; a pipeline whose lock
//!   another process holds (a second replica, a manual `run`) is skipped at info level.
//! - Shutdown: on SIGTERM/SIGINT no new run starts; [`Engine::stop`] makes every run
//!   stop after the window it is committing; at the end of `SOBOT_SYNC_SHUTDOWN_GRACE_SECS`
//!   (less a short reserve) runs still going are dropped, leaving their window in flight
//!   uncommitted (the run recorded as failed), and every held lock is released before the
//!   process exits 0.

use crate::app::settings::Settings;
use crate::core::error::CommandError;
use crate::core::schedule::parse_schedule;
use crate::engine::run::{Engine, Mode, RunError};
use crate::io::state::model::{Outcome, PipelineState};
use chrono::{Offset, TimeZone, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

/// Time left, out of the grace period, to release locks after the runs were dropped.
fn release_reserve(grace: Duration) -> Duration {
    (grace / 5).min(Duration::from_secs(3))
}

/// How often the zone's UTC offset is compared with the one the jobs were built for.
const OFFSET_CHECK: Duration = Duration::from_secs(60);

/// What the ticks of every pipeline share.
struct Daemon {
    /// One engine per tenant (one without tenants); ticks name theirs by index.
    engines: Vec<Engine>,
    /// Per (engine, pipeline): whether a run of it is going in this process.
    running: BTreeMap<(usize, String), Arc<AtomicBool>>,
    /// Every run in flight, to wait for at shutdown.
    tracker: TaskTracker,
    /// Cancelled when the grace period is over: runs still going are dropped.
    hard_stop: CancellationToken,
}

/// Clears a pipeline's "running" mark however its run ends (also when dropped).
struct RunningMark(Arc<AtomicBool>);

impl Drop for RunningMark {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Daemon {
    /// A tick of `name` (`trigger`: "start" or "schedule"): starts a run unless the
    /// daemon is stopping or the previous run of the pipeline is still going.
    fn tick(self: &Arc<Self>, at: usize, name: &str, trigger: &'static str) {
        let Some(engine) = self.engines.get(at) else {
            return;
        };
        if engine.stop.is_cancelled() {
            return;
        }
        let Some(flag) = self.running.get(&(at, name.to_string())) else {
            return;
        };
        if flag.swap(true, Ordering::SeqCst) {
            tracing::info!(
                tenant = engine.settings.tenant.as_deref().unwrap_or("-"),
                pipeline = %name,
                trigger,
                "tick skipped: the previous run of this pipeline is still going"
            );
            return;
        }
        let mark = RunningMark(flag.clone());
        let this = self.clone();
        let name = name.to_string();
        // Logs of a run name its tenant (without tenants: none).
        let span = match &engine.settings.tenant {
            Some(t) => tracing::info_span!("tenant", tenant = %t),
            None => tracing::Span::none(),
        };
        self.tracker.spawn(
            async move {
                this.run_one(at, &name, trigger).await;
                drop(mark);
            }
            .instrument(span),
        );
    }

    /// issue 15: a child reads the windows its parent committed, so a child's run that
    /// finds its parent running (both due at once) waits for that run to end instead of
    /// finding its windows not committed yet, as `run` runs parents first.
    async fn after_parent(&self, at: usize, p: &crate::core::pipeline::Pipeline) {
        let Some(flag) = p
            .parent
            .as_ref()
            .and_then(|parent| self.running.get(&(at, parent.clone())))
        else {
            return;
        };
        let mut logged = false;
        while flag.load(Ordering::SeqCst) {
            if !logged {
                tracing::info!(pipeline = %p.name, parent = p.parent.as_deref().unwrap_or_default(), "waiting for the parent's run to end");
                logged = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// One run of one pipeline, as `run <pipeline>` does it, logged instead of printed.
    async fn run_one(&self, at: usize, name: &str, trigger: &'static str) {
        let Some(engine) = self.engines.get(at) else {
            return;
        };
        let Some(p) = engine.catalog.get(name) else {
            return;
        };
        let run_id = Engine::new_run_id();
        let claim = match engine.claim(&[name], &run_id).await {
            Ok(claim) => claim,
            Err(e) if e.is_busy() => {
                tracing::info!(pipeline = %name, trigger, "tick skipped: {e}");
                return;
            }
            Err(e) => {
                tracing::error!(pipeline = %name, trigger, "run not started: {e}");
                return;
            }
        };
        tracing::info!(pipeline = %name, run_id = %run_id, trigger, "run started");
        let run = async {
            self.after_parent(at, p).await;
            engine
                .run_claimed(p, Mode::Incremental, &run_id, &claim)
                .await
        };
        let outcome = tokio::select! {
            r = run => Some(r),
            () = self.hard_stop.cancelled() => None,
        };
        if outcome.is_none() {
            close_abandoned(engine, name, &run_id).await;
        }
        claim.release().await;
        match outcome {
            Some(Ok(r)) => tracing::info!(
                pipeline = %name,
                run_id = %run_id,
                windows = r.windows,
                lookback_windows = r.lookback_windows,
                rows = r.rows,
                files = r.files,
                requests = r.requests,
                api_requests = crate::app::run::requests_line(&r.api_requests).unwrap_or_default(), // issue 15
                watermark = %r.watermark.map_or("-".into(), |w| w.to_rfc3339()),
                "run finished"
            ),
            Some(Err(e @ RunError::Stopped { .. })) => {
                tracing::info!(pipeline = %name, run_id = %run_id, "run stopped: {e}")
            }
            Some(Err(e)) => tracing::error!(pipeline = %name, run_id = %run_id, "run failed: {e}"),
            None => tracing::warn!(
                pipeline = %name,
                run_id = %run_id,
                "run abandoned at the end of the shutdown grace period; its windows in flight are uncommitted and loaded by the next run"
            ),
        }
    }
}

/// Any pipeline kind's state: the part every driver shares, and whatever its driver adds
/// (a report's period grid), kept as it is.
#[derive(serde::Serialize, serde::Deserialize)]
struct AnyState {
    #[serde(flatten)]
    base: PipelineState,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// Records a run dropped at the end of the grace period as failed, so that `status` does
/// not show it running. The lock is still held, so nothing else commits meanwhile.
async fn close_abandoned(engine: &Engine, name: &str, run_id: &str) {
    let loaded = match engine.state.load::<AnyState>(name).await {
        Ok(Some(v)) => v,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(pipeline = %name, "cannot record the abandoned run: {e}");
            return;
        }
    };
    let mut st = loaded.value;
    let ours = st
        .base
        .last_run
        .as_ref()
        .is_some_and(|r| r.run_id == run_id && r.outcome == Outcome::Running);
    if !ours {
        return;
    }
    st.base.close_run(Some(format!(
        "pipeline {name}: abandoned at the end of the shutdown grace period; windows from {} on are loaded by the next run",
        st.base.watermark.to_rfc3339()
    )));
    if let Err(e) = engine.state.commit(name, Some(loaded.version), &st).await {
        tracing::warn!(pipeline = %name, "cannot record the abandoned run: {e}");
    }
}

/// One pipeline of one tenant's engine, and when it runs.
struct Scheduled {
    at: usize,
    name: String,
    schedule: String,
    tz: Tz,
}

/// Adds one job per scheduled pipeline to `sched`, its schedule read in its tenant's zone.
async fn add_jobs(
    sched: &JobScheduler,
    daemon: &Arc<Daemon>,
    schedules: &[Scheduled],
) -> Result<Vec<Uuid>, String> {
    let mut ids = Vec::with_capacity(schedules.len());
    for Scheduled {
        at,
        name,
        schedule,
        tz,
    } in schedules
    {
        let (d, n, at) = (daemon.clone(), name.clone(), *at);
        let job = Job::new_async_tz(schedule.as_str(), *tz, move |_id, _sched| {
            d.tick(at, &n, "schedule");
            Box::pin(async {})
        })
        .map_err(|e| format!("pipeline {name}: schedule {schedule:?}: {e}"))?;
        let id = sched
            .add(job)
            .await
            .map_err(|e| format!("pipeline {name}: cannot schedule: {e}"))?;
        ids.push(id);
    }
    Ok(ids)
}

/// The zone's offset from UTC now, in seconds.
fn offset_now(tz: Tz) -> i32 {
    tz.offset_from_utc_datetime(&Utc::now().naive_utc())
        .fix()
        .local_minus_utc()
}

/// `sobot-sync daemon [PIPELINE ...] [--now TIME]`.
pub async fn run(
    config: Option<&Path>,
    names: &[String],
    now: Option<&str>,
) -> Result<(), CommandError> {
    let settings = Settings::load(config)?;
    let grace = settings.shutdown_grace;
    // One engine per tenant: each its own API limits, zone, tables and state.
    let mut engines = Vec::new();
    for tenant in crate::app::tenant::select(&settings, None)? {
        let clock = crate::app::setup::clock(&tenant, now)?;
        engines.push(crate::app::setup::engine(tenant, clock)?);
    }
    let mut schedules = Vec::new();
    for (at, engine) in engines.iter().enumerate() {
        let selected = engine.catalog.select(names).map_err(CommandError::Config)?;
        if selected.is_empty() {
            return Err(CommandError::Config(format!(
                "{}no enabled pipeline in {}: nothing to schedule",
                crate::app::tenant::label(engine.settings.tenant.as_deref()),
                engine.catalog.source
            )));
        }
        // The catalog validated every schedule; parse again so that nothing unchecked
        // reaches the scheduler.
        for p in &selected {
            parse_schedule(&p.schedule).map_err(|why| {
                CommandError::Config(format!(
                    "pipeline {} ({}): {why}",
                    p.name, engine.catalog.source
                ))
            })?;
            schedules.push(Scheduled {
                at,
                name: p.name.clone(),
                schedule: p.schedule.clone(),
                tz: engine.settings.timezone,
            });
        }
    }
    // /metrics and /healthz for every tenant, when SOBOT_SYNC_HTTP_ADDR is set; served
    // until the daemon returns.
    let _http = crate::app::http::serve_configured(settings.http_addr, &engines).await?;
    let daemon = Arc::new(Daemon {
        running: schedules
            .iter()
            .map(|s| ((s.at, s.name.clone()), Arc::new(AtomicBool::new(false))))
            .collect(),
        engines,
        tracker: TaskTracker::new(),
        hard_stop: CancellationToken::new(),
    });

    let failed = |e: tokio_cron_scheduler::JobSchedulerError| {
        CommandError::Failed(format!("cannot start the scheduler: {e}"))
    };
    let mut sched = JobScheduler::new().await.map_err(failed)?;
    let offsets = || {
        daemon
            .engines
            .iter()
            .map(|e| offset_now(e.settings.timezone))
            .collect::<Vec<_>>()
    };
    let mut offset = offsets();
    let mut jobs = add_jobs(&sched, &daemon, &schedules)
        .await
        .map_err(CommandError::Config)?;
    sched.start().await.map_err(failed)?;
    tracing::info!(
        pipelines = %schedules
            .iter()
            .map(|s| {
                let tenant = daemon.engines.get(s.at).map_or(String::new(), |e| crate::app::tenant::label(e.settings.tenant.as_deref()));
                format!("{tenant}{} ({}, {})", s.name, s.schedule, s.tz.name())
            })
            .collect::<Vec<_>>()
            .join(", "),
        grace_secs = grace.as_secs(),
        "daemon started"
    );
    for s in &schedules {
        daemon.tick(s.at, &s.name, "start");
    }

    let signal = async {
        crate::io::signal::shutdown_signal()
            .await
            .map_err(CommandError::Failed)
    };
    tokio::pin!(signal);
    let mut offset_check = tokio::time::interval(OFFSET_CHECK);
    let name = loop {
        tokio::select! {
            s = &mut signal => break s?,
            _ = offset_check.tick() => {
                // The scheduler turns the zone into a fixed offset when a job is built;
                // rebuild the jobs when daylight saving time changes it.
                let now_offset = offsets();
                if now_offset != offset {
                    tracing::info!("a zone's UTC offset changed; rescheduling");
                    for id in jobs.drain(..) {
                        if let Err(e) = sched.remove(&id).await {
                            tracing::warn!("could not remove a scheduled job: {e}");
                        }
                    }
                    jobs = add_jobs(&sched, &daemon, &schedules)
                        .await
                        .map_err(CommandError::Config)?;
                    offset = now_offset;
                }
            }
        }
    };

    tracing::info!(
        signal = name,
        grace_secs = grace.as_secs(),
        "shutting down: no new runs; runs in progress stop after the window they are committing"
    );
    for engine in &daemon.engines {
        engine.stop.cancel();
    }
    if let Err(e) = sched.shutdown().await {
        tracing::warn!("scheduler shutdown: {e}");
    }
    daemon.tracker.close();
    let reserve = release_reserve(grace);
    if tokio::time::timeout(grace - reserve, daemon.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "grace period over: abandoning the runs still going and releasing their locks"
        );
        daemon.hard_stop.cancel();
        if tokio::time::timeout(reserve, daemon.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some locks were not released in time; they expire by themselves");
        }
    }
    tracing::info!("daemon stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_state_keeps_every_field_once() {
        let mut base = PipelineState::new(
            "r",
            86_400,
            "Asia/Singapore",
            chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a time"),
        );
        base.last_run = None;
        let mut json = serde_json::to_value(&base).expect("serialize");
        json["report"] = serde_json::json!({"date_type": "day", "week_start": "monday"});
        let any: AnyState = serde_json::from_value(json.clone()).expect("deserialize");
        let text = serde_json::to_string(&any).expect("serialize again");
        let back: serde_json::Value = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, json);
        assert_eq!(text.matches("\"watermark\"").count(), 1, "{text}");
    }

    #[test]
    fn the_reserve_leaves_most_of_the_grace_to_the_runs() {
        assert_eq!(
            release_reserve(Duration::from_secs(25)),
            Duration::from_secs(3)
        );
        assert_eq!(
            release_reserve(Duration::from_secs(5)),
            Duration::from_secs(1)
        );
    }
}
