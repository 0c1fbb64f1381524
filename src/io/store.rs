//! Where bytes live: turns a warehouse or state URL (`file://./dir`, `file:///abs`,
//! `s3://bucket/prefix`) into an object store plus a key prefix.
//!
//! Everything above this module speaks in keys relative to a [`Location`], so the sink and
//! the state store behave the same on a laptop directory and on an S3 bucket.

use crate::core::secret::Secret;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use std::path::PathBuf;
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

/// Region used when none is configured: S3-compatible servers (MinIO, Ceph) accept it, and
/// AWS redirects nothing because requests are signed for the bucket's region anyway.
const DEFAULT_REGION: &str = "us-east-1";

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
    local: Option<PathBuf>,
    /// issue 4 (multi-tenant): a Hive partition folder (`tenant=acme`) placed under the
    /// first segment (the table) of every relative key; see [`Location::with_table_partition`].
    table_partition: Option<String>,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location").field("url", &self.url).finish()
    }
}

impl Location {
    /// Opens the store a URL names. `s3://` stores have conditional put switched on, because
    /// the state store's exclusivity rests on `PutMode::Create` being honoured.
    pub fn parse(url: &str, s3: &S3Options) -> Result<Self, StoreError> {
        let shown = redact_userinfo(url);
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: shown.clone(),
            reason: reason.to_string(),
        };
        if let Some(rest) = url.strip_prefix("file://") {
            open_local(url, rest, &shown).map_err(|e| match e {
                LocalError::Invalid(reason) => invalid(&reason),
                LocalError::Store(err) => err,
            })
        } else if url.starts_with("s3://") {
            open_s3(url, s3, &shown)
        } else if url.contains("://") {
            Err(invalid(
                "unsupported scheme: use file:///abs/path, file://./rel/dir or s3://bucket/prefix",
            ))
        } else {
            Err(invalid(
                "no scheme: use file:///abs/path, file://./rel/dir or s3://bucket/prefix",
            ))
        }
    }

    /// A location over an existing store (tests, in-memory stores).
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Self {
        Self {
            store,
            prefix: Path::from(prefix),
            url: redact_userinfo(url),
            local: None,
            table_partition: None,
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key prefix every key of this location starts with (empty at the store root).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The full key of `rel` ("talks/dt=2024-03-01/x.parquet") under this location's prefix.
    /// Empty segments (leading, trailing or doubled `/`) are ignored.
    pub fn path(&self, rel: &str) -> Path {
        let mut path = self.prefix.clone();
        path.extend(self.scoped(rel).split('/'));
        path
    }

    /// The prefix to hand to `list`/`list_with_delimiter` for `rel`: `None` at the store
    /// root, because some stores treat an empty prefix differently from no prefix.
    pub fn list_prefix(&self, rel: &str) -> Option<Path> {
        let path = self.path(rel);
        (!path.as_ref().is_empty()).then_some(path)
    }

    /// The key of `path` relative to this location (`None` if it lies outside it).
    pub fn relative(&self, path: &Path) -> Option<String> {
        let parts = path.prefix_match(&self.prefix)?;
        let mut rel: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
        if let Some(part) = &self.table_partition
            && rel.len() > 1
        {
            // Another tenant's key, or one outside any tenant, is not under this location.
            if rel[1] != *part {
                return None;
            }
            rel.remove(1);
        }
        Some(rel.join("/"))
    }

    /// A location for a sub-folder, sharing the same store (`<warehouse>/_state`).
    pub fn join(&self, rel: &str) -> Location {
        let segments: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        let mut url = self.url.trim_end_matches('/').to_string();
        for segment in &segments {
            url.push('/');
            url.push_str(segment);
        }
        Location {
            store: Arc::clone(&self.store),
            prefix: self.path(rel),
            url,
            local: self
                .local
                .as_ref()
                .map(|dir| segments.iter().fold(dir.clone(), |d, s| d.join(s))),
            table_partition: None,
        }
    }

    /// The URL for messages and DuckDB queries; never contains credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of `rel` under this location, for error messages naming one object.
    pub fn display(&self, rel: &str) -> String {
        let scoped = self.scoped(rel);
        let rel = scoped.trim_matches('/');
        if rel.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{rel}", self.url.trim_end_matches('/'))
        }
    }

    /// For `file://` locations, the local directory (DuckDB queries in demo output).
    pub fn local_dir(&self) -> Option<PathBuf> {
        self.local.clone()
    }

    /// issue 4 (multi-tenant): the same store and prefix, with `partition` (e.g.
    /// `tenant=acme`) placed between the table and the rest of every relative key:
    /// `talks/dt=2024-03-01/x.parquet` is stored as `talks/tenant=acme/dt=2024-03-01/x.parquet`.
    ///
    /// Why here: every table path of the sink, the merge listings, snapshots, recordings
    /// and the report readers is a key relative to the warehouse location, built and read
    /// back only through [`Location::path`] and [`Location::relative`]. Scoping the
    /// location scopes all of them at once, and code above keeps speaking of
    /// `<table>/dt=...` whether tenants are configured or not. [`Location::relative`]
    /// strips the partition again and refuses keys of other partitions, so a listing never
    /// mixes tenants. [`Location::local_dir`] stays the root of the store.
    pub fn with_table_partition(&self, partition: &str) -> Location {
        Location {
            table_partition: Some(partition.to_string()),
            ..self.clone()
        }
    }

    /// The relative key as stored: `rel` with the table partition (if any) inserted after
    /// its first segment. Relative to this location's URL, e.g. for a column naming an
    /// object.
    pub fn scoped<'a>(&self, rel: &'a str) -> std::borrow::Cow<'a, str> {
        let Some(part) = &self.table_partition else {
            return rel.into();
        };
        let mut segments = rel.split('/').filter(|s| !s.is_empty());
        let Some(table) = segments.next() else {
            return rel.into();
        };
        let mut out = format!("{table}/{part}");
        for s in segments {
            out.push('/');
            out.push_str(s);
        }
        out.into()
    }

    /// For `file://` locations, the local file of `rel` (with the table partition).
    pub fn local_path(&self, rel: &str) -> Option<PathBuf> {
        let root = self.local.as_ref()?;
        Some(
            self.scoped(rel)
                .split('/')
                .filter(|s| !s.is_empty())
                .fold(root.clone(), |d, s| d.join(s)),
        )
    }
}

enum LocalError {
    Invalid(String),
    Store(StoreError),
}

/// `file:///abs` is absolute (percent-decoded like any URL); `file://./rel` and
/// `file://rel` are relative to the current directory, which the URL crate would misread
/// as a host name, so they are taken literally.
fn open_local(url: &str, rest: &str, shown: &str) -> Result<Location, LocalError> {
    if rest.is_empty() {
        return Err(LocalError::Invalid("no path after file://".into()));
    }
    if rest.contains(['?', '#']) {
        return Err(LocalError::Invalid(
            "query strings and fragments are not allowed in a storage path".into(),
        ));
    }
    let dir: PathBuf = if rest.starts_with('/') {
        let parsed = url::Url::parse(url)
            .map_err(|e| LocalError::Invalid(format!("not a valid file URL: {e}")))?;
        parsed
            .to_file_path()
            .map_err(|()| LocalError::Invalid("not a local absolute path".into()))?
    } else {
        if rest.contains('@') {
            return Err(LocalError::Invalid(
                "user information is not allowed in a file URL".into(),
            ));
        }
        let cwd = std::env::current_dir().map_err(|e| {
            LocalError::Invalid(format!(
                "cannot resolve a relative path: no current directory ({e})"
            ))
        })?;
        cwd.join(rest)
    };
    let open_err = |source: object_store::Error| {
        LocalError::Store(StoreError::Open {
            url: shown.to_string(),
            source,
        })
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        open_err(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: format!("cannot create directory {}: {e}", dir.display()).into(),
        })
    })?;
    let canonical = std::fs::canonicalize(&dir).map_err(|e| {
        open_err(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: format!("cannot resolve directory {}: {e}", dir.display()).into(),
        })
    })?;
    // fsync: a window file must be on disk before the state commit that counts it, or a
    // power loss could leave committed state pointing past an empty file.
    let fs = LocalFileSystem::new_with_prefix(&canonical)
        .map_err(open_err)?
        .with_fsync(true);
    let display = url::Url::from_directory_path(&canonical)
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .unwrap_or_else(|()| format!("file://{}", canonical.display()));
    Ok(Location {
        store: Arc::new(fs),
        prefix: Path::default(),
        url: display,
        local: Some(canonical),
        table_partition: None,
    })
}

fn open_s3(url: &str, opts: &S3Options, shown: &str) -> Result<Location, StoreError> {
    let invalid = |reason: String| StoreError::InvalidUrl {
        url: shown.to_string(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(format!("not a valid URL: {e}")))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(
            "query strings and fragments are not allowed in a storage URL".into(),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        tracing::warn!(
            url = shown,
            "credentials in a storage URL are ignored; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        );
    }
    let bucket = parsed.host_str().unwrap_or_default();
    if bucket.is_empty() {
        return Err(invalid(
            "empty bucket name (expected s3://bucket/prefix)".into(),
        ));
    }
    if !valid_bucket(bucket) {
        return Err(invalid(format!(
            "bucket name {bucket:?} is not valid: 3-63 characters of a-z, 0-9, '.' and '-'"
        )));
    }
    let prefix =
        Path::from_url_path(parsed.path()).map_err(|e| invalid(format!("bad key prefix: {e}")))?;

    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(opts.region.as_deref().unwrap_or(DEFAULT_REGION))
        .with_allow_http(opts.allow_http)
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    if let Some(endpoint) = &opts.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    if let Some(key) = &opts.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &opts.secret_access_key {
        builder = builder.with_secret_access_key(secret.expose());
    }
    let s3 = builder.build().map_err(|source| StoreError::Open {
        url: shown.to_string(),
        source,
    })?;
    let display = if prefix.as_ref().is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{prefix}")
    };
    Ok(Location {
        store: Arc::new(s3),
        prefix,
        url: display,
        local: None,
        table_partition: None,
    })
}

fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !name.starts_with(['.', '-'])
        && !name.ends_with(['.', '-'])
}

/// Drops `user:password@` from a URL's authority so the URL can be shown in messages;
/// works on strings the URL parser rejects too, since those end up in error messages.
fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => format!("{}{}", &url[..authority_start], &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_even_in_unparseable_urls() {
        assert_eq!(redact_userinfo("s3://k:s@bucket/p"), "s3://bucket/p");
        assert_eq!(redact_userinfo("gs://k:s@b"), "gs://b");
        assert_eq!(redact_userinfo("s3://bucket/a@b"), "s3://bucket/a@b");
        assert_eq!(redact_userinfo("plain"), "plain");
    }

    #[test]
    fn a_table_partition_goes_under_the_table_and_back() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let root = Location::from_store(store, "wh", "s3://b/wh");
        let acme = root.with_table_partition("tenant=acme");
        let rel = "talks/dt=2024-03-01/x.parquet";
        let key = acme.path(rel);
        assert_eq!(key.as_ref(), "wh/talks/tenant=acme/dt=2024-03-01/x.parquet");
        assert_eq!(acme.relative(&key).as_deref(), Some(rel));
        assert_eq!(
            acme.display(rel),
            "s3://b/wh/talks/tenant=acme/dt=2024-03-01/x.parquet"
        );
        assert_eq!(acme.path("talks").as_ref(), "wh/talks/tenant=acme");
        assert_eq!(acme.path("").as_ref(), "wh");
        // Another tenant's keys and untenanted keys lie outside.
        let other = root.with_table_partition("tenant=globex").path(rel);
        assert_eq!(acme.relative(&other), None);
        assert_eq!(acme.relative(&root.path(rel)), None);
        // Without a partition nothing changes.
        assert_eq!(root.path(rel).as_ref(), "wh/talks/dt=2024-03-01/x.parquet");
        assert_eq!(
            root.relative(&other).as_deref(),
            Some("talks/tenant=globex/dt=2024-03-01/x.parquet")
        );
    }

    #[test]
    fn bucket_names() {
        assert!(valid_bucket("warehouse"));
        assert!(valid_bucket("my.bucket-1"));
        assert!(!valid_bucket("ab"));
        assert!(!valid_bucket("Upper"));
        assert!(!valid_bucket("under_score"));
        assert!(!valid_bucket("-dash"));
    }
}
