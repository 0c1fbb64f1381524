//! Shared fixtures: an in-process S3 server, simulator helpers, temporary warehouses.

pub mod both;
pub mod cli_proc;
pub mod parquet_file;
pub mod rig;
pub mod s3;
pub mod sim_http;
pub mod table;
pub mod truth;
