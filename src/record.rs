//! API records as they arrive: each field's value left as raw JSON text until a column
//! builder asks for it.
//!
//! Parsing a page into `serde_json::Value` trees allocated a map node and a string per
//! field, and cost more than everything after it. Here a page is parsed once: a record
//! is a list of (field name, raw value) borrowed from the response text, and a value is
//! read only as far as its column's type needs.

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
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

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Key<'a>;
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
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

impl<'a> RawRecord<'a> {
    fn visit<'de: 'a, M: MapAccess<'de>>(mut m: M) -> Result<Self, M::Error> {
        let mut fields = Vec::with_capacity(m.size_hint().unwrap_or(48));
        while let Some((k, v)) = m.next_entry::<Key<'a>, &'a RawValue>()? {
            fields.push((k.0, v));
        }
        Ok(RawRecord { fields })
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawRecord<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawRecord<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<Self::Value, M::Error> {
                RawRecord::visit(m)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
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

/// A list entry: a record, or what else it was (an error, reported by kind).
enum Entry<'a> {
    Record(RawRecord<'a>),
    Other(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for Entry<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Entry<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list entry")
            }
            fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<Self::Value, M::Error> {
                RawRecord::visit(m).map(Entry::Record)
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut s: S) -> Result<Self::Value, S::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Entry::Other("an array"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Entry::Other("a string"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Entry::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Entry::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Entry::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Entry::Other("a number"))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Entry::Other("null"))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A value where a list is expected: the entries, `null`, or the kind of what came.
enum List<'a> {
    Entries(Vec<Entry<'a>>),
    Null,
    Other(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for List<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = List<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut s: S) -> Result<Self::Value, S::Error> {
                let mut out = Vec::with_capacity(s.size_hint().unwrap_or(64));
                while let Some(e) = s.next_element::<Entry<'a>>()? {
                    out.push(e);
                }
                Ok(List::Entries(out))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(List::Null)
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(List::Other("an object"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(List::Other("a string"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(List::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(List::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(List::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(List::Other("a number"))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A page's `data` object: the list under any of its names, and the counters. One
/// pass over the text reads it all; other fields are skipped.
#[derive(Deserialize)]
struct PageObject<'a> {
    #[serde(borrow, default)]
    list: Option<List<'a>>,
    #[serde(borrow, default, rename = "pageData")]
    page_data: Option<List<'a>>,
    #[serde(borrow, default)]
    records: Option<List<'a>>,
    #[serde(borrow, default)]
    rows: Option<List<'a>>,
    #[serde(borrow, default)]
    total: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "pageSize")]
    page_size: Option<&'a RawValue>,
}

/// Reads a page from `data`'s JSON text.
pub fn read_page(data: &str) -> Result<Page<'_>, String> {
    let text = data.trim_start();
    if text.starts_with('[') {
        let list: List<'_> =
            serde_json::from_str(data).map_err(|e| format!("data cannot be read: {e}"))?;
        return Ok(Page {
            records: entries("data", list)?,
            total: None,
            page_size: None,
        });
    }
    if !text.starts_with('{') {
        let kind = match text.as_bytes().first() {
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') | None => "null",
            _ => "a number",
        };
        return Err(format!("data is {kind}, not an object"));
    }
    let obj: PageObject<'_> =
        serde_json::from_str(data).map_err(|e| format!("data cannot be read: {e}"))?;
    let total = obj.total.and_then(as_u64);
    let page_size = obj.page_size.and_then(as_u64);
    let lists = [
        ("list", obj.list),
        ("pageData", obj.page_data),
        ("records", obj.records),
        ("rows", obj.rows),
    ];
    let mut records = None;
    for (name, list) in lists {
        match list {
            None | Some(List::Null) => continue,
            Some(list) => {
                records = Some(entries(name, list)?);
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

fn entries<'a>(name: &str, list: List<'a>) -> Result<Vec<RawRecord<'a>>, String> {
    match list {
        List::Entries(es) => es
            .into_iter()
            .map(|e| match e {
                Entry::Record(r) => Ok(r),
                Entry::Other(kind) => Err(format!("a {name} entry is {kind}, not an object")),
            })
            .collect(),
        List::Null => Ok(Vec::new()),
        List::Other(kind) => Err(format!("{name} is {kind}, not an array")),
    }
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
        let p = read_page(d.get()).unwrap();
        assert_eq!(
            (p.total, p.page_size, p.records.len()),
            (Some(12), Some(15), 1)
        );
        let d = raw(r#"{"total": 0}"#);
        assert!(read_page(d.get()).unwrap().records.is_empty());
        let d = raw(r#"{"total": 3, "list": null}"#);
        assert!(read_page(d.get()).is_err());
        let d = raw(r#""nope""#);
        assert!(read_page(d.get()).unwrap_err().contains("a string"));
        let d = raw(r#"{"list": 5, "total": 1}"#);
        assert!(read_page(d.get()).unwrap_err().contains("list is a number"));
        let d = raw(r#"{"list": [1], "total": 1}"#);
        assert!(
            read_page(d.get())
                .unwrap_err()
                .contains("entry is a number")
        );
        let d = raw(r#"{"list": {"a": 1}, "total": 1}"#);
        assert!(
            read_page(d.get())
                .unwrap_err()
                .contains("list is an object")
        );
        let d = raw(r#"[{"a": "x"}]"#);
        assert_eq!(read_page(d.get()).unwrap().records.len(), 1);
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
