//! The pure core: definitions, records, schemas, conversion to Arrow, windows, report
//! periods and the push wire format. Nothing here does I/O or knows the layers above;
//! what they need from it (errors, definitions) is defined here and handed up.

pub mod clock;
pub mod convert;
pub mod error;
pub mod layout;
pub mod parents;
pub mod pipeline;
pub mod plan;
pub mod privacy;
pub mod push;
pub mod record;
pub mod render;
pub mod report;
pub mod schedule;
pub mod schema;
pub mod secret;
pub mod snapshot_definition;
pub mod timeutil;
