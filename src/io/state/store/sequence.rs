//! The store and the one thing it is built on: folders of numbered, immutable JSON
//! objects, each created with `PutMode::Create` so that exactly one writer wins a number.

use super::error::StateError;
use crate::io::store::Location;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;

/// How often `load`, `acquire_lock`, `renew` and `release` re-read and retry after losing
/// a race for the next number before giving up.
pub(super) const LOCK_ATTEMPTS: usize = 5;

/// A numbered object in a sequence folder.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) seq: u64,
    pub(super) path: Path,
}

#[derive(Debug, Clone)]
pub struct StateStore {
    pub(super) loc: Location,
}

impl StateStore {
    pub fn new(loc: Location) -> Self {
        Self { loc }
    }

    pub fn location(&self) -> &Location {
        &self.loc
    }

    /// The numbered objects of a folder, oldest first. Other names (editor backups,
    /// temporary files) are ignored.
    pub(super) async fn list_seq(&self, rel_dir: &str) -> Result<Vec<Entry>, StateError> {
        let prefix = self.loc.list_prefix(rel_dir);
        let metas: Vec<_> = self
            .loc
            .store()
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|source| self.storage_error(rel_dir, source))?;
        let mut entries: Vec<Entry> = metas
            .into_iter()
            .filter_map(|m| {
                let seq = parse_seq(m.location.filename()?)?;
                Some(Entry {
                    seq,
                    path: m.location,
                })
            })
            .collect();
        entries.sort_by_key(|e| e.seq);
        Ok(entries)
    }

    /// Reads and parses one JSON object; `None` when it vanished since the listing.
    pub(super) async fn read_json<T: DeserializeOwned>(
        &self,
        pipeline: &str,
        path: &Path,
    ) -> Result<Option<T>, StateError> {
        let shown = self.shown(path);
        let bytes = match self.loc.store().get(path).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => {
                return Err(StateError::Storage {
                    path: shown,
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                pipeline: pipeline.to_string(),
                path: shown,
                reason: e.to_string(),
            })
    }

    /// `PutMode::Create`; `false` when the object already exists (another writer won).
    pub(super) async fn create(&self, rel: &str, body: Vec<u8>) -> Result<bool, StateError> {
        let path = self.loc.path(rel);
        match self
            .loc
            .store()
            .put_opts(
                &path,
                PutPayload::from(body),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(source) => Err(self.storage_error(rel, source)),
        }
    }

    /// Deletes all but the newest `keep` numbered objects. Best effort: a leftover old
    /// version is harmless, so failures are only logged.
    pub(super) async fn prune(&self, rel_dir: &str, keep: usize) {
        let entries = match self.list_seq(rel_dir).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list old versions to prune");
                return;
            }
        };
        let excess = entries.len().saturating_sub(keep);
        if excess == 0 {
            return;
        }
        let old = entries.into_iter().take(excess).map(|e| Ok(e.path));
        let results: Vec<_> = self
            .loc
            .store()
            .delete_stream(futures::stream::iter(old).boxed())
            .collect()
            .await;
        for result in results {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(
                    folder = %self.loc.display(rel_dir),
                    error = %e,
                    "cannot delete an old version"
                ),
            }
        }
    }

    fn shown(&self, path: &Path) -> String {
        self.loc
            .relative(path)
            .map_or_else(|| path.to_string(), |rel| self.loc.display(&rel))
    }

    pub(super) fn storage_error(&self, rel: &str, source: object_store::Error) -> StateError {
        StateError::Storage {
            path: self.loc.display(rel),
            source,
        }
    }
}

pub(super) fn seq_name(n: u64) -> String {
    format!("{n:020}.json")
}

fn parse_seq(filename: &str) -> Option<u64> {
    let digits = filename.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_names_round_trip_and_sort() {
        assert_eq!(seq_name(7), "00000000000000000007.json");
        assert_eq!(parse_seq(&seq_name(7)), Some(7));
        assert_eq!(parse_seq(&seq_name(u64::MAX)), Some(u64::MAX));
        assert!(seq_name(9) < seq_name(10));
        assert_eq!(parse_seq("7.json"), None);
        assert_eq!(parse_seq("0000000000000000000a.json"), None);
        assert_eq!(parse_seq("00000000000000000007.json.tmp"), None);
    }
}
