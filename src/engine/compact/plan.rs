//! Which partitions are closed and how their files are grouped into merged files.

use crate::core::timeutil;
use crate::io::sink::SinkError;
use crate::io::sink::merge::{self, SpanFile};
use crate::io::store::Location;
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use std::collections::BTreeMap;

use super::CompactError;

/// A span file of a partition and its size on storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SizedFile {
    pub(super) file: SpanFile,
    pub(super) bytes: u64,
}

/// Groups a partition's files (sorted by span) into runs whose total size stays under
/// `target`, a run always taking at least one file. Runs of one file are left as they are.
pub(super) fn plan_groups(files: &[SizedFile], target: u64) -> Vec<Vec<SizedFile>> {
    let mut groups: Vec<Vec<SizedFile>> = Vec::new();
    let mut size = 0u64;
    for f in files {
        match groups.last_mut() {
            Some(g) if size + f.bytes <= target => {
                g.push(f.clone());
                size += f.bytes;
            }
            _ => {
                groups.push(vec![f.clone()]);
                size = f.bytes;
            }
        }
    }
    groups
}

/// The first day that is still open: a day is closed when its local end (the next
/// local midnight) is at or before `limit`, i.e. when it is before `limit`'s local date,
/// and when it is before `before`. Partitions before the returned day are closed.
pub fn first_open_day(tz: chrono_tz::Tz, limit: DateTime<Utc>, before: NaiveDate) -> NaiveDate {
    timeutil::local_date(tz, limit).min(before)
}

/// The `dt` of a relative path `<table>/dt=YYYY-MM-DD/<name>`.
pub(super) fn partition_of(table: &str, rel: &str) -> Option<NaiveDate> {
    let rest = rel.strip_prefix(table)?.strip_prefix('/')?;
    let (folder, name) = rest.split_once('/')?;
    if name.contains('/') {
        return None;
    }
    crate::core::layout::parse_dt_folder(folder)
}

/// Every span file of the table by partition, sorted by span, with its size.
pub(super) async fn list_partitions(
    loc: &Location,
    table: &str,
) -> Result<BTreeMap<NaiveDate, Vec<SizedFile>>, CompactError> {
    let metas: Vec<_> = loc
        .store()
        .list(loc.list_prefix(table).as_ref())
        .try_collect()
        .await
        .map_err(|source| CompactError::Sink {
            table: table.to_string(),
            source: Box::new(SinkError::List {
                path: loc.display(table),
                source,
            }),
        })?;
    let mut out: BTreeMap<NaiveDate, Vec<SizedFile>> = BTreeMap::new();
    for m in metas {
        let Some(rel) = loc.relative(&m.location) else {
            continue;
        };
        let Some(dt) = partition_of(table, &rel) else {
            continue;
        };
        let Some((start, end)) = m.location.filename().and_then(merge::parse_span) else {
            continue;
        };
        out.entry(dt).or_default().push(SizedFile {
            file: SpanFile { rel, start, end },
            bytes: m.size,
        });
    }
    for files in out.values_mut() {
        files.sort_by_key(|f| (f.file.start, f.file.end));
    }
    Ok(out)
}
