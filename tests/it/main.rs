//! One integration-test binary (linking arrow and parquet once, not once per file).

mod support;

mod api_client;
mod cli;
mod e2e;
mod obs;
mod reports_e2e;
mod sim;
mod sim_reports;
mod snapshots_e2e;
mod storage;
