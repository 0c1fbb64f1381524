//! sobot-sync: keeps a data warehouse in sync with a Sobot call centre.
//!
//! One window's path through the crate, and the only direction data flows:
//! `pipeline` (definitions) -> `plan` (windows) -> `extract` (paginated API reads,
//! edges, de-duplication, completeness) -> `convert` (JSON to Arrow) -> `sink`
//! (Parquet on an object store) -> `state` (commit the window). `runner` drives it.

pub mod api;
pub mod check; // issue 13: `check` probes every endpoint
pub mod cli;
pub mod clock;
pub mod compact;
pub mod convert;
pub mod daemon;
pub mod ddl;
pub mod demo;
pub mod extract;
pub mod mem;
pub mod obs;
pub mod pipeline;
pub mod plan;
pub mod privacy;
pub mod receive;
pub mod record;
pub mod report;
pub mod runner;
pub mod schema;
pub mod secret;
pub mod settings;
pub mod shard;
pub mod sim;
pub mod sink;
pub mod snapshots;
pub mod state;
pub mod status;
pub mod store;
pub mod tenant;
pub mod timeutil;
pub mod unlock; // issue 13
pub mod watch_metrics; // issue 5 (M)
