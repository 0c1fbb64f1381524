//! Runs pipelines: the run contract and its drivers (search and children windows,
//! reports, snapshots, recordings), the metrics stream, the push receiver, compaction and
//! sharded backfills. Uses `core` and `io`; handed its settings by `app`.

pub mod abort;
pub mod children;
pub mod compact;
pub mod estimate;
pub mod extract;
pub mod observe;
pub mod receive;
pub mod report;
pub mod run;
pub mod search;
pub mod settings;
pub mod shard;
pub mod snapshots;
pub mod watch_metrics;
