//! One HTTP attempt: admission through the tenant's limits, the request, the whole
//! body, and a classified outcome. Retrying and tokens live one level up.

use super::counters::Counters;
use super::limits::Limits;
use super::retry::{Class, Failure, RetryPolicy, parse_retry_after};
use super::{ApiError, envelope};
use crate::core::secret::Secret;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::error::Error as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

const JSON_UTF8: &str = "application/json;charset=utf-8";

/// A request as the caller described it, reusable across attempts.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) url: url::Url,
    /// The path without host or query: what errors and logs name.
    pub(crate) endpoint: String,
    pub(crate) body: Option<bytes::Bytes>,
    /// Extra request headers (`Idempotency-Key`), the same on every attempt.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether the access token is sent: not to a host other than the API's.
    pub(crate) authorize: bool,
    /// issue 13: which credential the token comes from (by the endpoint's path).
    pub(crate) scope: super::AuthScope,
}

/// How an attempt reads a successful (2xx) body: the envelope's `data` for API calls,
/// the bytes as they are for downloads.
pub(crate) trait Reply: Sized {
    /// Whether an accepted reply counts as a page of data (`sobot_sync_api_pages_total`).
    const PAGE: bool = false;
    fn read(
        endpoint: &str,
        body: bytes::Bytes,
        content_type: Option<String>,
    ) -> Result<Self, Failure>;
}

impl Reply for envelope::Data {
    const PAGE: bool = true;
    fn read(endpoint: &str, body: bytes::Bytes, _: Option<String>) -> Result<Self, Failure> {
        envelope::open(endpoint, &body)
    }
}

impl Reply for envelope::PageData {
    const PAGE: bool = true;
    fn read(endpoint: &str, body: bytes::Bytes, _: Option<String>) -> Result<Self, Failure> {
        envelope::open_page(endpoint, body)
    }
}

impl Reply for super::Download {
    /// A file as it is, unless the answer is not a file: Sobot reports errors with HTTP
    /// 200 and a JSON envelope, which must not be stored as the recording. Such an
    /// answer is read as the envelope it is (error codes retried or not as for API
    /// calls); a success envelope or an empty body is refused too.
    fn read(
        endpoint: &str,
        body: bytes::Bytes,
        content_type: Option<String>,
    ) -> Result<Self, Failure> {
        let kind = content_type.as_deref().unwrap_or("").to_ascii_lowercase();
        let json_type = kind.contains("json");
        let audio_type = kind.starts_with("audio/");
        let json_body = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if json_type || (json_body && !audio_type) {
            envelope::open(endpoint, &body)?;
            return Err(Failure::permanent(ApiError::Decode {
                endpoint: endpoint.to_owned(),
                detail: "a JSON envelope where a file was expected".into(),
            }));
        }
        if body.is_empty() {
            return Err(Failure::transient(ApiError::Decode {
                endpoint: endpoint.to_owned(),
                detail: "an empty body where a file was expected".into(),
            }));
        }
        Ok(super::Download {
            bytes: body,
            content_type,
        })
    }
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
            headers: Vec::new(),
            authorize: true,
            scope: super::AuthScope::of(path),
        })
    }

    /// A `GET` of `target`: an absolute `http(s)` URL, or a path relative to the API
    /// root. The token goes only to the API's own scheme, host and port, so a URL on
    /// another host (a storage bucket's signed link) never sees it.
    pub(crate) fn download_call(&self, target: &str) -> Result<Call, ApiError> {
        let target = target.trim();
        let base = url::Url::parse(&self.base)
            .map_err(|e| ApiError::Config(format!("the base URL is not a URL: {e}")))?;
        let url = match url::Url::parse(target) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => u,
            Ok(u) => {
                return Err(ApiError::Config(format!(
                    "{}: only http and https URLs can be downloaded",
                    u.scheme()
                )));
            }
            Err(_) => self.call(Method::GET, target, &[], None)?.url,
        };
        let authorize = url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default();
        Ok(Call {
            method: Method::GET,
            endpoint: endpoint_of(url.path()),
            scope: super::AuthScope::of(url.path()),
            url,
            body: None,
            headers: Vec::new(),
            authorize,
        })
    }

    /// Runs one attempt of `call` under the tenant's limits and returns the envelope's
    /// `data`. The concurrency slot is held until the body has been read and is
    /// released before any backoff sleep, which happens in the caller.
    pub(crate) async fn attempt<R: Reply>(
        &self,
        call: &Call,
        token: Option<&Secret>,
        meter: Option<&super::RequestMeter>,
    ) -> Result<R, Failure> {
        let endpoint = call.endpoint.as_str();
        let _slot = self.limits.admit().await.ok_or_else(|| {
            Failure::permanent(ApiError::Transport {
                endpoint: endpoint.to_owned(),
                detail: "the client is shutting down".into(),
            })
        })?;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = meter {
            m.request(endpoint);
        }

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
        for (name, value) in &call.headers {
            request = request.header(name.clone(), value.clone());
        }

        let response = request.send().await.map_err(|e| {
            crate::io::obs::metrics::api_request(self.counters.tenant.as_deref(), endpoint, None);
            Failure::transient(self.transport_error(endpoint, e))
        })?;
        let status = response.status();
        crate::io::obs::metrics::api_request(
            self.counters.tenant.as_deref(),
            endpoint,
            Some(status.as_u16()),
        );
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));

        if !status.is_success() {
            let failure = status_failure(endpoint, status)
                .with_retry_after(retry_after)
                .with_rate_limited(status == StatusCode::TOO_MANY_REQUESTS);
            self.count(endpoint, &failure);
            return Err(failure);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(|e| {
            Failure::transient(self.transport_error(endpoint, e)).with_retry_after(retry_after)
        })?;
        let reply = R::read(endpoint, body, content_type).map_err(|f| {
            let f = f.with_retry_after(retry_after);
            self.count(endpoint, &f);
            f
        })?;
        if R::PAGE {
            crate::io::obs::metrics::api_page(self.counters.tenant.as_deref(), endpoint);
        }
        Ok(reply)
    }

    fn count(&self, endpoint: &str, failure: &Failure) {
        if failure.rate_limited {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            crate::io::obs::metrics::api_rate_limited(self.counters.tenant.as_deref(), endpoint);
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
    fn downloads_refuse_envelopes_and_empty_bodies() {
        use super::super::Download;
        let read = |body: &'static [u8], ct: Option<&str>| {
            <Download as Reply>::read(
                "/rec/1",
                bytes::Bytes::from_static(body),
                ct.map(String::from),
            )
        };
        let mp3 = read(b"ID3\x04rest", Some("audio/mpeg")).map(|d| d.bytes.len());
        assert_eq!(mp3.ok(), Some(8));
        assert!(
            read(b"{x", Some("audio/mpeg")).is_ok(),
            "the server says audio"
        );
        assert!(read(b"\xff\xfb", None).is_ok());
        // HTTP 200 with an error envelope: the envelope's class (500 is retried).
        let e = read(b" {\"code\": 500, \"message\": \"busy\"}", None).err();
        assert_eq!(e.map(|f| f.class), Some(Class::Transient));
        let e = read(
            b"{\"code\": 404, \"message\": \"no file\"}",
            Some("application/json"),
        )
        .err();
        assert_eq!(e.map(|f| f.class), Some(Class::Permanent));
        let e = read(
            b"{\"code\": 200, \"data\": {}}",
            Some("application/json;charset=UTF-8"),
        )
        .err();
        assert!(e.is_some_and(|f| f.error.to_string().contains("envelope where a file")));
        assert!(read(b"", Some("audio/mpeg")).is_err());
    }

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
    fn downloads_send_the_token_only_to_the_api_host() -> Result<(), ApiError> {
        let transport = Transport::new(
            "https://example.test/api".into(),
            HeaderValue::from_static("Asia/Singapore"),
            Duration::from_secs(1),
            Limits::new(std::num::NonZeroU32::MIN, 1),
            RetryPolicy {
                max_retries: 0,
                min_backoff: Duration::ZERO,
                max_backoff: Duration::ZERO,
            },
        )?;
        let own = transport.download_call("https://example.test:443/rec/1.mp3?x=1")?;
        assert!(own.authorize);
        assert_eq!(own.endpoint, "/rec/1.mp3");
        let relative = transport.download_call(" /rec/2.mp3 ")?;
        assert_eq!(relative.url.as_str(), "https://example.test/api/rec/2.mp3");
        assert!(relative.authorize);
        assert!(
            !transport
                .download_call("https://cdn.other/rec/3.mp3")?
                .authorize
        );
        assert!(
            !transport
                .download_call("http://example.test/rec/4.mp3")?
                .authorize
        );
        assert!(transport.download_call("ftp://example.test/x").is_err());
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
