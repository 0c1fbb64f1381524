//! Observability recorders: what an operator's tools read from a running sobot-sync.
//!
//! - [`logging`]: human lines on a terminal, JSON lines for a log stack
//!   (`SOBOT_SYNC_LOG_FORMAT`), with the `run` and `window` spans of the engine on each line;
//! - [`metrics`]: Prometheus series recorded where things happen (the API transport,
//!   the run drivers) through the `metrics` facade; served by `app::http`;
//! - [`process`]: the standard `process_*` series (CPU, memory, descriptors, start time);
//! - [`progress`]: the `backfill` progress bar on a terminal.

pub mod logging;
pub mod metrics;
pub mod process;
pub mod progress;
