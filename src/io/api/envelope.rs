//! The `{code, status, message, reason, data}` envelope every Sobot answer wears.
//!
//! An HTTP 200 is not a success on its own: the envelope's `code` (and `status`) decide,
//! so this module turns a body into either its payload or a classified failure the retry
//! loop understands. Which forms are accepted, and what counts as success, is decided in
//! one place: [`wire`], the liberal reading (issue 13).

use super::ApiError;
use super::retry::Failure;
use super::wire::{self, Payload};
use crate::core::record::{self, PageIndex};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Longest server message copied into an error, so a chatty server cannot flood logs.
const MAX_MESSAGE_CHARS: usize = 200;

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

/// The envelope's top-level fields in the order sent, each left unparsed until needed:
/// `data` is handed on as raw text, so a page is parsed once, straight into what the
/// caller builds.
type Fields<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

fn field(envelope: &Fields<'_>, name: &str) -> Option<Value> {
    envelope
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, raw)| serde_json::from_str(raw.get()).ok())
}

/// Reads an object's top-level fields, in order, values as raw text.
struct TopSeed;

impl<'de> Visitor<'de> for TopSeed {
    type Value = Fields<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
        let mut out = Vec::new();
        while let Some(key) = m.next_key::<Cow<'de, str>>()? {
            out.push((key, m.next_value::<&'de RawValue>()?));
        }
        Ok(out)
    }
}

impl<'de> DeserializeSeed<'de> for TopSeed {
    type Value = Fields<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

/// The liberal reading's verdict on an envelope's fields.
fn judge(endpoint: &str, envelope: &Fields<'_>, has_data: bool) -> Result<Payload, Failure> {
    let fields: Vec<(&str, &str)> = envelope
        .iter()
        .map(|(k, v)| (k.as_ref(), v.get()))
        .collect();
    wire::verdict(endpoint, &fields, has_data, || message_of(envelope))
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

/// Turns a 2xx body into its payload (the envelope's `data`, or the whole body for the
/// forms the document shows without the envelope; see [`wire`]) as raw JSON text, or a
/// classified failure.
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
        return Err(wire::not_an_object(endpoint, body));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        decode(format!(
            "the body is not UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let envelope = read_top(endpoint, text)?;
    let data = envelope
        .iter()
        .find(|(k, _)| k == "data")
        .map(|(_, raw)| *raw)
        .filter(|raw| raw.get().trim() != "null");
    let (start, end) = match judge(endpoint, &envelope, data.is_some())? {
        // `raw` borrows from `text`: its position there is its range.
        Payload::Data => {
            let raw = data.map(RawValue::get).unwrap_or("null");
            let start = raw.as_ptr() as usize - text.as_ptr() as usize;
            (start, start + raw.len())
        }
        Payload::Body => {
            let trimmed = text.trim();
            let start = trimmed.as_ptr() as usize - text.as_ptr() as usize;
            (start, start + trimmed.len())
        }
    };
    Ok(Data {
        body: text.to_owned(),
        start,
        end,
    })
}

/// The top-level fields of a body that starts an object. Syntax errors (a cut-off body)
/// are transient and name a line and column, never the input text.
fn read_top<'t>(endpoint: &str, text: &'t str) -> Result<Fields<'t>, Failure> {
    let mut de = serde_json::Deserializer::from_str(text);
    TopSeed
        .deserialize(&mut de)
        .and_then(|fields| de.end().map(|()| fields))
        .map_err(|e| malformed(endpoint, text.len(), &e))
}

/// A body that could not be read as an object: transient when it is not JSON (cut off),
/// a shape when it is well-formed but not what we read.
fn malformed(endpoint: &str, len: usize, e: &serde_json::Error) -> Failure {
    if e.is_syntax() || e.is_eof() {
        Failure::transient(ApiError::Decode {
            endpoint: endpoint.to_owned(),
            detail: format!("malformed JSON ({len} bytes): {e}"),
        })
    } else {
        wire::shape_failure(
            endpoint,
            "the envelope cannot be read",
            &format!("{len} bytes of well-formed JSON"),
        )
    }
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
        return Err(wire::not_an_object(endpoint, &body));
    }
    // Usually no copy: reqwest hands over the only reference to the buffer.
    let text = String::from_utf8(Vec::from(body)).map_err(|e| {
        decode(format!(
            "the body is not UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let (fields, page) = record::read_enveloped(&text).map_err(|e| malformed(endpoint, len, &e))?;
    match judge(endpoint, &fields, page.is_some())? {
        Payload::Data => {}
        // No page endpoint has a bare form; this is here for completeness of the match.
        Payload::Body => {
            return Err(wire::shape_failure(
                endpoint,
                "a page was expected in `data`",
                &wire::shape_of(fields.iter().map(|(k, v)| (k.as_ref(), v.get()))),
            ));
        }
    }
    drop(fields);
    match page {
        Some(page) => Ok(PageData { body: text, page }),
        None => Err(wire::shape_failure(
            endpoint,
            "a page was expected in `data`",
            "no `data`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::retry::Class;
    use super::*;

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
    fn missing_data_is_a_shape_error() {
        let f = open("/x", br#"{"code":200}"#).err();
        assert!(matches!(
            f,
            Some(Failure {
                error: ApiError::Decode { .. },
                class: Class::Shape,
                ..
            })
        ));
    }

    #[test]
    fn bare_forms_hand_on_the_whole_body() {
        let body = br#" {"response_type":"token","access_token":"t","expires_in":7200} "#;
        let data = open("/tokens/company", body)
            .map(|d| d.get().to_owned())
            .ok();
        assert_eq!(
            data.as_deref(),
            Some(r#"{"response_type":"token","access_token":"t","expires_in":7200}"#)
        );
        let data = open("/r", br#"{"code":0,"status":"string","data":{"total":0}}"#)
            .map(|d| d.get().to_owned())
            .ok();
        assert_eq!(data.as_deref(), Some(r#"{"total":0}"#));
    }

    #[test]
    fn page_answers_follow_the_same_rules() {
        let page = |b: &'static [u8]| open_page("/p", bytes::Bytes::from_static(b));
        let ok = page(br#"{"code":"0","data":{"total":1,"list":[{"id":1}]}}"#)
            .map(|p| p.into_parts().1.map(|i| i.total));
        assert!(matches!(ok, Ok(Ok(Some(1)))));
        let f = page(br#"{"result":[]}"#).err();
        assert_eq!(f.as_ref().map(|f| f.class), Some(Class::Shape));
        assert!(
            f.is_some_and(|f| f.error.to_string().contains("result (an array)")),
            "the shape names the fields"
        );
        let f = page(br#"{"code":200,"data":{"li"#).err();
        assert_eq!(f.map(|f| f.class), Some(Class::Transient));
        let f = page(b"[]").err();
        assert_eq!(f.map(|f| f.class), Some(Class::Shape));
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
