//! Company tokens: checks the signed token request, issues tokens in the three answer
//! shapes clients must understand, and decides whether an `Authorization` header is valid.
//! Expiry runs on the real clock, never the simulated "now", as a real server's would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use md5::{Digest, Md5};
use serde_json::json;

use super::protocol::TokenRequest;

/// How far the request's `currentTime` may be from the real clock.
const CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;
/// Above this many live tokens, expired ones are swept on the next issue.
const SWEEP_ABOVE: usize = 1024;

/// issue 13: what a request's token is. The static token stands for an agent token (the
/// API document's "Agent token", tied to one agent); a token issued by `/tokens/company`
/// is a company token, under which the agent metrics need `operatorUserId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Static,
    Company,
}

impl TokenKind {
    /// The word the statistics use (`SimStats::by_endpoint_token`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TokenKind::Static => "static",
            TokenKind::Company => "company",
        }
    }
}

#[derive(Debug)]
pub(crate) struct TokenStore {
    app_id: String,
    app_secret: String,
    static_token: Option<String>,
    issued: AtomicU64,
    live: Mutex<HashMap<String, DateTime<Utc>>>,
}

/// `md5(appId + currentTime + responseType + appSecret)` in lower-case hex.
pub(crate) fn sign(app_id: &str, current_time: &str, response_type: &str, secret: &str) -> String {
    let mut h = Md5::new();
    for part in [app_id, current_time, response_type, secret] {
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

impl TokenStore {
    pub(crate) fn new(app_id: String, app_secret: String, static_token: Option<String>) -> Self {
        Self {
            app_id,
            app_secret,
            static_token,
            issued: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a token request; `Err` holds the message for the envelope-401 answer.
    pub(crate) fn check_request(
        &self,
        req: &TokenRequest,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let response_type = req.response_type.as_deref().unwrap_or("");
        if response_type != "token" {
            return Err(format!(
                "responseType must be \"token\", got {response_type:?}"
            ));
        }
        let app_id = req.app_id.as_deref().unwrap_or("");
        if app_id != self.app_id {
            return Err("unknown appId".to_string());
        }
        let time = req
            .current_time
            .as_ref()
            .map(|t| t.0.as_str())
            .unwrap_or("");
        let ms: i64 = time
            .trim()
            .parse()
            .map_err(|_| format!("currentTime {time:?} is not milliseconds"))?;
        if (ms - now.timestamp_millis()).abs() > CLOCK_SKEW_MS {
            return Err("currentTime is more than 10 minutes from the server clock".to_string());
        }
        let expected = sign(app_id, time, response_type, &self.app_secret);
        if req.sign.as_deref().map(str::to_ascii_lowercase).as_deref() != Some(expected.as_str()) {
            return Err("sign does not match".to_string());
        }
        Ok(())
    }

    /// Issues a token valid for `ttl_secs` and returns the answer's `data`. The shape
    /// rotates so every client sees each one: snake_case with a lifetime, camelCase with
    /// a lifetime, and a bare JWT whose payload carries `exp`.
    pub(crate) fn issue(&self, ttl_secs: u64, now: DateTime<Utc>) -> serde_json::Value {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2_000);
        let expires = now
            .checked_add_signed(Duration::seconds(ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let opaque = uuid::Uuid::new_v4().simple().to_string();
        let (token, data) = match n % 3 {
            0 => (
                opaque.clone(),
                json!({"access_token": opaque, "expires_in": ttl_secs}),
            ),
            1 => (
                opaque.clone(),
                json!({"accessToken": opaque, "expiresIn": ttl_secs}),
            ),
            _ => {
                let jwt = self.jwt(&opaque, now, expires);
                (jwt.clone(), json!({"accessToken": jwt}))
            }
        };
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live.len() > SWEEP_ABOVE {
            live.retain(|_, exp| *exp > now);
        }
        live.insert(token, expires);
        data
    }

    fn jwt(&self, id: &str, now: DateTime<Utc>, expires: DateTime<Utc>) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = json!({
            "sub": self.app_id,
            "iat": now.timestamp(),
            "exp": expires.timestamp(),
            "jti": id,
        });
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        let mut h = Md5::new();
        h.update(format!("{header}.{payload}{}", self.app_secret).as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(h.finalize());
        format!("{header}.{payload}.{sig}")
    }

    /// Whether an `Authorization` header value ("Bearer T" or bare "T") holds a live token.
    #[cfg(test)]
    pub(crate) fn is_valid(&self, header: Option<&str>, now: DateTime<Utc>) -> bool {
        self.kind(header, now).is_some()
    }

    /// issue 13: which kind of live token the header holds, if any.
    pub(crate) fn kind(&self, header: Option<&str>, now: DateTime<Utc>) -> Option<TokenKind> {
        let raw = header.map(str::trim)?;
        let token = match raw.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("bearer ") => raw[7..].trim(),
            _ => raw,
        };
        if token.is_empty() {
            return None;
        }
        if self.static_token.as_deref() == Some(token) {
            return Some(TokenKind::Static);
        }
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.get(token)
            .is_some_and(|exp| *exp > now)
            .then_some(TokenKind::Company)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::protocol::NumText;

    fn store() -> TokenStore {
        TokenStore::new("app".into(), "secret".into(), Some("forever".into()))
    }

    fn request(time: i64, secret: &str) -> TokenRequest {
        let t = time.to_string();
        TokenRequest {
            response_type: Some("token".into()),
            app_id: Some("app".into()),
            sign: Some(sign("app", &t, "token", secret)),
            current_time: Some(NumText(t)),
        }
    }

    #[test]
    fn checks_sign_and_clock() {
        let s = store();
        let now = Utc::now();
        let ms = now.timestamp_millis();
        assert!(s.check_request(&request(ms, "secret"), now).is_ok());
        assert!(s.check_request(&request(ms, "wrong"), now).is_err());
        assert!(
            s.check_request(&request(ms - 11 * 60 * 1000, "secret"), now)
                .is_err()
        );
    }

    #[test]
    fn tokens_rotate_shapes_and_expire() {
        let s = store();
        let now = Utc::now();
        let a = s.issue(60, now);
        let b = s.issue(60, now);
        let c = s.issue(60, now);
        let ta = a["access_token"].as_str().unwrap_or_default().to_string();
        assert_eq!(a["expires_in"], 60);
        assert_eq!(b["expiresIn"], 60);
        let jwt = c["accessToken"].as_str().unwrap_or_default().to_string();
        let payload = jwt
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok());
        let payload: serde_json::Value = payload
            .and_then(|p| serde_json::from_slice(&p).ok())
            .unwrap_or_default();
        assert_eq!(payload["exp"].as_i64(), Some(now.timestamp() + 60));
        assert!(s.is_valid(Some(&format!("Bearer {ta}")), now));
        assert!(s.is_valid(Some(&jwt), now));
        assert!(!s.is_valid(Some(&ta), now + Duration::seconds(61)));
        assert!(s.is_valid(Some("forever"), now + Duration::days(999)));
        assert!(!s.is_valid(None, now));
        assert!(!s.is_valid(Some("Bearer nope"), now));
        assert_eq!(s.kind(Some("forever"), now), Some(TokenKind::Static));
        assert_eq!(s.kind(Some(&jwt), now), Some(TokenKind::Company));
    }
}
