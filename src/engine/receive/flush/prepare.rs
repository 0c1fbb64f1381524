//! Pending pushes to files: grouped by table and `dt`, converted, stripped of keys the
//! partition already holds, and encoded as Parquet.

use super::keys::batch_keys;
use crate::core::convert::{BatchBuilder, RowMeta, assemble, record_time};
use crate::core::push::PushKind;
use crate::core::record::parse_record;
use crate::core::schema::TableSchema;
use crate::engine::receive::keyindex::PartitionKeys;
use crate::engine::receive::wal::Entry;
use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeMap, HashMap, HashSet};

pub(super) type Groups = Vec<((PushKind, NaiveDate), RecordBatch)>;

/// The pending pushes as one converted batch per (table, `dt`), rows in arrival order;
/// also the first and last WAL segment they came from.
pub(super) fn build_groups(
    pending: &[Entry],
    schemas: &HashMap<PushKind, TableSchema>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<(u64, u64, Groups), String> {
    let first_seg = pending.iter().map(|e| e.segment).min().unwrap_or(0);
    let last_seg = pending.iter().map(|e| e.segment).max().unwrap_or(0);
    let mut groups: BTreeMap<(PushKind, NaiveDate), Vec<usize>> = BTreeMap::new();
    for (i, e) in pending.iter().enumerate() {
        let Some(schema) = schemas.get(&e.kind) else {
            continue;
        };
        let record = match parse_record(&e.json) {
            Ok(r) => r,
            Err(why) => {
                // Cannot happen: the receiver logs only JSON objects.
                tracing::error!(push = e.kind.path(), error = %why, "an unreadable record in the write-ahead log was skipped");
                continue;
            }
        };
        let ms = record_time(schema, &record, tz).unwrap_or(e.received_ms);
        let dt = DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or(now)
            .with_timezone(&tz)
            .date_naive();
        groups.entry((e.kind, dt)).or_default().push(i);
    }
    let mut out = Vec::new();
    for ((kind, dt), rows) in groups {
        let Some(schema) = schemas.get(&kind) else {
            continue;
        };
        let mut builder = BatchBuilder::new(schema, tz, rows.len());
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for &i in &rows {
            let e = &pending[i];
            if let Ok(record) = parse_record(&e.json) {
                builder.push(&record);
                lo = lo.min(e.received_ms);
                hi = hi.max(e.received_ms);
            }
        }
        let meta = RowMeta {
            run_id: format!("receive-{first_seg}-{last_seg}"),
            extracted_at_ms: now.timestamp_millis(),
            window_start_ms: lo,
            window_end_ms: hi.saturating_add(1),
        };
        let batch = builder
            .finish(&meta)
            .map_err(|e| format!("cannot build rows of {}: {e}", kind.table()))?;
        out.push(((kind, dt), batch));
    }
    Ok((first_seg, last_seg, out))
}

/// One partition's rows ready to store.
pub(super) struct Prepared {
    /// The Parquet file; `None` when every row was a duplicate.
    pub(super) bytes: Option<Vec<u8>>,
    pub(super) rows: usize,
    pub(super) duplicates: usize,
    /// Keys of the rows kept, to add to the partition's once the file is stored.
    pub(super) fresh: HashSet<u128>,
}

/// Drops rows whose key is in `known` or earlier in the batch (first copy wins), then
/// protects `pii` columns, sorts by time and key, and encodes.
pub(super) fn prepare(
    schema: &TableSchema,
    known: &PartitionKeys,
    batch: RecordBatch,
    pii: Option<&crate::core::privacy::PiiKey>,
) -> Result<Prepared, String> {
    let keys = batch_keys(schema, &batch);
    let mut fresh: HashSet<u128> = HashSet::new();
    let mut mask = Vec::with_capacity(keys.len());
    for k in &keys {
        mask.push(match k {
            Some(h) => {
                !fresh.contains(h)
                    && !known.contains(*h).map_err(|e| e.to_string())?
                    && fresh.insert(*h)
            }
            None => true,
        });
    }
    let mask = BooleanArray::from(mask);
    let kept =
        filter_record_batch(&batch, &mask).map_err(|e| format!("cannot filter rows: {e}"))?;
    let duplicates = batch.num_rows() - kept.num_rows();
    if kept.num_rows() == 0 {
        return Ok(Prepared {
            bytes: None,
            rows: 0,
            duplicates,
            fresh,
        });
    }
    let kept = crate::core::privacy::protect(schema, pii, kept).map_err(|e| e.to_string())?;
    let kept = assemble(schema, &[kept]).map_err(|e| format!("cannot sort rows: {e}"))?;
    let rows = kept.num_rows();
    let bytes =
        crate::io::sink::encode(&kept).map_err(|e| format!("cannot encode Parquet: {e}"))?;
    Ok(Prepared {
        bytes: Some(bytes),
        rows,
        duplicates,
        fresh,
    })
}
