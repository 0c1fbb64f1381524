//! One HTTP attempt: admission through the tenant's limits, the request, the whole
//! body, and a classified outcome. Retrying and tokens live one level up.

use super::envelope;
use super::limits::Limits;
use super::retry::{Class, Failure, RetryPolicy, parse_retry_after};
use super::{ApiError, ClientStats};
use crate::secret::Secret;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

const JSON_UTF8: &str = "application/json;charset=utf-8";

/// Counters behind [`ClientStats`]; relaxed atomics, they are only statistics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) token_refreshes: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ClientStats {
        ClientStats {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            token_refreshes: self.token_refreshes.load(Ordering::Relaxed),
        }
    }
}

/// A request as the caller described it, reusable across attempts.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) url: url::Url,
    /// The path without host or query: what errors and logs name.
    pub(crate) endpoint: String,
    pub(crate) body: Option<bytes::Bytes>,
}

#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    base: String,
    timezone: HeaderValue,
    request_timeout: Duration,
    limits: Limits,
    pub(crate) counters: Counters,
    pub(crate) policy: RetryPolicy,
}

impl Transport {
    pub(crate) fn new(
        base: String,
        timezone: HeaderValue,
        request_timeout: Duration,
        limits: Limits,
        policy: RetryPolicy,
    ) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .gzip(true)
            .timeout(request_timeout)
            .build()
            .map_err(|e| ApiError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            timezone,
            request_timeout,
            limits,
            counters: Counters::default(),
            policy,
        })
    }

    /// Builds the call for `path` (relative to the API root) with extra query pairs.
    pub(crate) fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Call, ApiError> {
        let endpoint = endpoint_of(path);
        let joined = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let mut url = url::Url::parse(&joined).map_err(|e| {
            ApiError::Config(format!(
                "{endpoint}: cannot form a URL from the base URL and this path: {e}"
            ))
        })?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let body = body
            .map(|b| serde_json::to_vec(b).map(bytes::Bytes::from))
            .transpose()
            .map_err(|e| ApiError::Config(format!("{endpoint}: cannot encode the body: {e}")))?;
        Ok(Call {
            method,
            url,
            endpoint,
            body,
        })
    }

    /// Runs one attempt of `call` under the tenant's limits and returns the envelope's
    /// `data`. The concurrency slot is held until the body has been read and is
    /// released before any backoff sleep, which happens in the caller.
    pub(crate) async fn attempt(
        &self,
        call: &Call,
        token: Option<&Secret>,
    ) -> Result<envelope::Data, Failure> {
        let endpoint = call.endpoint.as_str();
        let _slot = self.limits.admit().await.ok_or_else(|| {
            Failure::permanent(ApiError::Transport {
                endpoint: endpoint.to_owned(),
                detail: "the client is shutting down".into(),
            })
        })?;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);

        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .header("timezoneid", self.timezone.clone());
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token.expose()).map_err(|_| {
                Failure::permanent(ApiError::Auth {
                    endpoint: endpoint.to_owned(),
                    reason: "the access token contains characters not allowed in an HTTP header"
                        .into(),
                })
            })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(body) = &call.body {
            request = request.header(CONTENT_TYPE, JSON_UTF8).body(body.clone());
        }

        let response = request
            .send()
            .await
            .map_err(|e| Failure::transient(self.transport_error(endpoint, e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));

        if !status.is_success() {
            let failure = status_failure(endpoint, status)
                .with_retry_after(retry_after)
                .with_rate_limited(status == StatusCode::TOO_MANY_REQUESTS);
            self.count(&failure);
            return Err(failure);
        }
        let body = response.bytes().await.map_err(|e| {
            Failure::transient(self.transport_error(endpoint, e)).with_retry_after(retry_after)
        })?;
        envelope::open(endpoint, &body).map_err(|f| {
            let f = f.with_retry_after(retry_after);
            self.count(&f);
            f
        })
    }

    fn count(&self, failure: &Failure) {
        if failure.rate_limited {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Describes a reqwest error without its URL (which may carry query values).
    fn transport_error(&self, endpoint: &str, error: reqwest::Error) -> ApiError {
        let error = error.without_url();
        let detail = if error.is_timeout() {
            format!("timed out after {:?}", self.request_timeout)
        } else {
            let mut text = if error.is_connect() {
                "cannot connect".to_owned()
            } else if error.is_body() || error.is_decode() {
                "the response body broke off".to_owned()
            } else {
                error.to_string()
            };
            let mut source = error.source();
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        };
        ApiError::Transport {
            endpoint: endpoint.to_owned(),
            detail,
        }
    }
}

/// Classifies a non-2xx status.
fn status_failure(endpoint: &str, status: StatusCode) -> Failure {
    let error = ApiError::Http {
        endpoint: endpoint.to_owned(),
        status: status.as_u16(),
    };
    let class = match status.as_u16() {
        401 | 403 => Class::Unauthorized,
        408 | 429 => Class::Transient,
        s if s >= 500 => Class::Transient,
        _ => Class::Permanent,
    };
    Failure::new(error, class)
}

/// The path as errors name it: no host, no query, one leading slash.
pub(crate) fn endpoint_of(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    format!("/{}", path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_drops_query_and_normalises_slash() {
        assert_eq!(endpoint_of("/a/b?token=x"), "/a/b");
        assert_eq!(endpoint_of("a/b"), "/a/b");
        assert_eq!(endpoint_of("/a#frag"), "/a");
    }

    #[test]
    fn urls_keep_the_base_prefix_and_add_the_query() -> Result<(), ApiError> {
        let limits = Limits::new(std::num::NonZeroU32::MIN, 1);
        let policy = RetryPolicy {
            max_retries: 0,
            min_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
        };
        let transport = Transport::new(
            "https://example.test/api".into(),
            HeaderValue::from_static("Asia/Singapore"),
            Duration::from_secs(1),
            limits,
            policy,
        )?;
        let call = transport.call(
            Method::GET,
            "x/y z?a=1",
            &[("b".into(), "2 3".into())],
            None,
        )?;
        assert_eq!(
            call.url.as_str(),
            "https://example.test/api/x/y%20z?a=1&b=2+3"
        );
        assert_eq!(call.endpoint, "/x/y z");
        assert!(call.body.is_none());
        Ok(())
    }

    #[test]
    fn statuses_are_classified() {
        let class =
            |s: u16| status_failure("/x", StatusCode::from_u16(s).unwrap_or_default()).class;
        assert_eq!(class(401), Class::Unauthorized);
        assert_eq!(class(403), Class::Unauthorized);
        assert_eq!(class(408), Class::Transient);
        assert_eq!(class(429), Class::Transient);
        assert_eq!(class(502), Class::Transient);
        assert_eq!(class(400), Class::Permanent);
        assert_eq!(class(404), Class::Permanent);
    }
}
