//! Privacy (issue 4, part 7): columns marked `pii` in `schemas/` never reach the
//! warehouse as sent.
//!
//! `pii = "hash"` (or `"hash_if_key"` with a key set) stores the keyed hash
//! HMAC-SHA256(`SOBOT_SYNC_PII_KEY`, normalised value) in lower-case hex: the same number
//! gives the same hash in every table and run, so analysts can still join talks to
//! parties and count distinct customers, while nobody without the key can test a guessed
//! number against the warehouse (a plain SHA-256 of an 11-digit phone number is reversed
//! by trying them all). `pii = "drop"` stores null.
//!
//! The rewrite runs on the built Arrow batch of a window, once, just before it goes to
//! the sink (`protect`, called by the search and snapshot drivers), so the converter
//! stays as fast as it is and there is one place to audit. Besides the marked columns it
//! rewrites what would otherwise carry a raw number past them:
//! - `_errors`: an entry for a marked field holds the raw value; it gets the same
//!   treatment as the column (hashed or null).
//! - `_extra` and `json` columns (only with a key): fields the schema does not know, or
//!   nested custom data, whose name looks like a phone number (see [`is_pii_name`]) are
//!   hashed wherever they are nested.
//!
//! Files written with a key carry the key's fingerprint in their Arrow schema metadata
//! under [`KEY_ID_METADATA`], so that after a key rotation one can tell which files
//! still hold hashes of the old key.

use crate::core::error::ConfigError;
use crate::core::pipeline::Catalog;
use crate::core::schema::{ColumnType, Pii, TableSchema};
use crate::core::secret::Secret;
use arrow::array::{Array, ArrayRef, AsArray, StringArray, new_null_array};
use arrow::datatypes::{DataType, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// The shortest key accepted: 16 bytes (128 bits) keeps brute force of the key out of
/// reach; 32 random bytes (e.g. `openssl rand -hex 32`) are recommended.
pub const MIN_KEY_BYTES: usize = 16;

/// Arrow schema metadata key holding the fingerprint of the key a file was hashed with.
pub const KEY_ID_METADATA: &str = "sobot_sync.pii_key_id";

/// Parts of a field name (compared in lower case) that mark an unknown field in `_extra`
/// or a `json` column as a phone number to hash. Broad on purpose: hashing an order
/// number by mistake loses a little, storing a phone number in plain text is a leak.
const PII_NAME_PARTS: &[&str] = &[
    "number", "phone", "mobile", "pstn", "dnis", "tel", "caller", "callee",
];

/// The HMAC key. `Debug` shows only the fingerprint; the key itself is a [`Secret`].
#[derive(Clone)]
pub struct PiiKey {
    /// HMAC state after absorbing the key, cloned per value instead of re-keying.
    mac: Hmac<Sha256>,
    id: String,
}

impl std::fmt::Debug for PiiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PiiKey({})", self.id)
    }
}

impl PiiKey {
    /// Checks and prepares the key (`SOBOT_SYNC_PII_KEY`, already trimmed). The error
    /// says why without showing the value.
    pub fn new(secret: Secret) -> Result<Self, String> {
        let raw = secret.expose().as_bytes();
        if raw.len() < MIN_KEY_BYTES {
            return Err(format!(
                "(secret) is {} bytes long; a key needs at least {MIN_KEY_BYTES} (e.g. `openssl rand -hex 32`)",
                raw.len()
            ));
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(raw)
            .map_err(|_| "(secret) cannot be used as an HMAC key".to_string())?;
        // A fingerprint that names the key without revealing it: the HMAC of a fixed
        // label, so it cannot collide with a hashed value's use.
        let mut fp = mac.clone();
        fp.update(b"sobot-sync pii key id");
        let id = hex::encode(&fp.finalize().into_bytes()[..6]);
        Ok(Self { mac, id })
    }

    /// 12 hex digits identifying the key (files' [`KEY_ID_METADATA`], logs).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stored form of a value: lower-case hex HMAC-SHA256 of [`normalise`]d text.
    pub fn hash(&self, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(normalise(value).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// What is hashed: the text without surrounding whitespace and without the separators
/// people type into phone numbers (spaces, `-`, `.`, `(`, `)`), so `186 1825-6606` and
/// `18618256606` hash alike. Everything else (a leading `+`, masking `*`, letters) is
/// kept: normalising further could make two different values one.
pub fn normalise(value: &str) -> Cow<'_, str> {
    let t = value.trim();
    if t.bytes()
        .any(|b| b.is_ascii_whitespace() || matches!(b, b'-' | b'.' | b'(' | b')'))
    {
        Cow::Owned(
            t.chars()
                .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '.' | '(' | ')'))
                .collect(),
        )
    } else {
        Cow::Borrowed(t)
    }
}

/// Whether an unknown field's name marks it as a phone number (see [`PII_NAME_PARTS`]).
pub fn is_pii_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    PII_NAME_PARTS.iter().any(|p| lower.contains(p))
}

/// Refuses (exit 2) a catalog with `pii = "hash"` columns when no key is set: such a
/// column must never be stored as sent. Called when the engine is built.
pub fn validate(catalog: &Catalog, key: Option<&PiiKey>) -> Result<(), ConfigError> {
    if let Some(key) = key {
        // The fingerprint, so operators can match a run's logs to the files it wrote.
        tracing::info!(
            key_id = key.id(),
            "phone numbers in pii columns are stored as keyed hashes"
        );
        return Ok(());
    }
    for p in catalog.pipelines.values() {
        if let Some(c) = p.schema.columns.iter().find(|c| c.pii == Some(Pii::Hash)) {
            return Err(ConfigError::new(
                "SOBOT_SYNC_PII_KEY",
                format!(
                    "is not set, but column {:?} of table {} has pii = \"hash\"; set the key (at least {MIN_KEY_BYTES} bytes), or mark the column pii = \"hash_if_key\" or \"drop\"",
                    c.name, p.schema.table
                ),
            ));
        }
    }
    Ok(())
}

/// One line for `check`: which key hashes how many columns, or that the columns marked
/// `hash_if_key` are stored as sent because no key is set.
pub fn describe(catalog: &Catalog, key: Option<&PiiKey>) -> String {
    let mut tables = std::collections::BTreeMap::new();
    for p in catalog.pipelines.values() {
        let n = p
            .schema
            .columns
            .iter()
            .filter(|c| matches!(c.pii, Some(Pii::Hash | Pii::HashIfKey)))
            .count();
        if n > 0 {
            tables.insert(p.schema.table.as_str(), n);
        }
    }
    let count: usize = tables.values().sum();
    let names = tables.keys().copied().collect::<Vec<_>>().join(", ");
    match key {
        Some(k) => format!(
            "{count} phone-number columns ({names}) hashed with key {}",
            k.id()
        ),
        None => format!(
            "SOBOT_SYNC_PII_KEY not set: {count} phone-number columns ({names}) are stored as sent"
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error(
        "table {table}: column {column:?} has pii = \"hash\" but SOBOT_SYNC_PII_KEY is not set; nothing was written"
    )]
    NoKey { table: String, column: String },
    #[error("table {table}: cannot rewrite personal data: {source}")]
    Arrow {
        table: String,
        #[source]
        source: ArrowError,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Hash,
    Null,
}

/// What to rewrite in one table's batches, worked out from its schema and the key.
struct Plan<'a> {
    key: Option<&'a PiiKey>,
    /// Column index -> action, for the marked columns.
    columns: Vec<(usize, Action)>,
    /// API field name (and aliases) -> action, for `_errors` entries.
    fields: HashMap<&'a str, Action>,
    /// `json` columns, scrubbed by field name when a key is set.
    json: Vec<usize>,
}

impl<'a> Plan<'a> {
    fn new(schema: &'a TableSchema, key: Option<&'a PiiKey>) -> Result<Self, PrivacyError> {
        let mut columns = Vec::new();
        let mut fields = HashMap::new();
        let mut json = Vec::new();
        for (i, c) in schema.columns.iter().enumerate() {
            let action = match (c.pii, key) {
                (Some(Pii::Drop), _) => Some(Action::Null),
                (Some(Pii::Hash | Pii::HashIfKey), Some(_)) => Some(Action::Hash),
                (Some(Pii::HashIfKey), None) | (None, _) => None,
                (Some(Pii::Hash), None) => {
                    return Err(PrivacyError::NoKey {
                        table: schema.table.clone(),
                        column: c.name.clone(),
                    });
                }
            };
            if let Some(a) = action {
                columns.push((i, a));
            }
            if c.ty == ColumnType::Json && key.is_some() {
                json.push(i);
            }
        }
        for (field, &i) in &schema.by_field {
            if let Some(&(_, a)) = columns.iter().find(|(c, _)| *c == i) {
                fields.insert(field.as_str(), a);
            }
        }
        Ok(Self {
            key,
            columns,
            fields,
            json,
        })
    }

    fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.key.is_none()
    }
}

/// Returns `batch` (a table's rows as built by the converter, columns as in `schema`)
/// with its personal data rewritten as the schema's `pii` marks and the key say. Without
/// a key and without `drop` columns the batch is returned untouched.
pub fn protect(
    schema: &TableSchema,
    key: Option<&PiiKey>,
    batch: RecordBatch,
) -> Result<RecordBatch, PrivacyError> {
    let plan = Plan::new(schema, key)?;
    if plan.is_empty() {
        return Ok(batch);
    }
    let arrow_err = |source| PrivacyError::Arrow {
        table: schema.table.clone(),
        source,
    };
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    for &(i, action) in &plan.columns {
        let col = &arrays[i];
        arrays[i] = match (action, plan.key) {
            (Action::Hash, Some(key)) => {
                let text = col.as_string_opt::<i32>().ok_or_else(|| {
                    arrow_err(ArrowError::SchemaError(format!(
                        "column {} is {}, not text",
                        schema.columns[i].name,
                        col.data_type()
                    )))
                })?;
                Arc::new(hash_strings(text, key))
            }
            _ => new_null_array(col.data_type(), col.len()),
        };
    }
    if let Some(key) = plan.key {
        for &i in &plan.json {
            arrays[i] =
                rewrite_json_column(&arrays[i], |t| !may_name_pii(t), |v| scrub_by_name(v, key))
                    .map_err(arrow_err)?;
        }
        if let Ok(i) = batch.schema().index_of("_extra") {
            arrays[i] =
                rewrite_json_column(&arrays[i], |t| !may_name_pii(t), |v| scrub_by_name(v, key))
                    .map_err(arrow_err)?;
        }
    }
    if !plan.fields.is_empty()
        && let Ok(i) = batch.schema().index_of("_errors")
    {
        arrays[i] = rewrite_json_column(&arrays[i], |_| false, |v| scrub_errors(v, &plan))
            .map_err(arrow_err)?;
    }
    let schema_ref = match plan.key {
        Some(key) => {
            let mut metadata = batch.schema().metadata().clone();
            metadata.insert(KEY_ID_METADATA.to_string(), key.id().to_string());
            Arc::new(Schema::new_with_metadata(
                batch.schema().fields().clone(),
                metadata,
            ))
        }
        None => batch.schema(),
    };
    RecordBatch::try_new(schema_ref, arrays).map_err(arrow_err)
}

/// Null stays null and `""` stays `""` (hashing "no number" would make every empty value
/// one fake customer); every other value becomes its hash.
fn hash_strings(text: &arrow::array::StringArray, key: &PiiKey) -> StringArray {
    text.iter()
        .map(|v| {
            v.map(|s| {
                if s.trim().is_empty() {
                    String::new()
                } else {
                    key.hash(s)
                }
            })
        })
        .collect()
}

/// Rewrites each JSON text of a text column with `f`; `f` returns whether it changed the
/// value, so untouched rows keep their exact text. Text that is not JSON (never written
/// by the converter) becomes null rather than pass unchecked.
fn rewrite_json_column(
    col: &ArrayRef,
    skip: impl Fn(&str) -> bool,
    f: impl Fn(&mut Value) -> bool,
) -> Result<ArrayRef, ArrowError> {
    if col.data_type() != &DataType::Utf8 {
        return Err(ArrowError::SchemaError(format!(
            "a JSON column is {}, not text",
            col.data_type()
        )));
    }
    let text = col.as_string::<i32>();
    let out: StringArray = text
        .iter()
        .map(|v| {
            let s = v?;
            if skip(s) {
                return Some(s.to_string());
            }
            match serde_json::from_str::<Value>(s) {
                Ok(mut parsed) => {
                    if f(&mut parsed) {
                        Some(parsed.to_string())
                    } else {
                        Some(s.to_string())
                    }
                }
                Err(_) => None,
            }
        })
        .collect();
    Ok(Arc::new(out))
}

/// Whether a JSON text can hold a field [`scrub_by_name`] would change: it names one of
/// [`PII_NAME_PARTS`], or has an escape (`\u0070hone` spells `phone`). Most rows have
/// neither and are kept without parsing.
fn may_name_pii(text: &str) -> bool {
    text.contains('\\') || is_pii_name(text)
}

/// Hashes, at any depth, the values of fields whose name looks like a phone number.
fn scrub_by_name(v: &mut Value, key: &PiiKey) -> bool {
    let mut changed = false;
    match v {
        Value::Object(map) => {
            for (name, value) in map.iter_mut() {
                if is_pii_name(name) {
                    changed |= hash_value(value, key);
                } else {
                    changed |= scrub_by_name(value, key);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                changed |= scrub_by_name(item, key);
            }
        }
        _ => {}
    }
    changed
}

/// A JSON value replaced by the hash of its text (a string's own text, anything else's
/// compact JSON); null and `""` are left as they are.
fn hash_value(v: &mut Value, key: &PiiKey) -> bool {
    let text = match &*v {
        Value::Null => return false,
        Value::String(s) if s.trim().is_empty() => return false,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    *v = Value::String(key.hash(&text));
    true
}

/// `_errors` is an array of `{field, value, error}`: the value of a marked field is the
/// raw number, so it is hashed or nulled like its column.
fn scrub_errors(v: &mut Value, plan: &Plan<'_>) -> bool {
    let mut changed = false;
    if let Value::Array(entries) = v {
        for e in entries {
            let Some(obj) = e.as_object_mut() else {
                continue;
            };
            let action = obj
                .get("field")
                .and_then(Value::as_str)
                .and_then(|f| plan.fields.get(f).copied());
            let (Some(action), Some(value)) = (action, obj.get_mut("value")) else {
                continue;
            };
            changed |= match (action, plan.key) {
                (Action::Hash, Some(key)) => hash_value(value, key),
                _ => {
                    *value = Value::Null;
                    true
                }
            };
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::convert::{BatchBuilder, RowMeta};
    use crate::core::record::parse_record;

    const KEY: &str = "0123456789abcdef-test-key";

    fn key() -> PiiKey {
        PiiKey::new(Secret::new(KEY)).unwrap()
    }

    /// Independent reference: RFC 2104 HMAC over SHA-256 built from `sha2` alone.
    fn reference_hmac(key: &[u8], msg: &[u8]) -> String {
        use sha2::Digest;
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(msg)
            .finalize();
        hex::encode(
            Sha256::new()
                .chain_update(&opad)
                .chain_update(inner)
                .finalize(),
        )
    }

    fn schema(pii_customer: &str) -> TableSchema {
        TableSchema::parse(
            &format!(
                r#"
table = "t"
key = ["call_id"]
time_column = "start_time"
[[columns]]
field = "callID"
type = "string"
[[columns]]
field = "startTime"
type = "timestamp_ms"
[[columns]]
field = "customerNumber"
type = "string"
aliases = ["custNo"]
pii = "{pii_customer}"
[[columns]]
field = "DNIS"
type = "string"
pii = "drop"
[[columns]]
field = "attachedData"
type = "json"
[[columns]]
field = "birthYear"
type = "int"
pii = "drop"
"#
            ),
            "t.toml",
        )
        .unwrap()
    }

    fn batch(schema: &TableSchema, records: &[&str]) -> RecordBatch {
        let mut b = BatchBuilder::new(schema, chrono_tz::Asia::Singapore, 8);
        for r in records {
            b.push(&parse_record(r).unwrap());
        }
        b.finish(&RowMeta {
            run_id: "r".into(),
            extracted_at_ms: 0,
            window_start_ms: 0,
            window_end_ms: 1,
        })
        .unwrap()
    }

    fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
        b.column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn hash_is_rfc_hmac_sha256_of_the_normalised_value() {
        let k = key();
        assert_eq!(
            k.hash("18618256606"),
            reference_hmac(KEY.as_bytes(), b"18618256606")
        );
        assert_eq!(k.hash(" 186 1825-6606 "), k.hash("18618256606"));
        assert_eq!(k.hash("(186)18256606"), k.hash("18618256606"));
        assert_ne!(k.hash("+8618618256606"), k.hash("8618618256606"));
        assert_ne!(k.hash("186****6606"), k.hash("1866606"));
        let other = PiiKey::new(Secret::new("another key of 16+ bytes")).unwrap();
        assert_ne!(other.hash("18618256606"), k.hash("18618256606"));
        assert_ne!(other.id(), k.id());
        assert_eq!(k.id().len(), 12);
    }

    #[test]
    fn short_keys_are_refused_without_showing_them() {
        let e = PiiKey::new(Secret::new("short-secret")).unwrap_err();
        assert!(e.contains("16") && !e.contains("short-secret"), "{e}");
        assert!(!format!("{:?}", key()).contains(KEY));
    }

    #[test]
    fn columns_errors_extra_and_json_are_rewritten() {
        let s = schema("hash_if_key");
        let b = batch(
            &s,
            &[
                r#"{"callID":"a","startTime":1,"customerNumber":" 18618256606 ","DNIS":"18655668888",
                    "callerPhone":"13900001111","queueTag":"vip",
                    "attachedData":{"orderNo":"O-1","contact":{"mobileNo":"13700002222"}}}"#,
                r#"{"callID":"b","startTime":2,"customerNumber":"","DNIS":{"x":"18655669999"},"ph\u006fne":"13600004444"}"#,
                r#"{"callID":"c","startTime":3,"custNo":{"n":"18600003333"},"birthYear":"19790401x"}"#,
            ],
        );
        let k = key();
        let out = protect(&s, Some(&k), b).unwrap();
        let customer = strings(&out, "customer_number");
        assert_eq!(customer[0].as_deref(), Some(k.hash("18618256606").as_str()));
        assert_eq!(customer[1].as_deref(), Some(""));
        assert_eq!(strings(&out, "dnis"), vec![None, None, None]);
        let errors = strings(&out, "_errors")[2].clone().unwrap();
        assert!(
            errors.contains("birthYear") && errors.contains("\"value\":null"),
            "{errors}"
        );
        let extra = strings(&out, "_extra")[0].clone().unwrap();
        assert!(extra.contains(&k.hash("13900001111")), "{extra}");
        assert!(extra.contains("\"queueTag\":\"vip\""), "{extra}");
        let escaped = strings(&out, "_extra")[1].clone().unwrap();
        assert!(escaped.contains(&k.hash("13600004444")), "{escaped}");
        let attached = strings(&out, "attached_data")[0].clone().unwrap();
        assert!(attached.contains(&k.hash("13700002222")) && attached.contains("O-1"));
        // Every raw number is gone from every column of every row.
        let all = format!("{:?}", out.columns());
        for n in [
            "18618256606",
            "18655668888",
            "13900001111",
            "13700002222",
            "18655669999",
            "18600003333",
            "19790401",
            "13600004444",
        ] {
            assert!(!all.contains(n), "{n} left in {all}");
        }
        assert_eq!(
            out.schema()
                .metadata()
                .get(KEY_ID_METADATA)
                .map(String::as_str),
            Some(k.id())
        );
    }

    #[test]
    fn without_a_key_only_drop_applies_and_hash_is_refused() {
        let s = schema("hash_if_key");
        let records = [
            r#"{"callID":"a","startTime":1,"customerNumber":"18618256606","DNIS":"1865","callerPhone":"139"}"#,
        ];
        let out = protect(&s, None, batch(&s, &records)).unwrap();
        assert_eq!(
            strings(&out, "customer_number")[0].as_deref(),
            Some("18618256606")
        );
        assert_eq!(strings(&out, "dnis")[0], None);
        assert!(
            strings(&out, "_extra")[0]
                .as_deref()
                .unwrap()
                .contains("139")
        );
        assert!(out.schema().metadata().is_empty());

        let strict = schema("hash");
        let e = protect(&strict, None, batch(&strict, &records)).unwrap_err();
        assert!(e.to_string().contains("SOBOT_SYNC_PII_KEY"), "{e}");
    }

    #[test]
    fn the_key_setting_is_checked_and_never_shown() {
        use crate::app::settings::Settings;
        use std::collections::BTreeMap;
        let env = |v: &str| BTreeMap::from([("SOBOT_SYNC_PII_KEY".to_string(), v.to_string())]);
        let e = Settings::from_sources(None, &env("short-secret")).unwrap_err();
        assert!(e.to_string().contains("SOBOT_SYNC_PII_KEY"), "{e}");
        assert!(!e.to_string().contains("short-secret"), "{e}");
        let s = Settings::from_sources(None, &env(KEY)).unwrap();
        assert_eq!(s.pii_key.as_ref().map(PiiKey::id), Some(key().id()));
        assert!(!format!("{s:?}").contains(KEY));
        assert!(
            Settings::from_sources(None, &env("  "))
                .unwrap()
                .pii_key
                .is_none()
        );
        // From the settings file, under the documented name.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, format!("sync_pii_key = \"{KEY}\"\n")).unwrap();
        let s = Settings::from_sources(Some(&f), &BTreeMap::new()).unwrap();
        assert_eq!(s.pii_key.as_ref().map(PiiKey::id), Some(key().id()));
    }

    #[test]
    fn schema_rules() {
        let bad = |text: &str| TableSchema::parse(text, "x.toml").unwrap_err().to_string();
        let base = "table='t'\nkey=['id']\ntime_column='t'\n[[columns]]\nfield='id'\ntype='string'\n[[columns]]\nfield='t'\ntype='timestamp_ms'\n";
        let e = bad(&format!(
            "{base}[[columns]]\nfield='n'\ntype='int'\npii='hash'\n"
        ));
        assert!(e.contains("string"), "{e}");
        let e = bad(&format!(
            "{base}[[columns]]\nfield='n'\ntype='string'\npii='mask'\n"
        ));
        assert!(e.contains("mask") || e.contains("pii"), "{e}");
        let e = bad(&base.replace("type='string'\n", "type='string'\npii='drop'\n"));
        assert!(e.contains("key"), "{e}");
        let e = bad(&base.replace("type='timestamp_ms'\n", "type='timestamp_ms'\npii='drop'\n"));
        assert!(e.contains("time"), "{e}");
        // A hashed key stays unique and is allowed.
        TableSchema::parse(
            &base.replace("type='string'\n", "type='string'\npii='hash'\n"),
            "x.toml",
        )
        .unwrap();
    }
}
