//! One integration-test binary (linking arrow and parquet once, not once per file).

mod support;

mod api_client;
mod cli;
mod daemon;
mod e2e;
mod reports_e2e;
mod sim;
mod sim_reports;
mod snapshots_e2e;
mod storage;
