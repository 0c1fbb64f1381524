//! Binding, routing and the handle tests hold on a running simulator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::config::{Faults, SimConfig};
use super::dataset::Dataset;
use super::state::Shared;
use super::stats::SimStats;
use super::{control, gate, handlers, metrics, plans, reports, stream};

/// How long `shutdown` waits for open connections before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running simulator. Dropping it stops the server too; `shutdown` also waits for it.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let data = Router::new()
        .route(
            "/callservice/tm/tm-reports/maincdrs/_search",
            post(handlers::talks),
        )
        .route(
            "/callservice/tm/tm-reports/maincdrs/{call_id}/partycdrs",
            get(handlers::parties),
        )
        .route(
            "/callservice/tm/tm-reports/cdrs/_search",
            post(handlers::call_with_parties),
        )
        .route(
            "/callservice/tm/tm-reports/agent-histories/_search",
            post(handlers::agent_histories),
        )
        .route(
            "/callservice/v6/cc-audios/recordings/{call_id}",
            get(handlers::recording),
        )
        .route(
            "/callservice/tm/tm-reports/gateway-number-table/_search",
            post(reports::gateway_numbers),
        )
        .route(
            "/callservice/tm/tm-reports/agent-table/_search",
            post(reports::agents),
        )
        .route(
            "/callservice/tm/tm-reports/depart-table/_search",
            post(reports::departments),
        )
        .route(
            "/callservice/tm/tm-reports/gateway_number/check_plan",
            get(plans::check_plan),
        )
        .route(
            "/callservice/v6/webmsg/monitoring/agents-metrics",
            get(metrics::agents_metrics),
        )
        .route(
            "/callservice/v6/webmsg/monitoring/_watch/agents-metrics",
            get(stream::watch_agents_metrics),
        )
        .route_layer(from_fn_with_state(Arc::clone(&shared), gate::gate));
    Router::new()
        .route("/tokens/company", post(control::token))
        .route("/_sim/stats", get(control::stats))
        .route(
            "/_sim/faults",
            get(control::faults).put(control::set_faults),
        )
        .route("/_sim/now", axum::routing::put(control::set_now))
        .route(
            "/_sim/restate",
            get(control::restatements).put(control::restate),
        )
        .route(
            "/_sim/check-plan",
            axum::routing::put(control::set_check_plan),
        )
        .merge(data)
        .with_state(shared)
}

/// Binds `addr` (port 0 picks a free port) and serves the simulator on the current tokio
/// runtime in a spawned task.
pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(config, &url_for(addr)));
    let app = router(Arc::clone(&shared));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serving = axum::serve(listener, app).with_graceful_shutdown(async {
            // A dropped handle stops the server just like an explicit shutdown.
            let _ = stopped.await;
        });
        if let Err(e) = serving.await {
            tracing::error!(error = %e, "simulator server stopped with an error");
        }
    });
    Ok(SimHandle {
        addr,
        shared,
        stop: Some(stop),
        task,
    })
}

/// `http://IP:PORT`, with a wildcard bind address replaced by loopback so it is dialable.
fn url_for(addr: SocketAddr) -> String {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{a}")
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the API root to append endpoint paths to.
    pub fn base_url(&self) -> String {
        url_for(self.addr)
    }

    /// Fixes the simulated now (`None` follows the real clock); takes effect on the next request.
    pub fn set_now(&self, now: Option<DateTime<Utc>>) {
        self.shared.set_now(now);
    }

    /// Runs the simulated clock from `from` at `speed` simulated seconds per real second.
    pub fn run_clock(&self, from: DateTime<Utc>, speed: f64) {
        self.shared.run_clock(from, speed);
    }

    /// The simulated now as the server sees it.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.now()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats.snapshot()
    }

    pub fn dataset(&self) -> Dataset {
        self.shared.dataset.clone()
    }

    /// Restates local day `date` (the simulator's zone): from the next request on, the
    /// reports of that day, and of the weeks and months holding it, count `pairs` extra
    /// answered talk pairs (see `Dataset::restate`). 0 withdraws the restatement.
    /// Returns the pairs applied (at most 100).
    pub fn restate(&self, date: NaiveDate, pairs: u32) -> u32 {
        self.shared.dataset.restate(date, pairs)
    }

    /// Serves `check_plan` with `data` as one plan object (`true`) or a list (`false`).
    pub fn set_check_plan_single_object(&self, single: bool) {
        self.shared
            .dataset
            .report_state()
            .set_check_plan_single(single);
    }

    /// Stops accepting connections and waits (briefly) for open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = &mut self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut *task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
