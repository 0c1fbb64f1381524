//! The shell: the command line, settings and tenants, one file per command, the daemon,
//! the demo, and the health and metrics HTTP endpoints.

pub mod backfill;
pub mod check;
pub mod cli;
pub mod compact;
pub mod daemon;
pub mod ddl;
pub mod demo;
pub mod dry_run;
pub mod health;
pub mod http;
pub mod receive;
pub mod reconcile_cmd;
pub mod run;
pub mod settings;
pub mod setup;
pub mod shard;
pub mod status;
pub mod tenant;
pub mod unlock;
pub mod watch_metrics;
