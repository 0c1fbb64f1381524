//! The Sobot Data Service client: one per tenant, shared by every pipeline so that the
//! rate cap and the concurrency limit hold for all requests together.
//!
//! Each request passes, in order: the token (refreshed at half-life, single flight),
//! a concurrency slot, the rate limiter, one HTTP attempt, the envelope check; a
//! transient failure releases the slot and backs off before the next attempt.
//! Submodules: `auth` (tokens), `envelope` (code classification), `retry` (failure
//! classes, backoff, `Retry-After`), `limits` (rate cap and concurrency),
//! `transport` (one attempt), `wire` (the liberal reading: which answer forms are
//! accepted and what counts as success, issue 13).

mod auth;
mod counters;
mod envelope;
mod limits;
mod meter;
mod retry;
mod transport;
pub(crate) mod wire;

use crate::core::secret::Secret;
/// issue 13: the token endpoint, as `check` names it in its table.
pub(crate) use auth::TOKEN_ENDPOINT;
use auth::{Token, TokenSource};
pub use envelope::{Data, PageData};
pub use meter::{ApiUsage, EndpointUsage, RequestMeter};
use reqwest::Method;
use reqwest::header::HeaderValue;
use retry::{Class, Failure, RetryPolicy};
use serde_json::Value;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use transport::{Reply, Transport};

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
    /// Requests per second for this tenant, every endpoint together (token requests
    /// included). Starts are spaced evenly, `1 / max_rps` apart (burst 1): no
    /// half-open one-second interval sees more than `max_rps` of them.
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
    /// The tenant this client works for, when a config lists several: its API series
    /// carry a `tenant` label so one tenant's 429s are not read as another's.
    pub tenant: Option<String>,
    /// issue 13: `SOBOT_AGENT_TOKEN`, sent instead of the company credentials to the
    /// endpoints the API document asks an "Agent token" of ([`AuthScope::Agent`]).
    /// `None`: every endpoint gets the company credentials.
    pub agent_token: Option<Secret>,
}

/// issue 13: which credential a request goes out with. The API document names an
/// "Agent token" for the recordings, the work-status logs, the three reports and the
/// indicator plans, and a plain "API access credential" for everything else. A tenant
/// whose company token is refused there can set `SOBOT_AGENT_TOKEN`; one client serves
/// both scopes, so the rate cap and the concurrency limit hold for all requests together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScope {
    /// The company token (`SOBOT_APP_ID`/`SOBOT_APP_SECRET`) or `SOBOT_TOKEN`.
    Company,
    /// `SOBOT_AGENT_TOKEN` when set, else the company credentials.
    Agent,
}

/// The endpoints the API document asks an agent token of, as path endings (a pipeline
/// file may move an endpoint under another prefix). Recordings are matched by their
/// folder, `/cc-audios/recordings/`, since the id follows it.
const AGENT_TOKEN_ENDPOINTS: &[&str] = &[
    "/tm-reports/agent-histories/_search",
    "/tm-reports/gateway-number-table/_search",
    "/tm-reports/agent-table/_search",
    "/tm-reports/depart-table/_search",
    "/tm-reports/gateway_number/check_plan",
];

/// The document's recordings endpoint, `GET <base>/callservice/v6/cc-audios/recordings/{id}`.
pub const RECORDINGS_PATH: &str = "/callservice/v6/cc-audios/recordings";

impl AuthScope {
    /// The scope of a request to `path` (relative to the API root, or a URL's path).
    pub fn of(path: &str) -> AuthScope {
        let path = transport::endpoint_of(path);
        let path = path.trim_end_matches('/');
        if path.contains("/cc-audios/recordings/")
            || AGENT_TOKEN_ENDPOINTS.iter().any(|e| path.ends_with(e))
        {
            AuthScope::Agent
        } else {
            AuthScope::Company
        }
    }
}

/// issue 13: the recording id in a talk's `recordUrl`: its last path segment, trimmed.
/// The document's example is `"https:// record.soboten.com/recordings/<id> "` (a space
/// after the scheme and one at the end), so the value is not read as a URL at all: only
/// the text after the last `/` (before any `?` or `#`) counts. `None` when that is empty
/// or holds anything but letters, digits, `-`, `_` and `.` (or is `.`/`..`): such an id
/// cannot be put in a path safely, and guessing would fetch another call's recording.
pub fn recording_id(record_url: &str) -> Option<&str> {
    let text = record_url.trim();
    let text = text.split(['?', '#']).next().unwrap_or_default();
    let id = text.rsplit('/').next()?.trim();
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then_some(id)
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
    /// issue 13: a talk's `recordUrl` holds no recording id the client can use.
    #[error("recordUrl {url:?} holds no recording id (expected .../recordings/<id>)")]
    RecordUrl { url: String },
}

/// Counters for status output and tests.
///
/// `requests` counts HTTP attempts (token requests and retries included), `retries`
/// the backoff pauses taken, `rate_limited` the answers with HTTP 429 or envelope
/// code 429, `token_refreshes` every token obtained (the first one included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
    pub token_refreshes: u64,
}

/// A downloaded body (a call recording), with the server's `Content-Type`.
#[derive(Debug, Clone)]
pub struct Download {
    pub bytes: bytes::Bytes,
    pub content_type: Option<String>,
}

/// Above this the rate limiter's spacing would round to nothing.
const MAX_RPS_LIMIT: u32 = 1_000_000;

/// The tenant's client. Cloning is cheap and shares the token, the limits and the
/// statistics, which is what makes the rate cap hold across pipelines.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
    /// issue 15: the run this handle works for, whose budget its requests are counted on.
    meter: Option<RequestMeter>,
}

struct Inner {
    base_url: String,
    transport: Transport,
    auth: Auth,
    /// issue 13: `SOBOT_AGENT_TOKEN`, for [`AuthScope::Agent`] requests.
    agent: Option<Secret>,
}

enum Auth {
    /// `SOBOT_TOKEN`: sent as is, never refreshed.
    Static(Secret),
    Company {
        app_id: String,
        tokens: TokenSource,
    },
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.inner.auth {
            Auth::Static(_) => "static token".to_owned(),
            Auth::Company { app_id, .. } => format!("company app {app_id}"),
        };
        f.debug_struct("ApiClient")
            .field("base_url", &self.inner.base_url)
            .field("auth", &auth)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ApiSettings {
    /// Checks the settings without touching the network (the `check` command's
    /// first half). Messages name the setting.
    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = |m: String| Err(ApiError::Config(m));
        match url::Url::parse(&self.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
                if u.query().is_some() || u.fragment().is_some() {
                    return bad("SOBOT_BASE_URL must not carry a query or fragment".into());
                }
            }
            Ok(_) => {
                return bad("SOBOT_BASE_URL must be an http:// or https:// URL with a host".into());
            }
            Err(e) => return bad(format!("SOBOT_BASE_URL is not a URL: {e}")),
        }
        match &self.credentials {
            Credentials::Company { app_id, app_secret } => {
                if app_id.trim().is_empty() {
                    return bad("SOBOT_APP_ID is empty".into());
                }
                if app_secret.expose().is_empty() {
                    return bad("SOBOT_APP_SECRET is empty".into());
                }
            }
            Credentials::Token(token) => {
                if token.expose().trim().is_empty() {
                    return bad("SOBOT_TOKEN is empty".into());
                }
                if HeaderValue::from_str(token.expose().trim()).is_err() {
                    return bad(
                        "SOBOT_TOKEN contains characters not allowed in an HTTP header".into(),
                    );
                }
            }
        }
        if let Some(token) = &self.agent_token {
            if token.expose().trim().is_empty() {
                return bad("SOBOT_AGENT_TOKEN is empty".into());
            }
            if HeaderValue::from_str(token.expose().trim()).is_err() {
                return bad(
                    "SOBOT_AGENT_TOKEN contains characters not allowed in an HTTP header".into(),
                );
            }
        }
        if self.max_rps == 0 || self.max_rps > MAX_RPS_LIMIT {
            return bad(format!(
                "SOBOT_MAX_RPS must be between 1 and {MAX_RPS_LIMIT}, not {}",
                self.max_rps
            ));
        }
        if self.max_concurrency == 0 {
            return bad("SOBOT_MAX_CONCURRENCY must be at least 1".into());
        }
        if HeaderValue::from_str(&self.timezone).is_err() || self.timezone.trim().is_empty() {
            return bad(format!(
                "SOBOT_TIMEZONE {:?} cannot be sent as a header",
                self.timezone
            ));
        }
        if self.request_timeout.is_zero() {
            return bad("the request timeout must be longer than zero".into());
        }
        if self.min_backoff > self.max_backoff {
            return bad(format!(
                "the minimum backoff ({:?}) exceeds the maximum backoff ({:?})",
                self.min_backoff, self.max_backoff
            ));
        }
        Ok(())
    }
}

impl ApiClient {
    pub fn new(settings: ApiSettings) -> Result<Self, ApiError> {
        settings.validate()?;
        let max_rps = NonZeroU32::new(settings.max_rps)
            .ok_or_else(|| ApiError::Config("SOBOT_MAX_RPS must be at least 1".into()))?;
        let timezone = HeaderValue::from_str(settings.timezone.trim())
            .map_err(|_| ApiError::Config("SOBOT_TIMEZONE cannot be sent as a header".into()))?;
        let base_url = settings.base_url.trim_end_matches('/').to_owned();
        let mut transport = Transport::new(
            base_url.clone(),
            timezone,
            settings.request_timeout,
            limits::Limits::new(max_rps, settings.max_concurrency),
            RetryPolicy {
                max_retries: settings.max_retries,
                min_backoff: settings.min_backoff,
                max_backoff: settings.max_backoff,
            },
        )?;
        transport.counters.tenant = settings.tenant.clone();
        let auth = match settings.credentials {
            Credentials::Token(token) => Auth::Static(Secret::new(token.expose().trim())),
            Credentials::Company { app_id, app_secret } => Auth::Company {
                tokens: TokenSource::new(app_id.trim().to_owned(), app_secret),
                app_id,
            },
        };
        let agent = settings.agent_token.map(|t| Secret::new(t.expose().trim()));
        Ok(Self {
            inner: Arc::new(Inner {
                base_url,
                transport,
                auth,
                agent,
            }),
            meter: None,
        })
    }

    /// issue 15: a handle on the same client (token, limits, statistics) whose requests
    /// are also counted on `meter`, and so are those of its clones: a run hands it to
    /// everything it spawns.
    pub fn metered(&self, meter: RequestMeter) -> ApiClient {
        ApiClient {
            inner: self.inner.clone(),
            meter: Some(meter),
        }
    }

    /// issue 15: the meter of this handle, if it counts for a run.
    pub fn meter(&self) -> Option<&RequestMeter> {
        self.meter.as_ref()
    }

    /// POSTs a JSON body to `path` and returns the envelope's `data`.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        let raw = self.post_raw(path, body).await?;
        parse_data(path, &raw)
    }

    /// GETs `path` with query parameters and returns the envelope's `data`.
    pub async fn get(&self, path: &str, query: &[(String, String)]) -> Result<Value, ApiError> {
        let raw = self.get_raw(path, query).await?;
        parse_data(path, &raw)
    }

    /// Like `post`, with `data` as unparsed JSON text: extraction reads pages straight
    /// into column builders instead of building a `Value` tree first.
    pub async fn post_raw(&self, path: &str, body: &Value) -> Result<Data, ApiError> {
        self.request(Method::POST, path, &[], Some(body)).await
    }

    /// Like `post`, for an answer whose `data` is a page of records: the envelope and
    /// the page are read in one pass.
    pub async fn post_page(&self, path: &str, body: &Value) -> Result<PageData, ApiError> {
        let call = self
            .inner
            .transport
            .call(Method::POST, path, &[], Some(body))?;
        self.send(call).await
    }

    /// Like `get`, for an answer whose `data` is a page of records.
    pub async fn get_page(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<PageData, ApiError> {
        let call = self.inner.transport.call(Method::GET, path, query, None)?;
        self.send(call).await
    }

    /// Like `get`, with `data` as unparsed JSON text.
    pub async fn get_raw(&self, path: &str, query: &[(String, String)]) -> Result<Data, ApiError> {
        self.request(Method::GET, path, query, None).await
    }

    /// Like `get_raw`, with extra request headers sent on every attempt, so a retry
    /// repeats the same `Idempotency-Key`. Header names and values are checked here.
    pub async fn get_raw_with_headers(
        &self,
        path: &str,
        query: &[(String, String)],
        headers: &[(&str, String)],
    ) -> Result<Data, ApiError> {
        let mut call = self.inner.transport.call(Method::GET, path, query, None)?;
        for (name, value) in headers {
            let bad = |what: &str| {
                ApiError::Config(format!(
                    "{}: header {name}: {what}",
                    transport::endpoint_of(path)
                ))
            };
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad("not a valid header name"))?;
            let value = HeaderValue::from_str(value).map_err(|_| bad("not a valid value"))?;
            call.headers.push((name, value));
        }
        self.send(call).await
    }

    /// GETs a file (a call recording) from an absolute URL or a path under the API
    /// root, under the same rate cap, concurrency limit and retries as API calls, and
    /// returns the body as it is (no envelope). The access token is sent only when the
    /// URL is on the API's own host.
    pub async fn download(&self, target: &str) -> Result<Download, ApiError> {
        let call = self.inner.transport.download_call(target)?;
        self.send(call).await
    }

    /// issue 13: a call's recording through the document's recordings endpoint on the
    /// API host, `GET <base>/callservice/v6/cc-audios/recordings/{id}`, with the id read
    /// from the talk's `recordUrl` ([`recording_id`]) and the agent scope's token. The
    /// `recordUrl`'s own host is never contacted, so the token cannot reach a host the
    /// settings do not name.
    pub async fn recording(&self, record_url: &str) -> Result<Download, ApiError> {
        let id = recording_id(record_url).ok_or_else(|| ApiError::RecordUrl {
            // Without a query, which may carry a signature.
            url: record_url
                .trim()
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .chars()
                .take(160)
                .collect(),
        })?;
        let call = self.inner.transport.call(
            Method::GET,
            &format!("{RECORDINGS_PATH}/{id}"),
            &[],
            None,
        )?;
        self.send(call).await
    }

    /// issue 13: whether requests of `scope` go out with company app credentials (the
    /// token from `SOBOT_APP_ID`/`SOBOT_APP_SECRET`): the agent metrics need
    /// `operatorUserId` then. A static `SOBOT_TOKEN` may be either kind of token.
    pub fn uses_company_app(&self, scope: AuthScope) -> bool {
        let agent = scope == AuthScope::Agent && self.inner.agent.is_some();
        !agent && matches!(self.inner.auth, Auth::Company { .. })
    }

    /// Proves the credentials: obtains a token (company credentials) or does nothing
    /// for a static token. `check` follows it with one cheap data request.
    pub async fn authenticate(&self) -> Result<(), ApiError> {
        match &self.inner.auth {
            Auth::Static(_) => Ok(()),
            Auth::Company { tokens, .. } => tokens
                .current(&self.inner.transport, self.meter.as_ref())
                .await
                .map(drop),
        }
    }

    pub fn stats(&self) -> ClientStats {
        self.inner.transport.counters.snapshot()
    }

    /// issue 5: the access token for a request this client does not send itself (the
    /// agent metrics stream: one response lasting hours must not hold a concurrency slot
    /// or run inside the retry loop), with its generation. After the API refused a token,
    /// pass its generation as `refused` to get a new one (a static `SOBOT_TOKEN` cannot
    /// be replaced: that is an `Auth` error).
    pub async fn stream_token(&self, refused: Option<u64>) -> Result<(Secret, u64), ApiError> {
        match (&self.inner.auth, refused) {
            (Auth::Static(token), None) => Ok((token.clone(), 0)),
            (Auth::Static(_), Some(_)) => Err(ApiError::Auth {
                endpoint: "stream".into(),
                reason: "the API refused the configured access token (SOBOT_TOKEN); it may have \
                         expired: set a fresh one, or use SOBOT_APP_ID and SOBOT_APP_SECRET"
                    .into(),
            }),
            (Auth::Company { tokens, .. }, None) => tokens
                .current(&self.inner.transport, self.meter.as_ref())
                .await
                .map(|t| (t.value, t.generation)),
            (Auth::Company { tokens, .. }, Some(generation)) => {
                let stale = Token {
                    value: Secret::new(""),
                    generation,
                };
                tokens
                    .replace(&stale, &self.inner.transport, self.meter.as_ref())
                    .await
                    .map(|t| (t.value, t.generation))
            }
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Data, ApiError> {
        let call = self.inner.transport.call(method, path, query, body)?;
        self.send(call).await
    }

    async fn send<R: Reply>(&self, call: transport::Call) -> Result<R, ApiError> {
        let inner = &*self.inner;
        // One refresh-and-repeat per logical request, across its retries.
        let refreshed = AtomicBool::new(false);
        let meter = self.meter.as_ref();
        let (call_ref, refreshed_ref) = (&call, &refreshed);
        inner
            .transport
            .policy
            .run(
                &call.endpoint,
                &inner.transport.counters,
                meter,
                move || async move {
                    inner
                        .authorised_attempt(call_ref, refreshed_ref, meter)
                        .await
                },
            )
            .await
    }
}

impl Inner {
    /// One attempt with the right token; after a refusal, for company credentials,
    /// one more with a fresh token (counted on `meter` as a retry: it repeats a request).
    async fn authorised_attempt<R: Reply>(
        &self,
        call: &transport::Call,
        refreshed: &AtomicBool,
        meter: Option<&RequestMeter>,
    ) -> Result<R, Failure> {
        let endpoint = call.endpoint.as_str();
        if !call.authorize {
            return self.transport.attempt(call, None, meter).await;
        }
        if call.scope == AuthScope::Agent
            && let Some(token) = &self.agent
        {
            return match self.transport.attempt(call, Some(token), meter).await {
                Err(f) if f.class == Class::Unauthorized => Err(refusal(
                    endpoint,
                    &f.error,
                    "the API refused the agent token (SOBOT_AGENT_TOKEN) this endpoint is sent \
                     with; it may have expired or lack permission: set a fresh one, or unset \
                     it to use the company credentials here",
                )),
                other => other,
            };
        }
        let tokens = match &self.auth {
            Auth::Static(token) => {
                return match self.transport.attempt(call, Some(token), meter).await {
                    Err(f) if f.class == Class::Unauthorized => Err(refusal(
                        endpoint,
                        &f.error,
                        "the API refused the configured access token (SOBOT_TOKEN); it may have \
                         expired: set a fresh one, or use SOBOT_APP_ID and SOBOT_APP_SECRET",
                    )),
                    other => other,
                };
            }
            Auth::Company { tokens, .. } => tokens,
        };
        let token: Token = tokens
            .current(&self.transport, meter)
            .await
            .map_err(Failure::permanent)?;
        let failure = match self
            .transport
            .attempt(call, Some(&token.value), meter)
            .await
        {
            Err(f) if f.class == Class::Unauthorized => f,
            other => return other,
        };
        if refreshed.swap(true, Ordering::SeqCst) {
            return Err(refusal(endpoint, &failure.error, REFUSED_AFTER_REFRESH));
        }
        tracing::info!(endpoint, "access token refused; obtaining a new one");
        let token = tokens
            .replace(&token, &self.transport, meter)
            .await
            .map_err(Failure::permanent)?;
        if let Some(m) = meter {
            m.retry(endpoint);
        }
        match self
            .transport
            .attempt(call, Some(&token.value), meter)
            .await
        {
            Err(f) if f.class == Class::Unauthorized => {
                Err(refusal(endpoint, &f.error, REFUSED_AFTER_REFRESH))
            }
            other => other,
        }
    }
}

/// issue 13: how the client reads one answer body (HTTP 200) from `endpoint`: its
/// payload, by the liberal reading (`wire`). For tests of the API document's examples.
#[doc(hidden)]
pub fn read_answer(endpoint: &str, body: &[u8]) -> Result<Data, ApiError> {
    envelope::open(endpoint, body).map_err(|f| f.error)
}

/// issue 13: like [`read_answer`], for answers whose `data` is a page of records.
#[doc(hidden)]
pub fn read_page_answer(endpoint: &str, body: &[u8]) -> Result<PageData, ApiError> {
    envelope::open_page(endpoint, bytes::Bytes::copy_from_slice(body)).map_err(|f| f.error)
}

/// issue 13: the token and its lifetime from a token endpoint answer, as the client
/// reads them (with or without the envelope).
#[doc(hidden)]
pub fn read_token_answer(body: &[u8]) -> Result<(Secret, Duration), ApiError> {
    let data = read_answer(auth::TOKEN_ENDPOINT, body)?;
    let value: Value = serde_json::from_str(data.get()).unwrap_or(Value::Null);
    auth::read_token(&value, std::time::SystemTime::now()).map_err(|reason| ApiError::Auth {
        endpoint: auth::TOKEN_ENDPOINT.into(),
        reason,
    })
}

/// `data` text (already checked to be valid JSON) as a `Value`.
fn parse_data(path: &str, raw: &Data) -> Result<Value, ApiError> {
    serde_json::from_str(raw.get()).map_err(|e| ApiError::Decode {
        endpoint: path.split('?').next().unwrap_or(path).to_owned(),
        detail: format!("data could not be read: {e}"),
    })
}

const REFUSED_AFTER_REFRESH: &str = "the API refused a freshly obtained access token; the app \
     may lack permission for this endpoint";

/// A permanent `Auth` error that says how the API refused (status or code only:
/// the server's message is left out in case it echoes the token).
fn refusal(endpoint: &str, error: &ApiError, what: &str) -> Failure {
    let how = match error {
        ApiError::Http { status, .. } => format!("HTTP {status}"),
        ApiError::Envelope { code, .. } => format!("code {code}"),
        _ => "refused".to_owned(),
    };
    Failure::permanent(ApiError::Auth {
        endpoint: endpoint.to_owned(),
        reason: format!("{what} ({how})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// issue 13: the id is the last path segment of `recordUrl`, read from the
    /// document's own example (a space after the scheme and at the end).
    #[test]
    fn recording_ids_are_read_from_record_urls() {
        let doc = "https:// record.soboten.com/recordings/cc3738581df7413da5d3204364943e3d ";
        assert_eq!(recording_id(doc), Some("cc3738581df7413da5d3204364943e3d"));
        assert_eq!(
            recording_id("http://h/a/b/x-1_2.mp3?sig=abc#f"),
            Some("x-1_2.mp3")
        );
        assert_eq!(recording_id(" bare-id "), Some("bare-id"));
        for bad in [
            "",
            "   ",
            "http://h/recordings/",
            "http://h/r/..",
            "http://h/r/a b",
            "http://h/r/%2F",
        ] {
            assert_eq!(recording_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_documents_agent_token_endpoints_are_routed() {
        for agent in [
            "/callservice/v6/cc-audios/recordings/abc",
            "/callservice/tm/tm-reports/agent-histories/_search",
            "/callservice/tm/tm-reports/gateway-number-table/_search",
            "/callservice/tm/tm-reports/agent-table/_search",
            "/callservice/tm/tm-reports/depart-table/_search",
            "/callservice/tm/tm-reports/gateway_number/check_plan?planType=2",
        ] {
            assert_eq!(AuthScope::of(agent), AuthScope::Agent, "{agent}");
        }
        for company in [
            "/callservice/tm/tm-reports/maincdrs/_search",
            "/callservice/tm/tm-reports/maincdrs/x/partycdrs",
            "/callservice/tm/tm-reports/cdrs/_search",
            "/callservice/v6/webmsg/monitoring/agents-metrics",
            "/tokens/company",
        ] {
            assert_eq!(AuthScope::of(company), AuthScope::Company, "{company}");
        }
    }

    /// Pipelines spawn requests on a multi-threaded runtime: the futures must be `Send`.
    #[test]
    fn request_futures_are_send() {
        fn is_send<T: Send>(_: &T) {}
        let settings = ApiSettings {
            base_url: "http://127.0.0.1:1".into(),
            credentials: Credentials::Token(Secret::new("t")),
            max_rps: 1,
            max_concurrency: 1,
            timezone: "Asia/Singapore".into(),
            request_timeout: Duration::from_secs(1),
            max_retries: 0,
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            tenant: None,
            agent_token: None,
        };
        let Ok(api) = ApiClient::new(settings) else {
            panic!("valid settings rejected");
        };
        let body = Value::Null;
        is_send(&api.post("/x", &body));
        is_send(&api.get("/x", &[]));
        is_send(&api.authenticate());
    }
}
