//! Backfill benchmark (OWNER: bench helper): records/s, requests/s and peak memory.
fn main() {}
