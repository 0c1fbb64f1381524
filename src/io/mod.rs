//! Talks to the world: the Sobot API client, the object store, Parquet files, the state
//! store and the observability recorders. Uses `core`; knows nothing of runs.

pub mod api;
pub mod fs;
pub mod mem;
pub mod obs;
pub mod signal;
pub mod sink;
pub mod state;
pub mod store;
