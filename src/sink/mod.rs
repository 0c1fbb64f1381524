//! Parquet files for one window: a deterministic name per (table, dt, window), written
//! whole or not at all.
//!
//! OWNER: storage helper. Stub signatures; the implementation replaces the bodies.

use crate::store::Location;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};

/// Which file a window's rows go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowFile {
    pub table: String,
    pub dt: NaiveDate,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl WindowFile {
    /// `<table>/dt=YYYY-MM-DD/<start>_<end>.parquet`, start and end as compact UTC
    /// (`20240301T000000Z`), so a rerun of the window names the same file.
    pub fn relative_path(&self) -> String {
        todo!("storage helper")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: String,
    pub rows: usize,
    pub bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot encode Parquet for {path}: {source}")]
    Encode {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("cannot write {path}: {source}")]
    Put {
        path: String,
        #[source]
        source: object_store::Error,
    },
}

/// Writes `batch` (already de-duplicated and sorted by the caller) as the window's file,
/// replacing any earlier file of the same window. An empty batch removes the window's
/// file instead (a rerun that finds no rows must not leave old rows behind) and returns
/// `None`.
pub async fn write_window(
    loc: &Location,
    file: &WindowFile,
    batch: &RecordBatch,
) -> Result<Option<Written>, SinkError> {
    let _ = (loc, file, batch);
    todo!("storage helper")
}
