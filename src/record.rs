//! API records as they arrive: each field's value left as raw JSON text until a column
//! builder asks for it.
//!
//! Parsing a page into `serde_json::Value` trees allocated a map node and a string per
//! field, and cost more than everything after it. Here a page is parsed once: a record
//! is a list of (field name, raw value) borrowed from the response text, and a value is
//! read only as far as its column's type needs.

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// One record: its fields in the order the API sent them.
#[derive(Debug, Default)]
pub struct RawRecord<'a> {
    pub fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawRecord<'a> {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| *v)
    }

    /// Adds `name` unless the record has a usable value for it (absent, `null` and
    /// blank strings count as missing): how children inherit fields of their parent.
    pub fn inherit(&mut self, name: &'a str, value: &'a RawValue) {
        let usable = self
            .fields
            .iter()
            .any(|(k, v)| k.as_ref() == name && !is_blank(v));
        if !usable {
            self.fields.retain(|(k, _)| k.as_ref() != name);
            self.fields.push((Cow::Borrowed(name), value));
        }
    }
}

fn is_blank(v: &RawValue) -> bool {
    match scalar(v) {
        Scalar::Null => true,
        Scalar::Str(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// A field name: borrowed from the response unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for RawRecord<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRecord<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::with_capacity(m.size_hint().unwrap_or(48));
                while let Some((k, v)) = m.next_entry::<Key<'de>, &'de RawValue>()? {
                    fields.push((k.0, v));
                }
                Ok(RawRecord { fields })
            }
        }
        d.deserialize_map(V)
    }
}

/// A raw value, read just far enough to know what it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A JSON number, as written.
    Num(&'a str),
    /// A string, unescaped.
    Str(Cow<'a, str>),
    /// An object or array, as JSON text.
    Nested(&'a str),
}

/// Classifies a raw value by its first character; strings are unescaped only when they
/// contain escapes.
pub fn scalar(raw: &RawValue) -> Scalar<'_> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'"') => {
            let inner = &text[1..text.len().saturating_sub(1).max(1)];
            if inner.contains('\\') {
                match serde_json::from_str::<String>(text) {
                    Ok(s) => Scalar::Str(Cow::Owned(s)),
                    Err(_) => Scalar::Str(Cow::Borrowed(inner)),
                }
            } else {
                Scalar::Str(Cow::Borrowed(inner))
            }
        }
        Some(b't') => Scalar::Bool(true),
        Some(b'f') => Scalar::Bool(false),
        Some(b'n') | None => Scalar::Null,
        Some(b'{' | b'[') => Scalar::Nested(text),
        Some(_) => Scalar::Num(text),
    }
}

/// "a string", "an object", ... for messages about unexpected shapes.
pub fn kind_of(raw: &RawValue) -> &'static str {
    match scalar(raw) {
        Scalar::Null => "null",
        Scalar::Bool(_) => "a boolean",
        Scalar::Num(_) => "a number",
        Scalar::Str(_) => "a string",
        Scalar::Nested(t) if t.starts_with('[') => "an array",
        Scalar::Nested(_) => "an object",
    }
}

/// A whole number from a number or a numeric string.
pub fn as_u64(raw: &RawValue) -> Option<u64> {
    match scalar(raw) {
        Scalar::Num(t) => t.parse::<u64>().ok().or_else(|| {
            t.parse::<f64>()
                .ok()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 9.0e15)
                .map(|f| f as u64)
        }),
        Scalar::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// What a page's `data` holds, read liberally: the list may be called `list`,
/// `pageData`, `records` or `rows`, or `data` may be the list itself; numbers may be
/// strings.
#[derive(Debug)]
pub struct Page<'a> {
    pub records: Vec<RawRecord<'a>>,
    pub total: Option<u64>,
    pub page_size: Option<u64>,
}

/// The names a page's list goes by.
const LIST_NAMES: [&str; 4] = ["list", "pageData", "records", "rows"];

pub fn read_page(data: &RawValue) -> Result<Page<'_>, String> {
    let text = data.get().trim_start();
    if text.starts_with('[') {
        return Ok(Page {
            records: read_list(data, "data")?,
            total: None,
            page_size: None,
        });
    }
    if !text.starts_with('{') {
        return Err(format!("data is {}, not an object", kind_of(data)));
    }
    let obj: HashMap<String, &RawValue> =
        serde_json::from_str(data.get()).map_err(|e| format!("data cannot be read: {e}"))?;
    let total = obj.get("total").and_then(|v| as_u64(v));
    let page_size = obj.get("pageSize").and_then(|v| as_u64(v));
    let mut records = None;
    for name in LIST_NAMES {
        match obj.get(name) {
            Some(v) if scalar(v) == Scalar::Null => continue,
            None => continue,
            Some(v) => {
                records = Some(read_list(v, name)?);
                break;
            }
        }
    }
    Ok(Page {
        // No list at all with total 0 is an empty page.
        records: match records {
            Some(r) => r,
            None if total == Some(0) => Vec::new(),
            None => return Err("no list (list/pageData) in data".into()),
        },
        total,
        page_size,
    })
}

/// A list of records; an entry that is not an object is an error naming its kind.
fn read_list<'a>(raw: &'a RawValue, name: &str) -> Result<Vec<RawRecord<'a>>, String> {
    if !raw.get().trim_start().starts_with('[') {
        return Err(format!("{name} is {}, not an array", kind_of(raw)));
    }
    let entries: Vec<&RawValue> =
        serde_json::from_str(raw.get()).map_err(|e| format!("{name} cannot be read: {e}"))?;
    entries
        .into_iter()
        .map(|e| {
            if !e.get().trim_start().starts_with('{') {
                return Err(format!("a {name} entry is {}, not an object", kind_of(e)));
            }
            serde_json::from_str::<RawRecord<'_>>(e.get())
                .map_err(|err| format!("a {name} entry cannot be read: {err}"))
        })
        .collect()
}

/// Parses one record from JSON text (tests, and records kept as text).
pub fn parse_record(text: &str) -> Result<RawRecord<'_>, String> {
    if !text.trim_start().starts_with('{') {
        return Err("a record must be a JSON object".into());
    }
    serde_json::from_str(text).map_err(|e| format!("record cannot be read: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn pages_are_read_liberally() {
        let d = raw(r#"{"currPage": 1, "pageSize": "15", "total": "12", "pageData": [{"id": 1}]}"#);
        let p = read_page(&d).unwrap();
        assert_eq!(
            (p.total, p.page_size, p.records.len()),
            (Some(12), Some(15), 1)
        );
        let d = raw(r#"{"total": 0}"#);
        assert!(read_page(&d).unwrap().records.is_empty());
        let d = raw(r#"{"total": 3, "list": null}"#);
        assert!(read_page(&d).is_err());
        let d = raw(r#""nope""#);
        assert!(read_page(&d).unwrap_err().contains("a string"));
        let d = raw(r#"{"list": 5, "total": 1}"#);
        assert!(read_page(&d).unwrap_err().contains("list is a number"));
        let d = raw(r#"{"list": [1], "total": 1}"#);
        assert!(read_page(&d).unwrap_err().contains("entry is a number"));
        let d = raw(r#"[{"a": "x"}]"#);
        assert_eq!(read_page(&d).unwrap().records.len(), 1);
    }

    #[test]
    fn scalars_are_classified_and_unescaped() {
        let v = raw(r#"" a\"b ""#);
        assert_eq!(scalar(&v), Scalar::Str(Cow::Owned(" a\"b ".into())));
        let v = raw(r#""plain""#);
        assert!(matches!(scalar(&v), Scalar::Str(Cow::Borrowed("plain"))));
        assert_eq!(scalar(&raw("12.5")), Scalar::Num("12.5"));
        assert_eq!(scalar(&raw("null")), Scalar::Null);
        assert_eq!(scalar(&raw("false")), Scalar::Bool(false));
        assert_eq!(scalar(&raw(r#"{"a":1}"#)), Scalar::Nested(r#"{"a":1}"#));
        assert_eq!(as_u64(&raw(r#"" 42 ""#)), Some(42));
        assert_eq!(as_u64(&raw("42.0")), Some(42));
        assert_eq!(as_u64(&raw("-1")), None);
    }

    #[test]
    fn escaped_keys_and_inheritance() {
        let text = r#"{"a\u0062": 1, "callID": "", "x": null}"#;
        let mut r = parse_record(text).unwrap();
        assert_eq!(r.fields[0].0, "ab");
        let id = raw(r#""c1""#);
        let x = raw("7");
        r.inherit("callID", &id);
        r.inherit("x", &x);
        assert_eq!(r.get("callID").map(|v| v.get()), Some(r#""c1""#));
        assert_eq!(r.get("x").map(|v| v.get()), Some("7"));
        let keep = raw(r#""zzz""#);
        r.inherit("callID", &keep);
        assert_eq!(r.get("callID").map(|v| v.get()), Some(r#""c1""#));
    }
}
