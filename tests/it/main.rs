//! One integration-test binary (linking arrow and parquet once, not once per file).

mod support;

mod api_client;
mod sim;
mod storage;
mod e2e;
mod cli;
