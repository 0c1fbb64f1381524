//! Pipeline state: what is committed, kept in the object store next to the data.

pub mod backfills;
pub mod holder;
pub mod model;
pub mod rebase;
pub mod store;
