//! Statistical reports: indicator catalogues, report periods, requests and responses.
//!
//! Everything here is pure and synchronous (no HTTP, no object store), so the report
//! pipelines' runner (`engine::report`), `check`, `status` and `reconcile` share one
//! tested core:
//!
//! - [`indicators`]: which indicators each report family has (`schemas/indicators`).
//! - [`spec`]: the `[report]` table of a pipeline file, validated, and its column list.
//! - [`period`]: the period grid on the local wall clock (DST rules) and `result_date`.
//! - [`request`]: request bodies and endpoint paths, `check_plan`.
//! - [`response`]: liberal readers of report pages and indicator display schemes.
//! - [`reconcile`]: `amount` against rows, the relay number report against talks.
//! - [`settle`]: which periods are final and which are re-fetched.
//! - [`definition`]: `kind = "report"` pipeline files; [`table`]: the table schema and rows.

pub mod definition;
pub mod indicators;
pub mod period;
pub mod reconcile;
pub mod request;
pub mod response;
pub mod settle;
pub mod spec;
pub mod table;
