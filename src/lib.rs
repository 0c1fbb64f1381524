//! sobot-sync: keeps a data warehouse in sync with a Sobot call centre.
//!
//! Four layers, each using only itself and the layers below (`.ci/layers.py` checks it):
//! `core` (pure: definitions, records, schemas, conversion, windows) <- `io` (the API,
//! the object store, Parquet, state, metrics) <- `engine` (runs pipelines) <- `app` (the
//! command line and its commands). `sim` is the API simulator the tests and the demo run
//! against.
//!
//! One window's path, and the only direction data flows: `core::pipeline` (definitions)
//! -> `core::plan` (windows) -> `engine::extract` (paginated API reads, edges,
//! de-duplication, completeness) -> `core::convert` (JSON to Arrow) -> `io::sink` (Parquet
//! on an object store) -> `io::state` (commit the window). `engine::run` drives it.

pub mod app;
pub mod core;
pub mod engine;
pub mod io;
pub mod sim;
