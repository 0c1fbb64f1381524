//! Shared fixtures: an in-process S3 server, simulator helpers, temporary warehouses.

pub mod rig;
pub mod s3;
pub mod table;
pub mod truth;
