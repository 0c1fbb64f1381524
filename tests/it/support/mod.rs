//! Shared fixtures: an in-process S3 server, simulator helpers, temporary warehouses.

pub mod s3;
