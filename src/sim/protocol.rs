//! The wire format shared by every endpoint: the response envelope, and request bodies
//! read as leniently as the real API reads them (numbers may come as numeric strings).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Deserializer, Serialize, de};

use super::config::Dialect;

pub(crate) const API_VERSION: &str = "6.2";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, T> {
    api_version: &'static str,
    status: &'a str,
    message: &'a str,
    code: u16,
    reason: &'a str,
    kind: &'a str,
    data: T,
}

/// HTTP 200 with envelope code 200 around `data`.
pub(crate) fn success<T: Serialize>(kind: &str, data: T) -> Response {
    success_with_code(200, kind, data)
}

/// issue 13: a success envelope as the dialect writes it for the answers whose examples
/// show `"code": 0` (reports and indicator plans): 0 in `Literal`, 200 otherwise.
pub(crate) fn success_zero_in<T: Serialize>(dialect: Dialect, kind: &str, data: T) -> Response {
    match dialect {
        Dialect::Enveloped => success(kind, data),
        Dialect::Literal => success_with_code(0, kind, data),
    }
}

/// issue 13: an answer without the envelope, as the document's monitoring examples and
/// Sobot's token documentation show some answers.
pub(crate) fn unwrapped<T: Serialize>(what: &str, body: T) -> Response {
    match serde_json::to_vec(&body) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            500,
            &format!("simulator could not encode {what}: {e}"),
        ),
    }
}

fn success_with_code<T: Serialize>(code: u16, kind: &str, data: T) -> Response {
    let env = Envelope {
        api_version: API_VERSION,
        status: "Success",
        message: "",
        code,
        reason: "OK",
        kind,
        data,
    };
    match serde_json::to_vec(&env) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            500,
            &format!("simulator could not encode {kind}: {e}"),
        ),
    }
}

/// An error envelope (`data` null) with the given HTTP status and envelope code.
pub(crate) fn failure(http: StatusCode, code: u16, message: &str) -> Response {
    let reason = StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let env = Envelope {
        api_version: API_VERSION,
        status: "Failed",
        message,
        code,
        reason,
        kind: "Error",
        data: (),
    };
    // Encoding this fixed shape cannot fail; an empty body would still carry the status.
    json_response(http, serde_json::to_vec(&env).unwrap_or_default())
}

/// HTTP 200 carrying an envelope error: the API's way of failing "successfully".
pub(crate) fn envelope_error(code: u16, message: &str) -> Response {
    failure(StatusCode::OK, code, message)
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

/// Reads a JSON request body; the error text names what was wrong for the 400 envelope.
pub(crate) fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))
}

/// An integer that may arrive as a JSON number or a numeric string; null means absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Lenient(pub Option<i64>);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'v> de::Visitor<'v> for V {
            type Value = Lenient;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer or a numeric string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
                i64::try_from(v)
                    .map(|v| Lenient(Some(v)))
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lenient, E> {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(Lenient(Some(v as i64)))
                } else {
                    Err(E::custom(format!("{v} is not an integer")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
                let t = v.trim();
                if t.is_empty() {
                    return Ok(Lenient(None));
                }
                match t.parse::<i64>() {
                    Ok(n) => Ok(Lenient(Some(n))),
                    Err(_) => match t.parse::<f64>() {
                        Ok(f) => self.visit_f64(f),
                        Err(_) => Err(E::custom(format!("{v:?} is not a number"))),
                    },
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
            fn visit_some<D: Deserializer<'v>>(self, d: D) -> Result<Lenient, D::Error> {
                d.deserialize_any(V)
            }
        }
        d.deserialize_any(V)
    }
}

/// A number or string kept as its text, since the token signature covers the text the
/// client sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NumText(pub String);

impl<'de> Deserialize<'de> for NumText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(NumText(s)),
            serde_json::Value::Number(n) => Ok(NumText(n.to_string())),
            other => Err(de::Error::custom(format!("expected a number, got {other}"))),
        }
    }
}

/// `maincdrs/_search` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct TalkSearch {
    pub start_time: Lenient,
    pub end_time: Lenient,
    pub page_num: Lenient,
    pub page_size: Lenient,
    pub hide_number: Lenient,
    pub call_type: Lenient,
    #[serde(rename = "callID")]
    pub call_id: Option<String>,
}

/// `cdrs/_search` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct CallSearch {
    #[serde(rename = "callID")]
    pub call_id: Option<String>,
    pub hide_number: Lenient,
}

/// `agent-histories/_search` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct HistorySearch {
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub page_num: Lenient,
    pub page_size: Lenient,
    pub agent: Option<Vec<String>>,
    pub agent_type: Lenient,
    pub login_status: Option<Vec<Lenient>>,
    pub work_status: Option<Vec<Lenient>>,
}

/// `tokens/company` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct TokenRequest {
    pub response_type: Option<String>,
    pub app_id: Option<String>,
    pub current_time: Option<NumText>,
    pub sign: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_arrive_as_numbers_or_strings() {
        let q: TalkSearch = parse_body(
            br#"{"startTime":"1700000000000","endTime":1700000360000,"pageNum":"2","pageSize":50.0,"callID":"x"}"#,
        )
        .unwrap_or_default();
        assert_eq!(q.start_time, Lenient(Some(1_700_000_000_000)));
        assert_eq!(q.end_time, Lenient(Some(1_700_000_360_000)));
        assert_eq!(q.page_num, Lenient(Some(2)));
        assert_eq!(q.page_size, Lenient(Some(50)));
        assert_eq!(q.hide_number, Lenient(None));
        assert!(parse_body::<TalkSearch>(br#"{"startTime":"soon"}"#).is_err());
        assert!(parse_body::<TalkSearch>(b"").is_ok());
    }

    #[test]
    fn token_time_keeps_the_sent_text() {
        let t: TokenRequest = parse_body(br#"{"currentTime":1700000000123}"#).unwrap_or_default();
        assert_eq!(t.current_time, Some(NumText("1700000000123".to_string())));
    }
}
