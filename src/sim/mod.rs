//! The built-in Sobot API simulator (`sobot-sync sim`), used by `demo`, the tests and
//! the benchmarks.
//!
//! A seeded, deterministic call centre served over HTTP: the token endpoint, the talk,
//! party and agent-history searches of the API document, and `/_sim/*` controls. Data
//! is generated lazily per hour slot and cached briefly, so serving months of history
//! keeps memory flat. Faults (429, 5xx, envelope errors, truncated or slow bodies,
//! expiring tokens, late records, a permanently broken window, short pages, a server
//! rate limit) are switched on per instance, and `Dataset` gives tests the ground truth.
//!
//! Reports and monitoring (all behind the same gate as the data searches):
//! - `POST .../tm-reports/{gateway-number-table,agent-table,depart-table}/_search`: the
//!   Statistical Reports, aggregated per period from the same talks, parties and agent
//!   histories (`reports/mod.rs` says how each indicator is derived); `Dataset::report`
//!   computes the same rows for tests.
//! - `GET .../tm-reports/gateway_number/check_plan`: indicator display plans, a list or
//!   (with `SimConfig::check_plan_single_object`) one object; `Dataset::indicator_plans`.
//! - `GET .../webmsg/monitoring/agents-metrics`: agents' live state and today's counts;
//!   `Dataset::agent_metrics`.
//! - `GET .../webmsg/monitoring/_watch/agents-metrics` (issue 5): the same state as
//!   server-sent events, a full message then one incremental message per tick
//!   (`stream.rs`); `SimHandle::run_clock` lets the simulated clock run faster than real
//!   time.
//!
//! Controls besides `/_sim/{stats,faults,now}`:
//! - `PUT /_sim/restate` `{"date": "2024-03-02", "pairs": 1}` (also
//!   `SimHandle::restate`): the reports of that local day, and of the weeks and months
//!   holding it, count `pairs` extra answered talk pairs from then on, so a client can
//!   check that re-fetching a period replaces it; `pairs: 0` withdraws it, `GET` lists
//!   the restated days. See `Dataset::restate`.
//! - `PUT /_sim/check-plan` `{"single_object": true}` (also
//!   `SimHandle::set_check_plan_single_object`): `check_plan`'s `data` shape.

mod auth;
mod cache;
mod cli;
mod config;
mod control;
mod dataset;
mod facts;
mod gate;
mod generate;
mod handlers;
mod localtime;
mod metrics;
mod model;
mod periods;
mod plans;
mod protocol;
pub mod push;
mod reports;
mod rng;
mod server;
mod state;
mod stats;
mod stream;

pub use cli::{SimArgs, serve};
pub use config::{Dialect, Faults, SimConfig};
pub use dataset::Dataset;
pub use reports::{ReportQuery, ReportTable};
pub use server::{SimHandle, start};
pub use stats::SimStats;

/// `md5(appId + currentTime + responseType + appSecret)` in lower-case hex: the token
/// request's signature, exposed so tests and tools sign exactly as the server checks.
pub fn token_sign(
    app_id: &str,
    current_time: &str,
    response_type: &str,
    app_secret: &str,
) -> String {
    auth::sign(app_id, current_time, response_type, app_secret)
}
