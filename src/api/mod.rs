//! The Sobot Data Service client: one per tenant, shared by every pipeline so that the
//! rate cap and the concurrency limit hold for all requests together.
//!
//! OWNER: API-client helper. Stub signatures; the implementation replaces the bodies
//! (and may add submodules: auth, envelope, retry).

use crate::secret::Secret;
use serde_json::Value;
use std::time::Duration;

/// How the client proves who it is.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Company app id and secret: the client obtains and refreshes the token itself.
    Company { app_id: String, app_secret: Secret },
    /// A ready access token.
    Token(Secret),
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// API root, e.g. `https://sg.sobot.io`; endpoint paths are appended.
    pub base_url: String,
    pub credentials: Credentials,
    /// Requests per second for this tenant, every endpoint together.
    pub max_rps: u32,
    /// Requests in flight for this tenant.
    pub max_concurrency: usize,
    /// Sent as the `timezoneid` header.
    pub timezone: String,
    /// Whole-request timeout (connect + headers + body).
    pub request_timeout: Duration,
    /// Attempts after the first one for a transient failure.
    pub max_retries: usize,
    /// First backoff delay; doubles per attempt, with jitter, up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication failed at {endpoint}: {reason}")]
    Auth { endpoint: String, reason: String },
    #[error("{endpoint} answered code {code}: {message}")]
    Envelope {
        endpoint: String,
        code: i64,
        message: String,
    },
    #[error("{endpoint} answered HTTP {status}")]
    Http { endpoint: String, status: u16 },
    #[error("request to {endpoint} failed: {detail}")]
    Transport { endpoint: String, detail: String },
    #[error("{endpoint} sent a body that cannot be read: {detail}")]
    Decode { endpoint: String, detail: String },
    #[error("{endpoint} still failing after {attempts} attempts: {last}")]
    Exhausted {
        endpoint: String,
        attempts: usize,
        last: Box<ApiError>,
    },
    #[error("invalid API settings: {0}")]
    Config(String),
}

/// Counters for status output and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
    pub token_refreshes: u64,
}

#[derive(Clone, Debug)]
pub struct ApiClient {
    _private: (),
}

impl ApiClient {
    pub fn new(settings: ApiSettings) -> Result<Self, ApiError> {
        let _ = settings;
        todo!("api helper")
    }

    /// POSTs a JSON body to `path` and returns the envelope's `data`.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        let _ = (path, body);
        todo!("api helper")
    }

    /// GETs `path` with query parameters and returns the envelope's `data`.
    pub async fn get(&self, path: &str, query: &[(String, String)]) -> Result<Value, ApiError> {
        let _ = (path, query);
        todo!("api helper")
    }

    /// Proves the credentials: obtains a token (company credentials) or does nothing
    /// for a static token. `check` follows it with one cheap data request.
    pub async fn authenticate(&self) -> Result<(), ApiError> {
        todo!("api helper")
    }

    pub fn stats(&self) -> ClientStats {
        todo!("api helper")
    }
}
