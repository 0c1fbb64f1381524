//! A backfill's consecutive windows of one `dt` partition, encoded into one file as they
//! arrive, and the units the committing side receives.

use super::{GROUP_MAX_BYTES, Task, WindowDone};
use crate::engine::extract::Extracted;
use crate::engine::run::WindowError;
use crate::io::sink;
use crate::io::sink::SinkError;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};

/// Consecutive extracted windows of one `dt` partition, encoded into one file as they
/// arrive.
pub(super) struct Group {
    pub(super) dt: NaiveDate,
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
    pub(super) encoder: sink::FileEncoder,
    pub(super) done: Vec<WindowDone>,
}

impl Group {
    pub(super) fn new(
        dt: NaiveDate,
        start: DateTime<Utc>,
        first: &RecordBatch,
        hashed: bool,
    ) -> Result<Self, WindowError> {
        let mut encoder =
            sink::FileEncoder::new(first.schema()).map_err(|source| SinkError::Encode {
                path: format!("a file of {dt}"),
                source,
            })?;
        if hashed {
            encoder = encoder.with_content_hash();
        }
        Ok(Group {
            dt,
            start,
            end: start,
            encoder,
            done: Vec::new(),
        })
    }

    /// Whether `task` continues this group: same partition, the very next window, and
    /// room left under the memory cap.
    pub(super) fn takes(&self, dt: NaiveDate, task: &Task) -> bool {
        self.dt == dt
            && task.window.start == self.end
            && self.encoder.buffered_bytes() < GROUP_MAX_BYTES
    }

    /// Encodes a window's rows into the group's file, off the runtime's worker threads.
    pub(super) async fn push(mut self, task: Task, ex: Extracted) -> Result<Self, WindowError> {
        self.end = task.window.end;
        self.done.push(WindowDone {
            task,
            rows: ex.batch.num_rows() as u64,
            requests: ex.requests,
            parents: ex.parents.clone(),
        });
        let label = format!("the file of {} from {}", self.dt, self.start.to_rfc3339());
        blocking(&label, move || {
            self.encoder.write(&ex.batch)?;
            Ok(self)
        })
        .await
    }
}

/// Runs CPU-bound Parquet work on the blocking pool; `what` names the file in errors.
pub(super) async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, parquet::errors::ParquetError> + Send + 'static,
) -> Result<T, WindowError> {
    let encode_err = |source| SinkError::Encode {
        path: what.to_string(),
        source,
    };
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|join| encode_err(parquet::errors::ParquetError::External(Box::new(join))))?
        .map_err(|e| encode_err(e).into())
}

/// issue 4: (windows, rows) of a committed group, for metrics and the progress bar.
pub(super) fn done_counts(done: &[WindowDone]) -> (u64, u64) {
    (done.len() as u64, done.iter().map(|d| d.rows).sum())
}

/// What the committing side receives, in window order.
pub(super) enum Unit {
    Window(Task, Extracted),
    Failed(Task, WindowError),
}
