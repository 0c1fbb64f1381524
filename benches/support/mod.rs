//! Parts of the backfill benchmark, one concern each: the request plan taken from the
//! simulator's ground truth, the child-process runner that measures peak memory, the
//! bodies-discarded replay, the steady-state case (with the requests it counts, the
//! truth it checks against and the warehouse it reads back), and the report.

pub mod budget;
pub mod child;
pub mod plan;
pub mod replay;
pub mod report;
pub mod steady;
pub mod truth;
pub mod warehouse;

/// Everything that can stop a benchmark run, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} exited with {status}; its stderr ends with:\n{stderr_tail}")]
    ChildFailed {
        what: String,
        status: std::process::ExitStatus,
        stderr_tail: String,
    },
    #[error("{what}: cannot read its report line from stdout: {stdout:?}")]
    NoReport { what: String, stdout: String },
    #[error("replay {endpoint}: {detail}")]
    Replay { endpoint: String, detail: String },
    #[error("{0}")]
    Setup(String),
}

impl BenchError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }
}
