//! Versioned JSON state per pipeline and a lock with an expiry, both built only on
//! `PutMode::Create` so that the local filesystem and S3 give the same guarantees.
//!
//! Nothing is ever overwritten. State is a sequence of immutable versions
//! (`<pipeline>/state/<version:020>.json`) and the lock a sequence of immutable generations
//! (`<pipeline>/lock/<gen:020>.json`); whoever creates number n+1 first wins, every other
//! writer gets `AlreadyExists`. The zero-padded names sort lexically in numeric order.
//!
//! The parts only import each other downward (`error` <- `sequence` <- `versions`,
//! `lock` <- `unlock`, `range`); this file only re-exports them.

mod error;
mod lock;
mod range;
mod sequence;
#[cfg(test)]
mod testing;
mod unlock;
mod versions;

pub use error::StateError;
pub use lock::{Lock, LockView};
pub use sequence::StateStore;
pub use unlock::Unlock;
pub use versions::Versioned;
