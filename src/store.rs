//! Where bytes live: turns a warehouse or state URL (`file://./dir`, `file:///abs`,
//! `s3://bucket/prefix`) into an object store plus a key prefix.
//!
//! OWNER: storage helper. Stub signatures; the implementation replaces the bodies.

use crate::secret::Secret;
use object_store::{ObjectStore, path::Path};
use std::sync::Arc;

/// S3-compatible storage settings, from the standard AWS variables.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub region: Option<String>,
    pub allow_http: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid storage URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot open storage {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// An object store and the prefix inside it that one URL names.
#[derive(Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location").field("url", &self.url).finish()
    }
}

impl Location {
    /// Opens the store a URL names. `s3://` stores have conditional put switched on.
    pub fn parse(url: &str, s3: &S3Options) -> Result<Self, StoreError> {
        let _ = (url, s3);
        todo!("storage helper")
    }

    /// A location over an existing store (tests, in-memory stores).
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Self {
        Self {
            store,
            prefix: Path::from(prefix),
            url: url.to_string(),
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The full key of `rel` ("talks/dt=2024-03-01/x.parquet") under this location's prefix.
    pub fn path(&self, rel: &str) -> Path {
        let _ = rel;
        todo!("storage helper")
    }

    /// A location for a sub-folder, sharing the same store (`<warehouse>/_state`).
    pub fn join(&self, rel: &str) -> Location {
        let _ = rel;
        todo!("storage helper")
    }

    /// The URL for messages and DuckDB queries; never contains credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// For `file://` locations, the local directory (DuckDB queries in demo output).
    pub fn local_dir(&self) -> Option<std::path::PathBuf> {
        todo!("storage helper")
    }
}
