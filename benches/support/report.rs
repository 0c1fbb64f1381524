//! The figures of a benchmark run as a Markdown table and the targets checked.

use std::time::Duration;

/// Targets from the issue.
pub const MAX_RATIO: f64 = 1.5;
pub const MAX_PEAK_MIB: f64 = 200.0;
pub const MAX_PEAK_GROWTH: f64 = 1.2;

/// One pipeline over one range: the end-to-end child run and its bodies-discarded replay.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub pipeline: String,
    pub days: u32,
    pub rows: u64,
    /// Data requests the simulator served during the end-to-end run.
    pub requests: u64,
    pub wall: Duration,
    pub peak_kib: u64,
    pub baseline_wall: Duration,
    pub baseline_requests: u64,
}

impl Measurement {
    pub fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }

    pub fn ratio(&self) -> f64 {
        self.wall.as_secs_f64() / self.baseline_wall.as_secs_f64().max(1e-9)
    }
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

pub fn table(rows: &[Measurement]) -> String {
    let mut s = String::new();
    s.push_str("| pipeline | days | rows | requests | end-to-end (s) | rows/s | requests/s | peak RSS (MiB) | bodies discarded (s) | requests/s (discarded) | end-to-end / discarded |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for m in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {:.1} | {:.2} | {:.0} | {:.2} |\n",
            m.pipeline,
            m.days,
            m.rows,
            m.requests,
            m.wall.as_secs_f64(),
            per_sec(m.rows, m.wall),
            per_sec(m.requests, m.wall),
            m.peak_mib(),
            m.baseline_wall.as_secs_f64(),
            per_sec(m.baseline_requests, m.baseline_wall),
            m.ratio(),
        ));
    }
    s
}

/// One line per target: `PASS`/`FAIL`, what was measured and against what.
pub fn verdicts(rows: &[Measurement]) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for m in rows {
        out.push((
            m.ratio() <= MAX_RATIO,
            format!(
                "{} {} d: end-to-end / bodies discarded = {:.2} (target <= {MAX_RATIO})",
                m.pipeline,
                m.days,
                m.ratio()
            ),
        ));
        out.push((
            m.peak_mib() < MAX_PEAK_MIB,
            format!(
                "{} {} d: peak RSS {:.1} MiB (target < {MAX_PEAK_MIB} MiB)",
                m.pipeline,
                m.days,
                m.peak_mib()
            ),
        ));
    }
    let mut names: Vec<&str> = Vec::new();
    for m in rows {
        if !names.contains(&m.pipeline.as_str()) {
            names.push(&m.pipeline);
        }
    }
    for name in names {
        let of: Vec<&Measurement> = rows.iter().filter(|m| m.pipeline == name).collect();
        let (Some(short), Some(long)) = (
            of.iter().min_by_key(|m| m.days),
            of.iter().max_by_key(|m| m.days),
        ) else {
            continue;
        };
        if short.days == long.days {
            continue;
        }
        let growth = long.peak_mib() / short.peak_mib().max(1e-9);
        out.push((
            growth <= MAX_PEAK_GROWTH,
            format!(
                "{name}: peak RSS {} d / {} d = {growth:.2} (target <= {MAX_PEAK_GROWTH})",
                long.days, short.days
            ),
        ));
    }
    out
}
