//! `GET /metrics` (Prometheus text) and `GET /healthz` on `SOBOT_SYNC_HTTP_ADDR`.
//!
//! [`serve`] binds first and then serves on a spawned task, so a caller (the daemon,
//! `run`, `backfill`) learns at once whether the address is usable and can stop the
//! server by aborting the returned task. Both endpoints read committed state at each
//! request: the lag gauges are right at every scrape, not only at the end of a run, and
//! a replica that runs nothing still reports on the pipelines it shares.

use super::health::{self, Health};
use crate::core::clock::SharedClock;
use crate::core::pipeline::Catalog;
use crate::io::obs::metrics;
use crate::io::state::store::StateStore;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the endpoints read: the pipelines, their state, and the clock that says "now"
/// (the command's, so `--now` applies to health as it does to runs).
#[derive(Clone)]
pub struct HttpContext {
    pub catalog: Catalog,
    pub state: StateStore,
    pub clock: SharedClock,
    /// Further tenants' pipelines (issue 4, multi-tenant): the first tenant is in the
    /// fields above; each one here is (tenant, its catalogue, its state).
    pub tenants: Vec<(String, Catalog, StateStore)>,
    /// The tenant of the fields above, when there are tenants.
    pub tenant: Option<String>,
}

impl HttpContext {
    pub fn from_engine(engine: &crate::engine::run::Engine) -> Self {
        Self {
            catalog: engine.catalog.clone(),
            state: engine.state.clone(),
            clock: engine.clock.clone(),
            tenants: Vec::new(),
            tenant: engine.settings.tenant.clone(),
        }
    }

    /// One server for every tenant's engine (the first one's clock).
    pub fn from_engines(engines: &[crate::engine::run::Engine]) -> Option<Self> {
        let (first, rest) = engines.split_first()?;
        let mut ctx = Self::from_engine(first);
        ctx.tenants = rest
            .iter()
            .map(|e| {
                let name = e.settings.tenant.clone().unwrap_or_default();
                (name, e.catalog.clone(), e.state.clone())
            })
            .collect();
        Some(ctx)
    }
}

/// A running server: the address it listens on (useful with port 0). Dropping it
/// stops the server; [`Server::join`] waits for it instead.
pub struct Server {
    pub addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Waits until the server stops (it only stops on an I/O error of the listener).
    pub async fn join(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves `/metrics` and `/healthz` for a command's engine when `SOBOT_SYNC_HTTP_ADDR`
/// is set (`run` and `backfill`, so a CronJob can be scraped while it works). An
/// address that cannot be bound is a configuration error naming the setting.
pub async fn serve_configured(
    addr: Option<std::net::SocketAddr>,
    engines: &[crate::engine::run::Engine],
) -> Result<Option<Server>, crate::core::error::CommandError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let Some(ctx) = HttpContext::from_engines(engines) else {
        return Ok(None);
    };
    serve(addr, ctx).await.map(Some).map_err(|e| {
        crate::core::error::CommandError::Config(format!("setting SOBOT_SYNC_HTTP_ADDR: {e}"))
    })
}

struct Shared {
    ctx: HttpContext,
    metrics: PrometheusHandle,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Metrics(String),
}

/// Installs the metrics recorder (once per process), binds `addr` and serves
/// `/metrics` and `/healthz` until the returned task is aborted or the runtime ends.
pub async fn serve(addr: SocketAddr, ctx: HttpContext) -> Result<Server, ServeError> {
    let handle = metrics::install().map_err(ServeError::Metrics)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let app = router(Arc::new(Shared {
        ctx,
        metrics: handle,
    }));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics and health server stopped");
        }
    });
    tracing::info!(addr = %bound, "serving /metrics and /healthz");
    Ok(Server {
        addr: bound,
        task: Some(task),
    })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .with_state(shared)
}

async fn evaluate(shared: &Shared) -> Health {
    let ctx = &shared.ctx;
    let now = ctx.clock.now();
    let mut health = health::evaluate(&ctx.catalog, &ctx.state, now).await;
    observe(ctx.tenant.as_deref(), &health);
    // Several tenants: each pipeline reported as `tenant/pipeline` (the metrics have
    // the tenant in a label of its own).
    if let Some(t) = &ctx.tenant {
        health.prefix(t);
    }
    for (tenant, catalog, state) in &ctx.tenants {
        let mut more = health::evaluate(catalog, state, now).await;
        observe(Some(tenant), &more);
        more.prefix(tenant);
        health.absorb(more);
    }
    health
}

/// Sets the health series of one tenant's pipelines (`health` not yet prefixed).
fn observe(tenant: Option<&str>, health: &Health) {
    for p in &health.pipelines {
        let labels = metrics::PipelineLabels::new(tenant, &p.pipeline);
        metrics::health(&labels, p.alert_lag_secs, p.healthy);
        if let Some(w) = p.watermark {
            metrics::watermark_lag(&labels, w, health.checked_at);
        }
        if let Some(at) = p.last_success {
            metrics::last_success(&labels, at);
        }
    }
}

async fn metrics_handler(State(shared): State<Arc<Shared>>) -> Response {
    evaluate(&shared).await;
    crate::io::obs::process::record();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

async fn healthz_handler(State(shared): State<Arc<Shared>>) -> Response {
    let health = evaluate(&shared).await;
    let code = if health.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(health)).into_response()
}
