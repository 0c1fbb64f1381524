//! A pipeline's committed state: a sequence of versions in `<pipeline>/state/`, the
//! next one committed only by the writer that read the newest.

use super::error::{StateError, validate_pipeline};
use super::sequence::{LOCK_ATTEMPTS, StateStore, seq_name};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Folder of a pipeline's state versions.
const STATE_DIR: &str = "state";
/// Versions kept after a commit: enough history to inspect recent runs by hand, without
/// listings growing forever.
const KEEP_VERSIONS: usize = 20;

/// One committed version of a pipeline's state.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub version: u64,
    pub value: T,
}

impl StateStore {
    /// The newest committed version, or `None` for a pipeline that never committed.
    /// A newest version that does not parse is `Corrupt`: falling back to an older one
    /// would silently re-extract (or skip) data.
    pub async fn load<T: DeserializeOwned>(
        &self,
        pipeline: &str,
    ) -> Result<Option<Versioned<T>>, StateError> {
        validate_pipeline(pipeline)?;
        let dir = format!("{pipeline}/{STATE_DIR}");
        // The newest version is never pruned by a commit, but a burst of commits between
        // our listing and our read could prune it; list again in that case.
        for _ in 0..LOCK_ATTEMPTS {
            let Some(latest) = self.list_seq(&dir).await?.pop() else {
                return Ok(None);
            };
            if let Some(value) = self.read_json(pipeline, &latest.path).await? {
                return Ok(Some(Versioned {
                    version: latest.seq,
                    value,
                }));
            }
        }
        Err(StateError::Conflict {
            pipeline: pipeline.to_string(),
            expected: None,
        })
    }

    /// Commits `value` as the version after `expected` (`None`: the first version).
    /// Fails with `Conflict` when any other writer committed that version first.
    pub async fn commit<T: Serialize>(
        &self,
        pipeline: &str,
        expected: Option<u64>,
        value: &T,
    ) -> Result<u64, StateError> {
        validate_pipeline(pipeline)?;
        let body = serde_json::to_vec_pretty(value).map_err(|e| StateError::Encode {
            pipeline: pipeline.to_string(),
            reason: e.to_string(),
        })?;
        let conflict = || StateError::Conflict {
            pipeline: pipeline.to_string(),
            expected,
        };
        let dir = format!("{pipeline}/{STATE_DIR}");
        // Creating `expected + 1` alone would accept a stale `expected` whenever that
        // version number happens to be free (e.g. after pruning); comparing with the
        // current newest first closes that gap.
        let latest = self.list_seq(&dir).await?.last().map(|e| e.seq);
        if latest != expected {
            return Err(conflict());
        }
        let version = expected.map_or(1, |v| v + 1);
        let rel = format!("{dir}/{}", seq_name(version));
        if !self.create(&rel, body).await? {
            return Err(conflict());
        }
        tracing::debug!(pipeline, version, "state committed");
        self.prune(&dir, KEEP_VERSIONS).await;
        Ok(version)
    }

    /// Pipelines that have any committed state, sorted.
    pub async fn pipelines(&self) -> Result<Vec<String>, StateError> {
        let root = self.loc.list_prefix("");
        let listing = self
            .loc
            .store()
            .list_with_delimiter(root.as_ref())
            .await
            .map_err(|source| self.storage_error("", source))?;
        let mut names = Vec::new();
        for folder in listing.common_prefixes {
            let Some(name) = folder.filename().map(str::to_string) else {
                continue;
            };
            if validate_pipeline(&name).is_err() {
                continue;
            }
            let inner = self
                .loc
                .store()
                .list_with_delimiter(Some(&folder))
                .await
                .map_err(|source| self.storage_error(&name, source))?;
            if inner
                .common_prefixes
                .iter()
                .any(|p| p.filename() == Some(STATE_DIR))
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}
