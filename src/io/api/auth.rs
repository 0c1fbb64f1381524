//! Access tokens: obtaining one from company credentials, reading its lifetime, and
//! refreshing it early (at half-life) or after the API refused it.
//!
//! Nothing from the token endpoint's body ever reaches an error or a log line: the
//! body may hold a token, and the request holds a signature over the secret.

use super::ApiError;
use super::meter::RequestMeter;
use super::retry::{Class, Failure};
use super::transport::Transport;
use crate::core::secret::Secret;
use base64::Engine as _;
use md5::{Digest, Md5};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// Where company credentials are exchanged for a token (CONTRACT.md section 5).
pub(crate) const TOKEN_ENDPOINT: &str = "/tokens/company";
const RESPONSE_TYPE: &str = "token";
/// Assumed when the answer states no lifetime and the token is no JWT with `exp`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Longer stated lifetimes are treated as this, keeping `Instant` arithmetic sane.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// `md5(appId + currentTime + responseType + appSecret)` as lower-case hex.
pub(crate) fn sign(
    app_id: &str,
    current_time_ms: u64,
    response_type: &str,
    secret: &Secret,
) -> String {
    let mut md5 = Md5::new();
    md5.update(app_id.as_bytes());
    md5.update(current_time_ms.to_string().as_bytes());
    md5.update(response_type.as_bytes());
    md5.update(secret.expose().as_bytes());
    hex::encode(md5.finalize())
}

/// A token as handed to one request; `generation` tells a refusal of this token
/// apart from a refusal of one that has already been replaced.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) value: Secret,
    pub(crate) generation: u64,
}

#[derive(Debug)]
struct Cached {
    token: Token,
    refresh_at: Instant,
}

/// Obtains and caches the company token. The mutex makes refreshes single-flight:
/// concurrent requests that find the token stale wait for one refresh and share it.
///
/// Callers must not hold a concurrency slot while waiting here, since the refresh
/// itself needs one.
#[derive(Debug)]
pub(crate) struct TokenSource {
    app_id: String,
    app_secret: Secret,
    slot: Mutex<Option<Cached>>,
}

impl TokenSource {
    pub(crate) fn new(app_id: String, app_secret: Secret) -> Self {
        Self {
            app_id,
            app_secret,
            slot: Mutex::new(None),
        }
    }

    /// The cached token, refreshed first if half its lifetime has passed.
    pub(crate) async fn current(
        &self,
        transport: &Transport,
        meter: Option<&RequestMeter>,
    ) -> Result<Token, ApiError> {
        let mut slot = self.slot.lock().await;
        if let Some(cached) = slot.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        self.refresh_locked(&mut slot, transport, meter).await
    }

    /// A new token after the API refused `refused`; if another request already
    /// replaced that token, its replacement is returned without asking again.
    pub(crate) async fn replace(
        &self,
        refused: &Token,
        transport: &Transport,
        meter: Option<&RequestMeter>,
    ) -> Result<Token, ApiError> {
        let mut slot = self.slot.lock().await;
        if let Some(cached) = slot.as_ref()
            && cached.token.generation != refused.generation
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        self.refresh_locked(&mut slot, transport, meter).await
    }

    async fn refresh_locked(
        &self,
        slot: &mut Option<Cached>,
        transport: &Transport,
        meter: Option<&RequestMeter>,
    ) -> Result<Token, ApiError> {
        let generation = slot.as_ref().map_or(0, |c| c.token.generation) + 1;
        let asked_at = Instant::now();
        let (value, lifetime) = self.fetch(transport, meter).await?;
        transport
            .counters
            .token_refreshes
            .fetch_add(1, Ordering::Relaxed);
        let token = Token { value, generation };
        *slot = Some(Cached {
            token: token.clone(),
            // Measured from when we asked, so a slow answer errs on the early side.
            refresh_at: asked_at + lifetime / 2,
        });
        tracing::debug!(
            generation,
            lifetime_secs = lifetime.as_secs(),
            "obtained an access token"
        );
        Ok(token)
    }

    /// One token request, retried like any other on transient failures; counted on
    /// `meter`, the budget of the run whose request needed the token.
    async fn fetch(
        &self,
        transport: &Transport,
        meter: Option<&RequestMeter>,
    ) -> Result<(Secret, Duration), ApiError> {
        let this = self;
        transport
            .policy
            .run(
                TOKEN_ENDPOINT,
                &transport.counters,
                meter,
                move || async move {
                    // A fresh timestamp and signature per attempt: the server checks the
                    // timestamp against its clock.
                    let now_ms = u64::try_from(
                        SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_millis(),
                    )
                    .unwrap_or(u64::MAX);
                    let body = json!({
                        "responseType": RESPONSE_TYPE,
                        "appId": this.app_id,
                        "currentTime": now_ms,
                        "sign": sign(&this.app_id, now_ms, RESPONSE_TYPE, &this.app_secret),
                    });
                    let call = transport
                        .call(Method::POST, TOKEN_ENDPOINT, &[], Some(&body))
                        .map_err(Failure::permanent)?;
                    match transport
                        .attempt::<super::envelope::Data>(&call, None, meter)
                        .await
                    {
                        Ok(raw) => read_token(
                            &serde_json::from_str(raw.get()).unwrap_or(Value::Null),
                            SystemTime::now(),
                        )
                        .map_err(|reason| {
                            Failure::permanent(ApiError::Auth {
                                endpoint: TOKEN_ENDPOINT.into(),
                                reason,
                            })
                        }),
                        Err(failure) => Err(scrub(failure)),
                    }
                },
            )
            .await
    }
}

/// Rewrites a token-endpoint failure so it says nothing the body said, and turns a
/// refusal of the credentials into an `Auth` error.
fn scrub(failure: Failure) -> Failure {
    let refused = |reason: String| {
        Failure::permanent(ApiError::Auth {
            endpoint: TOKEN_ENDPOINT.into(),
            reason,
        })
    };
    match (failure.class, failure.error) {
        (Class::Unauthorized, ApiError::Envelope { code, .. }) => refused(format!(
            "the app id or app secret was refused (code {code}); check SOBOT_APP_ID and SOBOT_APP_SECRET"
        )),
        (Class::Unauthorized, ApiError::Http { status, .. }) => refused(format!(
            "the app id or app secret was refused (HTTP {status}); check SOBOT_APP_ID and SOBOT_APP_SECRET"
        )),
        (Class::Permanent, ApiError::Envelope { code, .. }) => {
            refused(format!("the token request was rejected with code {code}"))
        }
        (class, ApiError::Envelope { endpoint, code, .. }) => Failure {
            error: ApiError::Envelope {
                endpoint,
                code,
                message: "(message not shown for the token endpoint)".into(),
            },
            class,
            retry_after: failure.retry_after,
            rate_limited: failure.rate_limited,
        },
        (class, error) => Failure {
            error,
            class: if class == Class::Unauthorized {
                Class::Permanent
            } else {
                class
            },
            retry_after: failure.retry_after,
            rate_limited: failure.rate_limited,
        },
    }
}

/// Reads the token and its lifetime from the token answer's `data`. The error is
/// a reason that quotes nothing from the answer.
pub(crate) fn read_token(data: &Value, now: SystemTime) -> Result<(Secret, Duration), String> {
    let token = match data {
        // Liberal: some deployments answer with the bare token as `data`.
        Value::String(s) => s.as_str(),
        Value::Object(map) => ["access_token", "accessToken", "token"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_str))
            .ok_or("the token answer has no access_token")?,
        _ => return Err("the token answer's data is neither an object nor a string".into()),
    };
    let token = token.trim();
    if token.is_empty() {
        return Err("the token answer holds an empty access_token".into());
    }
    let stated = ["expires_in", "expiresIn"]
        .iter()
        .find_map(|k| data.get(*k).and_then(seconds_of));
    let lifetime = stated
        .map(Duration::from_secs)
        .or_else(|| jwt_lifetime(token, now))
        .unwrap_or(DEFAULT_LIFETIME)
        .min(MAX_LIFETIME);
    Ok((Secret::new(token), lifetime))
}

/// A whole number of seconds given as a JSON number or a numeric string.
fn seconds_of(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

/// Time left until the JWT's `exp` claim (payload decoded, signature not checked:
/// we only want to know when to refresh). `None` if it is no JWT or has no `exp`.
fn jwt_lifetime(token: &str, now: SystemTime) -> Option<Duration> {
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp").and_then(seconds_of)?;
    let exp = UNIX_EPOCH.checked_add(Duration::from_secs(exp))?;
    // An `exp` already past (clock skew) still yields a usable token: refresh soon.
    Some(exp.duration_since(now).unwrap_or(Duration::from_secs(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_matches_a_known_digest() {
        // md5("app1" + "1700000000000" + "token" + "s3cret")
        let expected = hex::encode(Md5::digest(b"app11700000000000tokens3cret"));
        assert_eq!(
            sign("app1", 1_700_000_000_000, "token", &Secret::new("s3cret")),
            expected
        );
        assert_eq!(expected.len(), 32);
        assert_eq!(expected, expected.to_lowercase());
        // md5 of the empty string, to pin the hex encoding itself.
        assert_eq!(
            hex::encode(Md5::digest(b"")),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn token_styles() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let (t, life) = read_token(&json!({"access_token": "a", "expires_in": 120}), now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.expose(), life), ("a", Duration::from_secs(120)));
        let (t, life) = read_token(&json!({"accessToken": "b", "expiresIn": "60"}), now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.expose(), life), ("b", Duration::from_secs(60)));
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"x","exp":1000300}"#);
        let jwt = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln");
        let (t, life) =
            read_token(&json!({"accessToken": jwt}), now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.expose(), life), (jwt.as_str(), Duration::from_secs(300)));
        let (_, life) =
            read_token(&json!({"accessToken": "opaque"}), now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(life, DEFAULT_LIFETIME);
        let (_, life) = read_token(&json!({"access_token": "x", "expires_in": u64::MAX}), now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(life, MAX_LIFETIME);
        let huge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!(r#"{{"exp":{}}}"#, u64::MAX));
        let (_, life) = read_token(&json!({"accessToken": format!("h.{huge}.s")}), now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(life, DEFAULT_LIFETIME);
        assert!(read_token(&json!({"expires_in": 5}), now).is_err());
        assert!(read_token(&json!({"access_token": ""}), now).is_err());
    }
}
