//! API records as they arrive: each field's value left as raw JSON text until a column
//! builder asks for it.
//!
//! Parsing a page into `serde_json::Value` trees allocated a map node and a string per
//! field, and cost more than everything after it. Here a page is parsed once: a record
//! is a list of (field name, raw value) borrowed from the response text, and a value is
//! read only as far as its column's type needs.
//!
//! "Once" includes the envelope around the page: the API client reads the envelope and
//! the page in one pass ([`PageIndex`], via `envelope::open_page`), because scanning a
//! body for the end of `data` cost as much as reading the records in it. An index holds
//! positions, not borrows, so it can leave the client's retry loop together with the
//! body it points into.

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// One record: its fields in the order the API sent them, each value as its JSON text.
#[derive(Debug, Default)]
pub struct RawRecord<'a> {
    pub fields: Vec<(Cow<'a, str>, &'a str)>,
}

impl<'a> RawRecord<'a> {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| *v)
    }

    /// Adds `name` unless the record has a usable value for it (absent, `null` and
    /// blank strings count as missing): how children inherit fields of their parent.
    pub fn inherit(&mut self, name: &'a str, value: &'a str) {
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

fn is_blank(v: &str) -> bool {
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

/// Classifies a raw value (its JSON text) by its first character; strings are
/// unescaped only when they contain escapes.
pub fn scalar(raw: &str) -> Scalar<'_> {
    // Values cut from a parsed document carry no surrounding blanks; other callers may.
    let blank = |b: Option<&u8>| b.is_some_and(u8::is_ascii_whitespace);
    let text = if blank(raw.as_bytes().first()) || blank(raw.as_bytes().last()) {
        raw.trim()
    } else {
        raw
    };
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
pub fn kind_of(raw: &str) -> &'static str {
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
pub fn as_u64(raw: &str) -> Option<u64> {
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

/// Where a piece of text lies in the document it was read from.
#[derive(Debug, Clone, Copy)]
struct Pos {
    start: u32,
    len: u32,
}

/// A field name: where it lies when it came without escapes, else the index of its
/// unescaped text in [`PageIndex`]'s `keys`.
#[derive(Debug, Clone, Copy)]
enum KeyAt {
    Text(Pos),
    Escaped(u32),
}

#[derive(Debug, Clone, Copy)]
struct FieldAt {
    key: KeyAt,
    value: Pos,
}

/// What the seeds below share while reading one document.
struct Ctx {
    /// Address of the document's first byte: positions are taken relative to it.
    base: usize,
    /// Field names that had escapes, unescaped.
    keys: Vec<String>,
    /// Fields of the last record read: records of a page share their shape, so this
    /// sizes the next one's field list.
    width: usize,
}

impl Ctx {
    fn new(text: &str) -> Self {
        Self {
            base: text.as_ptr() as usize,
            keys: Vec::new(),
            width: 16,
        }
    }

    /// The position of `s`, which must be borrowed from the document (documents longer
    /// than `u32::MAX` bytes are refused before reading).
    fn pos(&self, s: &str) -> Pos {
        Pos {
            start: (s.as_ptr() as usize).wrapping_sub(self.base) as u32,
            len: s.len() as u32,
        }
    }
}

/// The longest document positions can describe.
const MAX_DOCUMENT: usize = u32::MAX as usize;

struct KeySeed<'c>(&'c mut Ctx);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = KeyAt;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyAt, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = KeyAt;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<KeyAt, E> {
        Ok(KeyAt::Text(self.0.pos(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<KeyAt, E> {
        self.0.keys.push(v.to_owned());
        Ok(KeyAt::Escaped((self.0.keys.len() - 1) as u32))
    }
}

/// Reads an object's fields as positions.
fn read_fields<'de, M: MapAccess<'de>>(ctx: &mut Ctx, mut m: M) -> Result<Vec<FieldAt>, M::Error> {
    let mut fields = Vec::with_capacity(ctx.width);
    while let Some(key) = m.next_key_seed(KeySeed(ctx))? {
        let value: &'de RawValue = m.next_value()?;
        fields.push(FieldAt {
            key,
            value: ctx.pos(value.get()),
        });
    }
    ctx.width = ctx.width.max(fields.len());
    Ok(fields)
}

/// A list entry: a record's fields, or the kind of what came instead.
struct EntrySeed<'c>(&'c mut Ctx);

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = Result<Vec<FieldAt>, &'static str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_> {
    type Value = Result<Vec<FieldAt>, &'static str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list entry")
    }
    fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<Self::Value, M::Error> {
        read_fields(self.0, m).map(Ok)
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut s: S) -> Result<Self::Value, S::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err("an array"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err("a string"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err("null"))
    }
}

/// A value where a list is expected.
enum ListAt {
    Entries(Vec<Vec<FieldAt>>),
    /// An entry that is not an object (the first one's kind).
    BadEntry(&'static str),
    Null,
    Other(&'static str),
}

/// Reads a list's entries, all of them even after a bad one (the document must be
/// read to its end either way).
fn read_entries<'de, S: SeqAccess<'de>>(ctx: &mut Ctx, mut s: S) -> Result<ListAt, S::Error> {
    let mut out = Vec::with_capacity(s.size_hint().unwrap_or(64));
    let mut bad = None;
    while let Some(entry) = s.next_element_seed(EntrySeed(ctx))? {
        match entry {
            Ok(fields) => out.push(fields),
            Err(kind) => bad = bad.or(Some(kind)),
        }
    }
    Ok(match bad {
        Some(kind) => ListAt::BadEntry(kind),
        None => ListAt::Entries(out),
    })
}

struct ListSeed<'c>(&'c mut Ctx);

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ListAt;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ListAt, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ListAt;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<S: SeqAccess<'de>>(self, s: S) -> Result<ListAt, S::Error> {
        read_entries(self.0, s)
    }
    fn visit_unit<E>(self) -> Result<ListAt, E> {
        Ok(ListAt::Null)
    }
    fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<ListAt, M::Error> {
        while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(ListAt::Other("an object"))
    }
    fn visit_str<E>(self, _: &str) -> Result<ListAt, E> {
        Ok(ListAt::Other("a string"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<ListAt, E> {
        Ok(ListAt::Other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<ListAt, E> {
        Ok(ListAt::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<ListAt, E> {
        Ok(ListAt::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<ListAt, E> {
        Ok(ListAt::Other("a number"))
    }
}

/// What a page's `data` held: the records and counters, `null`, or why it is not a page.
enum DataAt {
    Page {
        records: Vec<Vec<FieldAt>>,
        total: Option<u64>,
        page_size: Option<u64>,
    },
    Null,
    NotAPage(String),
}

/// Reads a page from `data`, read liberally: the list may be called `list`, `pageData`,
/// `records` or `rows`, or `data` may be the list itself; numbers may be strings.
struct DataSeed<'c>(&'c mut Ctx);

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = DataAt;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<DataAt, D::Error> {
        d.deserialize_any(self)
    }
}

fn entries_of(name: &str, list: ListAt) -> Result<Vec<Vec<FieldAt>>, String> {
    match list {
        ListAt::Entries(es) => Ok(es),
        ListAt::BadEntry(kind) => Err(format!("a {name} entry is {kind}, not an object")),
        ListAt::Null => Ok(Vec::new()),
        ListAt::Other(kind) => Err(format!("{name} is {kind}, not an array")),
    }
}

fn not_a_page(kind: &str) -> DataAt {
    DataAt::NotAPage(format!("data is {kind}, not an object"))
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = DataAt;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a page")
    }
    fn visit_seq<S: SeqAccess<'de>>(self, s: S) -> Result<DataAt, S::Error> {
        let list = read_entries(self.0, s)?;
        Ok(match entries_of("data", list) {
            Ok(records) => DataAt::Page {
                records,
                total: None,
                page_size: None,
            },
            Err(why) => DataAt::NotAPage(why),
        })
    }
    fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<DataAt, M::Error> {
        const LISTS: [&str; 4] = ["list", "pageData", "records", "rows"];
        let mut lists: [Option<ListAt>; 4] = [None, None, None, None];
        let (mut total, mut page_size) = (None, None);
        // issue 13: data's field names and kinds, for the message when it is no page.
        let mut seen: Vec<(Cow<'de, str>, &'static str)> = Vec::new();
        while let Some(key) = m.next_key::<Key<'de>>()? {
            let kind = match key.0.as_ref() {
                "total" => {
                    let raw = m.next_value::<&'de RawValue>()?.get();
                    total = as_u64(raw);
                    kind_of(raw)
                }
                "pageSize" => {
                    let raw = m.next_value::<&'de RawValue>()?.get();
                    page_size = as_u64(raw);
                    kind_of(raw)
                }
                name => match LISTS.iter().position(|l| *l == name) {
                    Some(i) => {
                        let list = m.next_value_seed(ListSeed(&mut *self.0))?;
                        let kind = match &list {
                            ListAt::Entries(_) | ListAt::BadEntry(_) => "an array",
                            ListAt::Null => "null",
                            ListAt::Other(kind) => kind,
                        };
                        lists[i] = Some(list);
                        kind
                    }
                    None => kind_of(m.next_value::<&'de RawValue>()?.get()),
                },
            };
            seen.push((key.0, kind));
        }
        // The first list present and not null, in the order above.
        let chosen = LISTS
            .iter()
            .zip(lists)
            .find_map(|(name, l)| l.filter(|l| !matches!(l, ListAt::Null)).map(|l| (name, l)));
        Ok(match chosen {
            Some((name, list)) => match entries_of(name, list) {
                Ok(records) => DataAt::Page {
                    records,
                    total,
                    page_size,
                },
                Err(why) => DataAt::NotAPage(why),
            },
            // No list at all with total 0 is an empty page.
            None if total == Some(0) => DataAt::Page {
                records: Vec::new(),
                total,
                page_size,
            },
            None => DataAt::NotAPage(format!(
                "no list (list/pageData) in data; data is {}",
                crate::io::api::wire::describe(seen.iter().map(|(k, kind)| (k.as_ref(), *kind)))
            )),
        })
    }
    fn visit_unit<E>(self) -> Result<DataAt, E> {
        Ok(DataAt::Null)
    }
    fn visit_str<E>(self, _: &str) -> Result<DataAt, E> {
        Ok(not_a_page("a string"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<DataAt, E> {
        Ok(not_a_page("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<DataAt, E> {
        Ok(not_a_page("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<DataAt, E> {
        Ok(not_a_page("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<DataAt, E> {
        Ok(not_a_page("a number"))
    }
}

/// A page read from a document, its records kept as positions in that document's text.
#[derive(Debug, Default)]
pub struct PageIndex {
    records: Vec<Vec<FieldAt>>,
    keys: Vec<String>,
    pub total: Option<u64>,
    pub page_size: Option<u64>,
}

impl PageIndex {
    /// The records, borrowed from `text`, which must be the text the index was read from.
    pub fn into_page(self, text: &str) -> Page<'_> {
        let mut keys = self.keys;
        let at = |p: Pos| {
            let start = p.start as usize;
            text.get(start..start + p.len as usize)
        };
        let mut records = Vec::with_capacity(self.records.len());
        for positions in self.records {
            let mut fields = Vec::with_capacity(positions.len());
            for f in positions {
                let key = match f.key {
                    KeyAt::Text(p) => at(p).map(Cow::Borrowed),
                    KeyAt::Escaped(i) => keys
                        .get_mut(i as usize)
                        .map(|k| Cow::Owned(std::mem::take(k))),
                };
                // Positions come from reading `text`; a miss means the caller passed
                // another text, and the field is left out rather than misread.
                if let (Some(key), Some(value)) = (key, at(f.value)) {
                    fields.push((key, value));
                }
            }
            records.push(RawRecord { fields });
        }
        Page {
            records,
            total: self.total,
            page_size: self.page_size,
        }
    }
}

/// An envelope's fields other than `data`, as raw text.
pub(crate) type Fields<'t> = Vec<(Cow<'t, str>, &'t RawValue)>;

/// Reads an envelope's fields, `data` as a page.
struct EnvelopeSeed<'c>(&'c mut Ctx);

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = (Fields<'de>, Option<DataAt>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
        let mut fields = Vec::new();
        let mut data = None;
        while let Some(key) = m.next_key::<Key<'de>>()? {
            if key.0 == "data" {
                data = Some(m.next_value_seed(DataSeed(&mut *self.0))?);
            } else {
                fields.push((key.0, m.next_value::<&'de RawValue>()?));
            }
        }
        Ok((fields, data))
    }
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = (Fields<'de>, Option<DataAt>);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

/// Reads a document of the form `{..., "data": <page>, ...}` (an API envelope) in one
/// pass: the page inside `data` as an index, every other top-level field as raw text.
pub(crate) fn read_enveloped(
    text: &str,
) -> Result<(Fields<'_>, Option<Result<PageIndex, String>>), serde_json::Error> {
    if text.len() > MAX_DOCUMENT {
        return Err(serde::de::Error::custom(
            "the document is larger than 4 GiB",
        ));
    }
    let mut ctx = Ctx::new(text);
    let mut de = serde_json::Deserializer::from_str(text);
    let (fields, data) = EnvelopeSeed(&mut ctx).deserialize(&mut de)?;
    de.end()?;
    let page = match data {
        None | Some(DataAt::Null) => None,
        Some(data) => Some(index(data, ctx)),
    };
    Ok((fields, page))
}

fn index(data: DataAt, ctx: Ctx) -> Result<PageIndex, String> {
    match data {
        DataAt::Page {
            records,
            total,
            page_size,
        } => Ok(PageIndex {
            records,
            keys: ctx.keys,
            total,
            page_size,
        }),
        DataAt::Null => Err("data is null, not an object".into()),
        DataAt::NotAPage(why) => Err(why),
    }
}

/// Reads a page from `data`'s JSON text.
pub fn read_page(data: &str) -> Result<Page<'_>, String> {
    if data.len() > MAX_DOCUMENT {
        return Err("data is larger than 4 GiB".into());
    }
    let mut ctx = Ctx::new(data);
    let mut de = serde_json::Deserializer::from_str(data);
    let read = DataSeed(&mut ctx)
        .deserialize(&mut de)
        .and_then(|d| de.end().map(|()| d))
        .map_err(|e| format!("data cannot be read: {e}"))?;
    Ok(index(read, ctx)?.into_page(data))
}

/// Parses one record from JSON text (tests, and records kept as text).
pub fn parse_record(text: &str) -> Result<RawRecord<'_>, String> {
    if !text.trim_start().starts_with('{') {
        return Err("a record must be a JSON object".into());
    }
    if text.len() > MAX_DOCUMENT {
        return Err("a record larger than 4 GiB".into());
    }
    let mut ctx = Ctx::new(text);
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = EntrySeed(&mut ctx)
        .deserialize(&mut de)
        .and_then(|r| de.end().map(|()| r))
        .map_err(|e| format!("record cannot be read: {e}"))?
        .map_err(|kind| format!("a record must be a JSON object, not {kind}"))?;
    let index = PageIndex {
        records: vec![fields],
        keys: ctx.keys,
        total: None,
        page_size: None,
    };
    Ok(index.into_page(text).records.pop().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_read_liberally() {
        let p = read_page(
            r#"{"currPage": 1, "pageSize": "15", "total": "12", "pageData": [{"id": 1}]}"#,
        )
        .unwrap();
        assert_eq!(
            (p.total, p.page_size, p.records.len()),
            (Some(12), Some(15), 1)
        );
        assert_eq!(p.records[0].get("id"), Some("1"));
        assert!(read_page(r#"{"total": 0}"#).unwrap().records.is_empty());
        assert!(read_page(r#"{"total": 3, "list": null}"#).is_err());
        // issue 13: a data that is no page is described by its fields, never values.
        let why = read_page(r#"{"total": 3, "items": [{"secret": 1}], "next": "tok"}"#)
            .err()
            .unwrap_or_default();
        assert!(
            why.ends_with(
                "data is an object with total (a number), items (an array), next (a string)"
            ),
            "{why}"
        );
        assert!(!why.contains("tok") && !why.contains("secret"), "{why}");
        assert!(read_page(r#""nope""#).unwrap_err().contains("a string"));
        assert!(
            read_page(r#"{"list": 5, "total": 1}"#)
                .unwrap_err()
                .contains("list is a number")
        );
        assert!(
            read_page(r#"{"list": [1], "total": 1}"#)
                .unwrap_err()
                .contains("entry is a number")
        );
        assert!(
            read_page(r#"{"list": {"a": 1}, "total": 1}"#)
                .unwrap_err()
                .contains("list is an object")
        );
        assert_eq!(read_page(r#"[{"a": "x"}]"#).unwrap().records.len(), 1);
        assert!(read_page(r#"{"list": [{"a": 1}"#).is_err());
        assert!(read_page(r#"{"list": [], "total": 0} x"#).is_err());
    }

    #[test]
    fn the_first_non_null_list_wins_and_counters_are_read_anywhere() {
        let p =
            read_page(r#"{"list": null, "rows": [{"b": 2}], "pageData": [{"a": 1}], "total": 1}"#)
                .unwrap();
        assert_eq!(p.records[0].get("a"), Some("1"));
        let p = read_page(
            r#"{"records": [{"c": [1, {"d": "e"}]}, {"c": 2}], "x": {"y": 1}, "total": 2.0}"#,
        )
        .unwrap();
        assert_eq!(p.total, Some(2));
        assert_eq!(p.records[0].get("c"), Some(r#"[1, {"d": "e"}]"#));
        assert_eq!(p.records[1].get("c"), Some("2"));
    }

    #[test]
    fn enveloped_pages_are_read_in_one_pass() {
        let text = r#"{"code": 200, "data": {"total": 2, "list": [{"id": "a\u0062", "k\u0031": 1}, {"id": " c "}]}, "message": "ok"}"#;
        let (fields, page) = read_enveloped(text).unwrap();
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(names, ["code", "message"]);
        let page = page.unwrap().unwrap().into_page(text);
        assert_eq!(page.total, Some(2));
        assert_eq!(
            page.records[0].fields[0],
            (Cow::Borrowed("id"), r#""a\u0062""#)
        );
        assert_eq!(page.records[0].fields[1].0, "k1");
        assert_eq!(page.records[1].get("id"), Some(r#"" c ""#));
        let (_, page) = read_enveloped(r#"{"code": 500, "data": null}"#).unwrap();
        assert!(page.is_none());
        let (_, page) = read_enveloped(r#"{"code": 200, "data": "x"}"#).unwrap();
        assert!(page.unwrap().is_err());
        assert!(read_enveloped(r#"{"code": 200, "data": {"list": [{"a""#).is_err());
        assert!(read_enveloped("[1]").is_err());
    }

    #[test]
    fn scalars_are_classified_and_unescaped() {
        assert_eq!(
            scalar(r#"" a\"b ""#),
            Scalar::Str(Cow::Owned(" a\"b ".into()))
        );
        assert!(matches!(
            scalar(r#""plain""#),
            Scalar::Str(Cow::Borrowed("plain"))
        ));
        assert!(matches!(
            scalar(" \"padded\"\n"),
            Scalar::Str(Cow::Borrowed("padded"))
        ));
        assert_eq!(scalar("12.5"), Scalar::Num("12.5"));
        assert_eq!(scalar("null"), Scalar::Null);
        assert_eq!(scalar("false"), Scalar::Bool(false));
        assert_eq!(scalar(r#"{"a":1}"#), Scalar::Nested(r#"{"a":1}"#));
        assert_eq!(as_u64(r#"" 42 ""#), Some(42));
        assert_eq!(as_u64("42.0"), Some(42));
        assert_eq!(as_u64("-1"), None);
    }

    #[test]
    fn escaped_keys_and_inheritance() {
        let text = r#"{"a\u0062": 1, "callID": "", "x": null}"#;
        let mut r = parse_record(text).unwrap();
        assert_eq!(r.fields[0].0, "ab");
        r.inherit("callID", r#""c1""#);
        r.inherit("x", "7");
        assert_eq!(r.get("callID"), Some(r#""c1""#));
        assert_eq!(r.get("x"), Some("7"));
        r.inherit("callID", r#""zzz""#);
        assert_eq!(r.get("callID"), Some(r#""c1""#));
        assert!(parse_record("[1]").is_err());
        assert!(parse_record(r#"{"a": 1} {"#).is_err());
    }
}
