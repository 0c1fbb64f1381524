//! Why a state operation failed, and the pipeline names allowed (they become folder
//! names, so they are checked before anything is read or written).

use chrono::{DateTime, Utc};

/// Pipeline names become folder names on every store; keep them portable.
pub(super) const MAX_PIPELINE_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "pipeline {pipeline} is busy: locked by {holder} until {expires_at}; if that run is gone for good, `sobot-sync unlock` releases it"
    )]
    Busy {
        pipeline: String,
        holder: String,
        expires_at: DateTime<Utc>,
    },
    #[error(
        "state of pipeline {pipeline} changed under this run (expected version {expected:?}); another run committed first"
    )]
    Conflict {
        pipeline: String,
        expected: Option<u64>,
    },
    #[error("state of pipeline {pipeline} at {path} is unreadable: {reason}")]
    Corrupt {
        pipeline: String,
        path: String,
        reason: String,
    },
    #[error("state storage error at {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "invalid pipeline name {pipeline:?}: use 1-{MAX_PIPELINE_LEN} characters of a-z, 0-9 and _"
    )]
    InvalidPipeline { pipeline: String },
    #[error("cannot encode the state of pipeline {pipeline} as JSON: {reason}")]
    Encode { pipeline: String, reason: String },
}

pub(super) fn validate_pipeline(pipeline: &str) -> Result<(), StateError> {
    let ok = !pipeline.is_empty()
        && pipeline.len() <= MAX_PIPELINE_LEN
        && pipeline
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidPipeline {
            pipeline: pipeline.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_names() {
        assert!(validate_pipeline("talks_sg1").is_ok());
        for bad in ["", "Talks", "a/b", "..", "a-b", &"x".repeat(65)] {
            assert!(validate_pipeline(bad).is_err(), "{bad:?} accepted");
        }
    }
}
