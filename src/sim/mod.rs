//! The built-in Sobot API simulator (`sobot-sync sim`), used by `demo`, the tests and
//! the benchmarks.
//!
//! OWNER: simulator helper. Stub signatures; the implementation replaces the bodies.
