//! The `{code, status, message, reason, data}` envelope every Sobot answer wears.
//!
//! An HTTP 200 is not a success on its own: the envelope's `code` decides, so this
//! module turns a body into either `data` or a classified failure the retry loop
//! understands.

use super::ApiError;
use super::retry::{Class, Failure};
use crate::record::{self, PageIndex};
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// Longest server message copied into an error, so a chatty server cannot flood logs.
const MAX_MESSAGE_CHARS: usize = 200;

/// What the envelope's `code` means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeClass {
    Success,
    /// 401/403: the token is not (or no longer) accepted.
    Unauthorized,
    /// Other 4xx except 408 and 429: asking again will not help.
    Permanent,
    /// 408, 429, 5xx-like and codes we do not know: worth another attempt.
    Transient,
}

pub(crate) fn classify_code(code: i64) -> CodeClass {
    match code {
        200 => CodeClass::Success,
        401 | 403 => CodeClass::Unauthorized,
        408 | 429 => CodeClass::Transient,
        400..=499 => CodeClass::Permanent,
        _ => CodeClass::Transient,
    }
}

/// The envelope's `data` as JSON text, kept inside the body it came in: extraction
/// parses it once, straight into records, instead of first into a `Value` tree.
#[derive(Clone)]
pub struct Data {
    body: String,
    start: usize,
    end: usize,
}

impl Data {
    /// The JSON text of `data` (already known to be well-formed).
    pub fn get(&self) -> &str {
        self.body.get(self.start..self.end).unwrap_or("null")
    }
}

impl std::fmt::Debug for Data {
    // Bodies may carry tokens (the token endpoint) or customer data: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Data({} bytes)", self.end - self.start)
    }
}

/// The envelope's top-level fields, each left unparsed until needed: `data` is handed
/// on as raw text, so a page is parsed once, straight into what the caller builds.
type Fields<'a> = HashMap<String, &'a RawValue>;

fn field(envelope: &Fields<'_>, name: &str) -> Option<Value> {
    envelope
        .get(name)
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
}

/// Reads `code` liberally: the API sends it as a number or as a numeric string.
fn code_of(envelope: &Fields<'_>) -> Option<i64> {
    match field(envelope, "code")? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The human part of an error envelope: `message`, else `reason`, else `status`.
fn message_of(envelope: &Fields<'_>) -> String {
    let texts: Vec<String> = ["message", "reason", "status"]
        .iter()
        .filter_map(|k| match field(envelope, k) {
            Some(Value::String(s)) => Some(s.trim().to_owned()),
            _ => None,
        })
        .collect();
    let text = texts
        .iter()
        .map(String::as_str)
        .find(|s| !s.is_empty())
        .unwrap_or("no message");
    let mut out: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    if text.chars().count() > MAX_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

/// Turns a 2xx body into the envelope's `data` (as raw JSON text), or a classified
/// failure.
///
/// Only the top level is parsed here, and fields are picked out by hand, so a field of an
/// unexpected type never produces a serde message quoting body content (which, at the
/// token endpoint, could be a token).
pub(crate) fn open(endpoint: &str, body: &[u8]) -> Result<Data, Failure> {
    let decode = |detail: String| {
        Failure::transient(ApiError::Decode {
            endpoint: endpoint.to_owned(),
            detail,
        })
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(decode("the body is not a JSON object".into()));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        decode(format!(
            "the body is not UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let envelope: Fields<'_> = serde_json::from_str(text).map_err(|e| {
        // Syntax errors name a line and column, never the input text; any other kind
        // of error is described without serde's message.
        if e.is_syntax() || e.is_eof() {
            decode(format!("malformed JSON ({} bytes): {e}", body.len()))
        } else {
            decode(format!("malformed envelope ({} bytes)", body.len()))
        }
    })?;
    let data = envelope
        .get("data")
        .filter(|raw| raw.get().trim() != "null");
    verdict(endpoint, code_of(&envelope), data.is_some(), || {
        message_of(&envelope)
    })?;
    match data {
        // `raw` borrows from `text`: its position there is its range.
        Some(raw) => {
            let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
            Ok(Data {
                body: text.to_owned(),
                start,
                end: start + raw.get().len(),
            })
        }
        None => Err(no_data(endpoint)),
    }
}

fn no_data(endpoint: &str) -> Failure {
    Failure::permanent(ApiError::Decode {
        endpoint: endpoint.to_owned(),
        detail: "the envelope says code 200 but carries no `data`".into(),
    })
}

/// What the envelope's `code` (and the presence of `data`) make of an answer.
fn verdict(
    endpoint: &str,
    code: Option<i64>,
    has_data: bool,
    message: impl FnOnce() -> String,
) -> Result<(), Failure> {
    let Some(code) = code else {
        return Err(Failure::transient(ApiError::Decode {
            endpoint: endpoint.to_owned(),
            detail: "the envelope has no numeric `code`".into(),
        }));
    };
    let class = classify_code(code);
    if class == CodeClass::Success {
        return if has_data {
            Ok(())
        } else {
            Err(no_data(endpoint))
        };
    }
    let error = ApiError::Envelope {
        endpoint: endpoint.to_owned(),
        code,
        message: message(),
    };
    let failure = match class {
        CodeClass::Unauthorized => Failure::new(error, Class::Unauthorized),
        CodeClass::Permanent => Failure::permanent(error),
        CodeClass::Transient | CodeClass::Success => Failure::transient(error),
    };
    Err(failure.with_rate_limited(code == 429))
}

/// A page answer: the body, and the page in its `data`, read in the same pass as the
/// envelope (scanning a body for the end of `data` first cost as much as reading the
/// page). A `data` that is not a page is kept as the reason, for the caller to report
/// with its own context: asking again would not change it.
pub struct PageData {
    body: String,
    page: Result<PageIndex, String>,
}

impl PageData {
    /// The body, and the page read from it (positions into the body) or why `data` is
    /// not a page.
    pub fn into_parts(self) -> (String, Result<PageIndex, String>) {
        (self.body, self.page)
    }
}

impl std::fmt::Debug for PageData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageData({} bytes)", self.body.len())
    }
}

/// Like [`open`], for answers whose `data` is a page of records.
pub(crate) fn open_page(endpoint: &str, body: bytes::Bytes) -> Result<PageData, Failure> {
    let decode = |detail: String| {
        Failure::transient(ApiError::Decode {
            endpoint: endpoint.to_owned(),
            detail,
        })
    };
    let len = body.len();
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(decode("the body is not a JSON object".into()));
    }
    // Usually no copy: reqwest hands over the only reference to the buffer.
    let text = String::from_utf8(Vec::from(body)).map_err(|e| {
        decode(format!(
            "the body is not UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let (fields, page) = record::read_enveloped(&text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            decode(format!("malformed JSON ({len} bytes): {e}"))
        } else {
            decode(format!("malformed envelope ({len} bytes)"))
        }
    })?;
    let envelope: Fields<'_> = fields
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v))
        .collect();
    verdict(endpoint, code_of(&envelope), page.is_some(), || {
        message_of(&envelope)
    })?;
    drop(envelope);
    match page {
        Some(page) => Ok(PageData { body: text, page }),
        None => Err(no_data(endpoint)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        assert_eq!(classify_code(200), CodeClass::Success);
        assert_eq!(classify_code(401), CodeClass::Unauthorized);
        assert_eq!(classify_code(403), CodeClass::Unauthorized);
        assert_eq!(classify_code(400), CodeClass::Permanent);
        assert_eq!(classify_code(404), CodeClass::Permanent);
        assert_eq!(classify_code(408), CodeClass::Transient);
        assert_eq!(classify_code(429), CodeClass::Transient);
        assert_eq!(classify_code(500), CodeClass::Transient);
        assert_eq!(classify_code(3001), CodeClass::Transient);
    }

    #[test]
    fn data_is_returned_for_numeric_and_string_codes() {
        let data = open("/x", br#"{"code":200,"data":{"total":3}}"#).ok();
        assert_eq!(
            data.map(|d| d.get().to_owned()),
            Some(r#"{"total":3}"#.to_owned())
        );
        let data = open("/x", br#"{"code":"200","message":"","data":[1]}"#).ok();
        assert_eq!(data.map(|d| d.get().to_owned()), Some("[1]".to_owned()));
        assert!(open("/x", br#"[{"code":200}]"#).is_err());
    }

    #[test]
    fn missing_data_is_a_permanent_decode_error() {
        let f = open("/x", br#"{"code":200}"#).err();
        assert!(matches!(
            f,
            Some(Failure {
                error: ApiError::Decode { .. },
                class: Class::Permanent,
                ..
            })
        ));
    }

    #[test]
    fn truncated_json_is_transient() {
        let f = open("/x", br#"{"code":200,"data":{"li"#).err();
        assert!(matches!(
            f,
            Some(Failure {
                error: ApiError::Decode { .. },
                class: Class::Transient,
                ..
            })
        ));
    }

    #[test]
    fn error_codes_keep_the_message_and_class() {
        let f = open(
            "/p",
            br#"{"code":"404","message":"no such plan","data":null}"#,
        )
        .err();
        match f {
            Some(Failure {
                error:
                    ApiError::Envelope {
                        endpoint,
                        code,
                        message,
                    },
                class,
                ..
            }) => {
                assert_eq!(
                    (endpoint.as_str(), code, message.as_str()),
                    ("/p", 404, "no such plan")
                );
                assert_eq!(class, Class::Permanent);
            }
            other => panic!("unexpected {other:?}"),
        }
        let f = open("/p", br#"{"code":500,"reason":"busy"}"#).err();
        assert!(matches!(
            f,
            Some(Failure {
                class: Class::Transient,
                ..
            })
        ));
        let f = open("/p", br#"{"code":429}"#).err();
        assert!(matches!(
            f,
            Some(Failure {
                class: Class::Transient,
                rate_limited: true,
                ..
            })
        ));
        let f = open("/p", br#"{"code":401,"message":"token expired"}"#).err();
        assert!(matches!(
            f,
            Some(Failure {
                class: Class::Unauthorized,
                ..
            })
        ));
    }
}
