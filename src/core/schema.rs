//! Table schemas from `schemas/<table>.toml`: which API field becomes which column, of
//! which type, plus the key and the time column. Schemas are data, so a new field is a
//! schema edit, not code.

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// How an API value becomes a column value (see `convert` for the exact rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// Text; numbers and booleans become their text, padding spaces are trimmed.
    String,
    /// 64-bit integer from a number or a numeric string.
    Int,
    /// 64-bit float from a number or a numeric string.
    Float,
    Bool,
    /// Epoch milliseconds -> TIMESTAMP(ms, UTC).
    TimestampMs,
    /// A local `yyyy-MM-dd HH:mm[:ss]` string in SOBOT_TIMEZONE -> TIMESTAMP(ms, UTC).
    LocalTime,
    /// A nested object or array, kept as JSON text.
    Json,
}

impl ColumnType {
    pub fn arrow(self) -> DataType {
        match self {
            Self::String | Self::Json => DataType::Utf8,
            Self::Int => DataType::Int64,
            Self::Float => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::TimestampMs | Self::LocalTime => timestamp_type(),
        }
    }
}

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    /// The API field name, as the API spells it (`callID`).
    pub field: String,
    /// The column name; by default the field name in snake_case (`call_id`).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Other spellings of the field seen in the wild (`pageData` vs `list`-style drift).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// What the column means, for people reading the schema.
    #[serde(default)]
    pub doc: Option<String>,
    /// Personal data: how the column is kept out of the warehouse (`crate::core::privacy`).
    #[serde(default)]
    pub pii: Option<Pii>,
}

/// How a column holding personal data (a customer's phone number) is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pii {
    /// The keyed hash (HMAC-SHA256, lower-case hex) of the value; needs
    /// `SOBOT_SYNC_PII_KEY`, and without it the configuration is refused (exit 2).
    Hash,
    /// As `Hash` when `SOBOT_SYNC_PII_KEY` is set; the value as sent otherwise. The
    /// shipped customer-number columns use it, so that setting the key is all it takes.
    HashIfKey,
    /// Always null, key or not; the column stays, so the table's schema does not change.
    Drop,
}

impl Pii {
    /// As written in a schema file.
    pub fn as_str(self) -> &'static str {
        match self {
            Pii::Hash => "hash",
            Pii::HashIfKey => "hash_if_key",
            Pii::Drop => "drop",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    table: String,
    key: Vec<String>,
    time_column: String,
    #[serde(default)]
    doc: Option<String>,
    columns: Vec<ColumnDef>,
}

/// A checked table schema.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub table: String,
    pub doc: Option<String>,
    pub columns: Vec<Column>,
    /// Indexes into `columns`.
    pub key: Vec<usize>,
    pub time: usize,
    /// API field name (and aliases) -> column index.
    pub by_field: HashMap<String, usize>,
    pub arrow: SchemaRef,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub field: String,
    pub ty: ColumnType,
    /// Other spellings of `field`, tried when the record has no `field`.
    pub aliases: Vec<String>,
    /// issue 4 privacy: `None` for ordinary columns.
    pub pii: Option<Pii>,
}

/// The Arrow schema of a table: its data columns, all nullable (the API may leave any
/// field out), then [`META_COLUMNS`], of which only `_extra` and `_errors` may be null.
pub fn arrow_schema(columns: &[Column]) -> SchemaRef {
    let mut fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(&c.name, c.ty.arrow(), true))
        .collect();
    fields.push(Field::new("_extra", DataType::Utf8, true));
    fields.push(Field::new("_errors", DataType::Utf8, true));
    fields.push(Field::new("_extracted_at", timestamp_type(), false));
    fields.push(Field::new("_run_id", DataType::Utf8, false));
    fields.push(Field::new("_window_start", timestamp_type(), false));
    fields.push(Field::new("_window_end", timestamp_type(), false));
    debug_assert_eq!(fields.len(), columns.len() + META_COLUMNS.len());
    Arc::new(Schema::new(fields))
}

/// Columns every table has after the data columns.
pub const META_COLUMNS: &[&str] = &[
    "_extra",
    "_errors",
    "_extracted_at",
    "_run_id",
    "_window_start",
    "_window_end",
];

#[derive(Debug, thiserror::Error)]
#[error("schema {origin}: {reason}")]
pub struct SchemaError {
    pub origin: String,
    pub reason: String,
}

/// `callID` -> `call_id`, `agentUUID` -> `agent_uuid`, `lastAgentDN` -> `last_agent_dn`,
/// `DNIS` -> `dnis`, `startTimeMs` -> `start_time_ms` (CONTRACT section 4).
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = if i > 0 { Some(chars[i - 1]) } else { None };
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None => false,
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '-' || c == ' ' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    out
}

impl TableSchema {
    /// Parses and checks one schema file's text. `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SchemaError> {
        let err = |reason: String| SchemaError {
            origin: origin.to_string(),
            reason,
        };
        let file: SchemaFile = toml::from_str(text).map_err(|e| err(e.message().to_string()))?;
        if file.columns.is_empty() {
            return Err(err("has no columns".into()));
        }
        let mut columns = Vec::with_capacity(file.columns.len());
        let mut by_field = HashMap::new();
        let mut names = HashMap::new();
        for (i, c) in file.columns.iter().enumerate() {
            let name = c.name.clone().unwrap_or_else(|| snake_case(&c.field));
            if name.is_empty()
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
            {
                return Err(err(format!("column {name:?} is not a snake_case name")));
            }
            if name.starts_with('_') || META_COLUMNS.contains(&name.as_str()) {
                return Err(err(format!(
                    "column {name:?}: names starting with _ are reserved"
                )));
            }
            if names.insert(name.clone(), i).is_some() {
                return Err(err(format!("column {name:?} appears twice")));
            }
            for f in std::iter::once(&c.field).chain(c.aliases.iter()) {
                if by_field.insert(f.clone(), i).is_some() {
                    return Err(err(format!("field {f:?} is mapped twice")));
                }
            }
            if let Some(pii) = c.pii {
                check_column(&name, c.ty, pii).map_err(err)?;
            }
            columns.push(Column {
                name,
                field: c.field.clone(),
                ty: c.ty,
                aliases: c.aliases.clone(),
                pii: c.pii,
            });
        }
        let find = |n: &str| {
            names
                .get(n)
                .copied()
                .ok_or_else(|| err(format!("{n:?} is not one of its columns")))
        };
        if file.key.is_empty() {
            return Err(err("key must name at least one column".into()));
        }
        let key = file
            .key
            .iter()
            .map(|k| find(k))
            .collect::<Result<Vec<_>, _>>()?;
        let time = find(&file.time_column)?;
        // issue 4 privacy: the time column places rows in windows and partitions, and a
        // key column must stay unique, so neither may be dropped (nor the time hashed).
        for &i in key.iter().chain(std::iter::once(&time)) {
            let c = &columns[i];
            if c.pii == Some(Pii::Drop) || (i == time && c.pii.is_some()) {
                return Err(err(format!(
                    "column {:?} is the key or time column and cannot have pii = {:?}",
                    c.name,
                    c.pii.map(Pii::as_str).unwrap_or_default()
                )));
            }
        }
        if !matches!(
            columns[time].ty,
            ColumnType::TimestampMs | ColumnType::LocalTime
        ) {
            return Err(err(format!(
                "time_column {:?} must be of type timestamp_ms or local_time",
                file.time_column
            )));
        }
        let arrow = arrow_schema(&columns);
        Ok(Self {
            table: file.table,
            doc: file.doc,
            columns,
            key,
            time,
            by_field,
            arrow,
        })
    }

    pub fn time_column(&self) -> &Column {
        &self.columns[self.time]
    }
}

/// A column's `pii` against its type: a hash is text, so only `string` columns can be
/// hashed (`core::privacy` does the hashing).
fn check_column(name: &str, ty: ColumnType, pii: Pii) -> Result<(), String> {
    match pii {
        Pii::Hash | Pii::HashIfKey if ty != ColumnType::String => Err(format!(
            "column {name:?}: pii = \"{}\" needs type = \"string\" (a hash is text); use pii = \"drop\" for other types",
            pii.as_str()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_follows_the_contract() {
        for (api, col) in [
            ("callID", "call_id"),
            ("agentUUID", "agent_uuid"),
            ("lastAgentDN", "last_agent_dn"),
            ("DNIS", "dnis"),
            ("partyId", "party_id"),
            ("startTimeMs", "start_time_ms"),
            ("belongAgentPSTN", "belong_agent_pstn"),
            ("firstCallAgentUUID", "first_call_agent_uuid"),
            ("id", "id"),
        ] {
            assert_eq!(snake_case(api), col, "{api}");
        }
    }

    #[test]
    fn rejects_bad_schemas() {
        let ok = "table='t'\nkey=['id']\ntime_column='t'\n[[columns]]\nfield='id'\ntype='string'\n[[columns]]\nfield='t'\ntype='timestamp_ms'\n";
        let s = TableSchema::parse(ok, "t.toml").unwrap();
        assert_eq!(s.arrow.fields().len(), 2 + META_COLUMNS.len());
        let bad_key = ok.replace("key=['id']", "key=['nope']");
        assert!(
            TableSchema::parse(&bad_key, "t.toml")
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
        let bad_type = ok.replace("type='string'", "type='text'");
        assert!(TableSchema::parse(&bad_type, "t.toml").is_err());
        let unknown = format!("{ok}\nextra_key = 1\n");
        assert!(TableSchema::parse(&unknown, "t.toml").is_err());
        let bad_time = ok.replace("time_column='t'", "time_column='id'");
        assert!(
            TableSchema::parse(&bad_time, "t.toml")
                .unwrap_err()
                .to_string()
                .contains("time_column")
        );
    }
}
