//! Runs one `sobot-sync` command as a child process and measures it from outside: wall
//! time and the peak resident memory of that process alone (the simulator lives in the
//! benchmark process, so its memory never counts).

use super::BenchError;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often `/proc/<pid>/status` is read. VmHWM is a high-water mark, so a sample only
/// misses growth in the child's last few milliseconds.
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct ChildRun {
    pub wall: Duration,
    /// Peak resident set (VmHWM) in KiB: the last value read before the child exited.
    pub peak_kib: u64,
    pub stdout: String,
}

/// Runs `cmd` to completion with stdout and stderr in files under `scratch`.
pub fn run(mut cmd: Command, what: &str, scratch: &Path) -> Result<ChildRun, BenchError> {
    let out_path = scratch.join("stdout.txt");
    let err_path = scratch.join("stderr.txt");
    let out = File::create(&out_path).map_err(BenchError::io(format!("create {out_path:?}")))?;
    let err = File::create(&err_path).map_err(BenchError::io(format!("create {err_path:?}")))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(BenchError::io(format!("spawn {what}")))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        // Read before checking for exit: once reaped, the numbers are gone.
        if let Some(kib) = std::fs::read_to_string(&status_file)
            .ok()
            .as_deref()
            .and_then(vm_hwm_kib)
        {
            peak_kib = peak_kib.max(kib);
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(BenchError::io(format!("wait for {what}"))(e)),
        }
    };
    let wall = started.elapsed();
    let stdout =
        std::fs::read_to_string(&out_path).map_err(BenchError::io(format!("read {out_path:?}")))?;
    if !status.success() {
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        return Err(BenchError::ChildFailed {
            what: what.to_string(),
            status,
            stderr_tail: tail,
        });
    }
    Ok(ChildRun {
        wall,
        peak_kib,
        stdout,
    })
}

/// `VmHWM:   12345 kB` from a `/proc/<pid>/status` text.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The numbers of the command's report line,
/// `talks: 24 windows (0 lookback), 4800 rows, 24 files, 48 requests; watermark ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportLine {
    pub windows: u64,
    pub rows: u64,
    pub files: u64,
    pub requests: u64,
}

pub fn report_line(stdout: &str, pipeline: &str) -> Option<ReportLine> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{pipeline}: ")))?;
    let numbers = line.split(';').next()?;
    let count = |unit: &str| -> Option<u64> {
        numbers.split(',').find_map(|part| {
            let mut words = part.split_whitespace();
            let n = words.next()?.parse().ok()?;
            (words.next()? == unit).then_some(n)
        })
    };
    Some(ReportLine {
        windows: count("windows")?,
        rows: count("rows")?,
        files: count("files")?,
        requests: count("requests")?,
    })
}
