//! issue 15: what a `children` pipeline knows of its parents, and which parents' children
//! a window fetches.
//!
//! A child window takes its parents from the rows the parent pipeline committed (the
//! parent table), not from the parent's API. When it commits, it records, per parent of
//! the window, a digest: the parent's key, a hash of the parent's row as it was when its
//! children were read, and how many children it had. The next run's lookback window
//! fetches the children of a parent only when that parent
//! - is new (not in the digest: a late call, or a window never loaded),
//! - changed (its row's hash differs: the API revised the call),
//! - ended within the settle period (`refetch_within_secs`: its legs may still change),
//! - or has not the stored children the digest says it had (a file lost or replaced by
//!   hand): those would be lost otherwise.
//!
//! Every other parent's children are kept as stored. The digest is 14 bytes a parent,
//! kept in the child's state for the lookback horizon only.

use crate::core::schema::{ColumnType, TableSchema};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;

/// One parent row of a child window, read back from the parent table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentRow {
    /// The value the child endpoint's placeholder takes (the call id), trimmed.
    pub id: String,
    /// (child field, value as JSON text in the API's form): what the children inherit.
    pub inherited: Vec<(String, String)>,
    /// [`row_hash`] of the parent's row.
    pub hash: u32,
    /// When the parent ended (epoch ms); `None` when unknown, which counts as settling.
    pub end_ms: Option<i64>,
}

/// Why a parent's children are fetched; `None` from [`reason`] keeps the stored ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    New,
    Changed,
    Settling,
    /// The stored children do not match the digest's count.
    Missing,
}

/// What a committed window recorded of its parents: (key hash, row hash, children),
/// sorted by key hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digest {
    entries: Vec<(u64, u32, u16)>,
}

/// Bytes per parent in the encoded digest.
const ENTRY_BYTES: usize = 8 + 4 + 2;

impl Digest {
    /// The digest of a window's parents and the number of children each has now.
    pub fn of(parents: &[ParentRow], children: &HashMap<String, u32>) -> Self {
        let mut entries: Vec<(u64, u32, u16)> = parents
            .iter()
            .map(|p| {
                let n = children.get(&p.id).copied().unwrap_or(0);
                (
                    key_hash(&p.id),
                    p.hash,
                    u16::try_from(n).unwrap_or(u16::MAX),
                )
            })
            .collect();
        entries.sort_unstable();
        entries.dedup_by_key(|e| e.0);
        Self { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (row hash, children) recorded for the parent `id`.
    pub fn get(&self, id: &str) -> Option<(u32, u16)> {
        let k = key_hash(id);
        self.entries
            .binary_search_by_key(&k, |e| e.0)
            .ok()
            .map(|i| (self.entries[i].1, self.entries[i].2))
    }

    /// Base64 of the packed entries: about 19 characters a parent in the state's JSON.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(self.entries.len() * ENTRY_BYTES);
        for (k, h, n) in &self.entries {
            bytes.extend_from_slice(&k.to_le_bytes());
            bytes.extend_from_slice(&h.to_le_bytes());
            bytes.extend_from_slice(&n.to_le_bytes());
        }
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
    }

    /// Reads [`Digest::encode`]'s form back. The state is ours, but a file edited by hand
    /// must not panic: a bad digest is an error, and the caller fetches every parent.
    pub fn decode(s: &str) -> Result<Self, String> {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(s.trim())
            .map_err(|e| format!("parent digest is not base64: {e}"))?;
        if bytes.len() % ENTRY_BYTES != 0 {
            return Err(format!(
                "parent digest has {} bytes, not a multiple of {ENTRY_BYTES}",
                bytes.len()
            ));
        }
        let mut entries: Vec<(u64, u32, u16)> = bytes
            .chunks_exact(ENTRY_BYTES)
            .map(|c| {
                let mut k = [0u8; 8];
                let mut h = [0u8; 4];
                let mut n = [0u8; 2];
                k.copy_from_slice(&c[..8]);
                h.copy_from_slice(&c[8..12]);
                n.copy_from_slice(&c[12..]);
                (
                    u64::from_le_bytes(k),
                    u32::from_le_bytes(h),
                    u16::from_le_bytes(n),
                )
            })
            .collect();
        entries.sort_unstable();
        entries.dedup_by_key(|e| e.0);
        Ok(Self { entries })
    }
}

/// Where a child finds what it needs in its parent's table (column indexes into the
/// parent's schema), checked when the definitions load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The parent column holding the endpoint placeholder's value (`call_id`).
    pub key: usize,
    /// The parent's time column: which rows belong to a window.
    pub time: usize,
    /// When a parent ended: `parent_end_field`, by default the parent's time column.
    pub end: usize,
    /// (child field, parent column) for each `[inherit]` entry.
    pub inherit: Vec<(String, usize)>,
    /// The child column holding the parent's key: which stored child rows belong to
    /// which parent.
    pub child_key: usize,
}

/// Resolves a `children` definition against both schemas. Every field must be a column
/// the parent table stores as the API sent it: a personal-data column is stored hashed or
/// dropped, so a child could not inherit it.
pub fn link(
    parent_field: &str,
    inherit: &std::collections::BTreeMap<String, String>,
    end_field: Option<&str>,
    parent: &TableSchema,
    child: &TableSchema,
) -> Result<Link, String> {
    let column = |field: &str, what: &str| -> Result<usize, String> {
        let i = *parent.by_field.get(field).ok_or_else(|| {
            format!(
                "{what} {field:?} is not a column of the parent's table {}: children take their parents from it",
                parent.table
            )
        })?;
        if parent.columns[i].pii.is_some() {
            return Err(format!(
                "{what} {field:?} is personal data in the parent's table {} (pii = {:?}), stored hashed or dropped: a child cannot inherit it",
                parent.table,
                parent.columns[i]
                    .pii
                    .map(|p| p.as_str())
                    .unwrap_or_default()
            ));
        }
        Ok(i)
    };
    let key = column(parent_field, "the endpoint's placeholder")?;
    let mut links = Vec::with_capacity(inherit.len());
    for (child_field, parent_src) in inherit {
        links.push((child_field.clone(), column(parent_src, "inherit source")?));
    }
    let end = match end_field {
        Some(f) => {
            let i = column(f, "parent_end_field")?;
            if !matches!(
                parent.columns[i].ty,
                ColumnType::TimestampMs | ColumnType::LocalTime
            ) {
                return Err(format!(
                    "parent_end_field {f:?} must be a timestamp_ms or local_time column of {}",
                    parent.table
                ));
            }
            i
        }
        None => parent.time,
    };
    let child_key = *child.by_field.get(parent_field).ok_or_else(|| {
        format!(
            "the child's table {} has no column for the parent's {parent_field:?}: add one (field = {parent_field:?}) so that its rows can be matched with their parents",
            child.table
        )
    })?;
    Ok(Link {
        key,
        time: parent.time,
        end,
        inherit: links,
        child_key,
    })
}

/// Why `parent`'s children must be fetched, or `None` when the stored ones stand.
/// `stored` is how many of its children the window's stored rows hold; `digest` is
/// `None` when the window has none (never committed with one: every parent is new).
pub fn reason(
    parent: &ParentRow,
    digest: Option<&Digest>,
    stored: u32,
    now_ms: i64,
    refetch_within_ms: i64,
) -> Option<Reason> {
    let Some((hash, children)) = digest.and_then(|d| d.get(&parent.id)) else {
        return Some(Reason::New);
    };
    if hash != parent.hash {
        return Some(Reason::Changed);
    }
    if parent
        .end_ms
        .is_none_or(|end| end > now_ms.saturating_sub(refetch_within_ms))
    {
        return Some(Reason::Settling);
    }
    if u32::from(children) != stored {
        return Some(Reason::Missing);
    }
    None
}

/// A stable 64-bit hash of a parent key (the first 8 bytes of its SHA-256): stable
/// across processes and versions, as a digest outlives the run that wrote it.
pub fn key_hash(id: &str) -> u64 {
    let d = Sha256::digest(id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// A stable 32-bit hash of a parent row's encoded values ([`arrow::row`] bytes): 2^-32
/// is the chance that a revision goes unnoticed, and 4 bytes a parent keep the digest
/// small.
pub fn row_hash(encoded_row: &[u8]) -> u32 {
    let d = Sha256::digest(encoded_row);
    let mut b = [0u8; 4];
    b.copy_from_slice(&d[..4]);
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(id: &str, hash: u32, end_ms: Option<i64>) -> ParentRow {
        ParentRow {
            id: id.into(),
            inherited: Vec::new(),
            hash,
            end_ms,
        }
    }

    #[test]
    fn digests_round_trip_and_refuse_garbage() {
        let parents = vec![parent("b", 2, Some(5)), parent("a", 1, None)];
        let children: HashMap<String, u32> = [("a".to_string(), 3)].into();
        let d = Digest::of(&parents, &children);
        assert_eq!(d.len(), 2);
        assert_eq!(d.get("a"), Some((1, 3)));
        assert_eq!(d.get("b"), Some((2, 0)));
        assert_eq!(d.get("c"), None);
        let back = Digest::decode(&d.encode());
        assert_eq!(back.as_ref(), Ok(&d));
        assert!(Digest::decode("not base64 !").is_err());
        assert!(Digest::decode("AAAA").is_err_and(|e| e.contains("multiple of 14")));
        assert_eq!(Digest::decode(""), Ok(Digest::default()));
    }

    #[test]
    fn only_new_changed_settling_or_missing_parents_are_fetched() {
        let now = 10_000_000;
        let within = 3_600_000;
        let old_end = Some(now - within - 1);
        let settled = parent("a", 7, old_end);
        let digest = Digest::of(
            std::slice::from_ref(&settled),
            &[("a".to_string(), 2)].into(),
        );
        assert_eq!(reason(&settled, Some(&digest), 2, now, within), None);
        assert_eq!(
            reason(&settled, None, 2, now, within),
            Some(Reason::New),
            "no digest: every parent is new"
        );
        assert_eq!(
            reason(&parent("z", 7, old_end), Some(&digest), 0, now, within),
            Some(Reason::New)
        );
        assert_eq!(
            reason(&parent("a", 8, old_end), Some(&digest), 2, now, within),
            Some(Reason::Changed)
        );
        assert_eq!(
            reason(
                &parent("a", 7, Some(now - 10)),
                Some(&digest),
                2,
                now,
                within
            ),
            Some(Reason::Settling)
        );
        assert_eq!(
            reason(&parent("a", 7, None), Some(&digest), 2, now, within),
            Some(Reason::Settling),
            "an unknown end may not have settled"
        );
        assert_eq!(
            reason(&settled, Some(&digest), 1, now, within),
            Some(Reason::Missing)
        );
    }

    fn schema(text: &str) -> TableSchema {
        TableSchema::parse(text, "test").unwrap_or_else(|e| panic!("schema: {e}"))
    }

    const CALLS: &str = r#"
        table = "calls"
        key = ["call_id"]
        time_column = "start_time"
        [[columns]]
        field = "callID"
        type = "string"
        [[columns]]
        field = "startTime"
        type = "timestamp_ms"
        [[columns]]
        field = "endTime"
        type = "timestamp_ms"
        [[columns]]
        field = "customerNumber"
        type = "string"
        pii = "hash_if_key"
        [[columns]]
        field = "callType"
        type = "int"
    "#;

    const LEGS: &str = r#"
        table = "legs"
        key = ["party_id"]
        time_column = "call_start_time"
        [[columns]]
        field = "partyId"
        type = "string"
        [[columns]]
        field = "callID"
        type = "string"
        [[columns]]
        field = "callStartTime"
        type = "timestamp_ms"
    "#;

    #[test]
    fn links_resolve_columns_and_refuse_what_a_child_cannot_inherit() {
        let (calls, legs) = (schema(CALLS), schema(LEGS));
        let inherit: std::collections::BTreeMap<String, String> =
            [("callStartTime".to_string(), "startTime".to_string())].into();
        let l = link("callID", &inherit, Some("endTime"), &calls, &legs)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((l.key, l.time, l.end, l.child_key), (0, 1, 2, 1));
        assert_eq!(l.inherit, vec![("callStartTime".to_string(), 1)]);
        assert_eq!(
            link("callID", &inherit, None, &calls, &legs).map(|l| l.end),
            Ok(1),
            "the parent's time column by default"
        );
        let pii: std::collections::BTreeMap<String, String> =
            [("number".to_string(), "customerNumber".to_string())].into();
        assert!(
            link("callID", &pii, None, &calls, &legs)
                .is_err_and(|e| e.contains("personal data") && e.contains("customerNumber"))
        );
        assert!(
            link("nope", &inherit, None, &calls, &legs)
                .is_err_and(|e| e.contains("\"nope\" is not a column"))
        );
        assert!(
            link("callID", &inherit, Some("callType"), &calls, &legs)
                .is_err_and(|e| e.contains("timestamp_ms or local_time"))
        );
        let no_key = schema(&LEGS.replace("field = \"callID\"", "field = \"other\""));
        assert!(
            link("callID", &inherit, None, &calls, &no_key)
                .is_err_and(|e| e.contains("no column for the parent's \"callID\""))
        );
    }

    #[test]
    fn hashes_are_stable() {
        assert_eq!(key_hash("abc"), key_hash("abc"));
        assert_ne!(key_hash("abc"), key_hash("abd"));
        // The first bytes of SHA-256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(key_hash("abc").to_le_bytes()[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(row_hash(b"abc").to_le_bytes(), [0xba, 0x78, 0x16, 0xbf]);
    }
}
