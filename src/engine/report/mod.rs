//! The report pipelines' driver, built on `core::report`: [`run`] fetches, settles and
//! commits report periods; [`warehouse`] reads report tables back.

pub mod counts;
mod fetch;
pub mod run;
pub mod warehouse;
