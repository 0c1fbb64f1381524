//! One integration-test binary (linking arrow and parquet once, not once per file).

mod support;

mod api_client;
mod cli;
mod compact;
mod daemon;
mod deploy;
mod doc_fixtures;
mod e2e;
mod explicit_settings; // issue 13
mod media;
mod obs;
mod privacy;
mod receive;
mod recovery; // issue 13
mod reports_e2e;
mod shard;
mod sim;
mod sim_reports;
mod snapshots_e2e;
mod storage;
mod tenants;
mod watch_metrics;
mod wire;
