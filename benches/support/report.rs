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

/// Steady-state target from the issue: an hourly run's requests over the fewest it needs.
pub const MAX_STEADY_RATIO: f64 = 1.25;

/// One `run talks parties` of the steady-state case: the catch-up, or the hourly run after it.
#[derive(Debug, Clone)]
pub struct SteadyRun {
    /// `catch-up` or `hourly`.
    pub run: String,
    pub days: u32,
    /// Windows the talks run lists, new and lookback.
    pub windows: u64,
    /// Calls in the warehouse after the run that were not before it.
    pub new_calls: u64,
    /// Rows of each table after the run.
    pub talks_rows: u64,
    pub parties_rows: u64,
    /// Talk-list pages each pipeline reported in `status --json`.
    pub talk_lists_by_talks: u64,
    pub talk_lists_by_parties: u64,
    /// Served by the simulator during the run: party requests, every request but the
    /// token's, and the token's.
    pub party_requests: u64,
    pub requests: u64,
    pub token_requests: u64,
    /// One party request per new call plus the talk-list pages of the listed windows.
    pub minimum: u64,
    pub wall: Duration,
    pub peak_kib: u64,
    /// Both tables hold exactly the simulator's visible calls and legs of the committed range.
    pub rows_exact: bool,
    pub watermark: chrono::DateTime<chrono::Utc>,
}

impl SteadyRun {
    pub fn ratio(&self) -> f64 {
        self.requests as f64 / (self.minimum.max(1)) as f64
    }

    pub fn party_requests_per_call(&self) -> f64 {
        self.party_requests as f64 / (self.new_calls.max(1)) as f64
    }
}

pub fn steady_table(runs: &[SteadyRun]) -> String {
    let mut s = String::new();
    s.push_str("| run | days | talk windows listed | new calls | talks rows | parties rows | talk lists (talks) | talk lists (parties) | party requests | party requests / new call | requests | minimum | requests / minimum | token requests | wall (s) | peak RSS (MiB) | rows = truth |\n");
    s.push_str(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in runs {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {:.2} | {} | {:.2} | {:.1} | {} |\n",
            r.run,
            r.days,
            r.windows,
            r.new_calls,
            r.talks_rows,
            r.parties_rows,
            r.talk_lists_by_talks,
            r.talk_lists_by_parties,
            r.party_requests,
            r.party_requests_per_call(),
            r.requests,
            r.minimum,
            r.ratio(),
            r.token_requests,
            r.wall.as_secs_f64(),
            r.peak_kib as f64 / 1024.0,
            if r.rows_exact { "yes" } else { "no" },
        ));
    }
    s
}

/// The steady-state targets: the hourly run within [`MAX_STEADY_RATIO`] of its minimum;
/// the catch-up one party request per call and no talk list of its own for parties;
/// both runs leaving exactly the truth.
pub fn steady_verdicts(runs: &[SteadyRun]) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for r in runs {
        let at = format!("steady {} d {}", r.days, r.run);
        if r.run == "hourly" {
            out.push((
                r.ratio() <= MAX_STEADY_RATIO,
                format!(
                    "{at}: requests / minimum = {} / {} = {:.2} (target <= {MAX_STEADY_RATIO})",
                    r.requests,
                    r.minimum,
                    r.ratio()
                ),
            ));
        } else {
            out.push((
                r.party_requests == r.new_calls,
                format!(
                    "{at}: {} party requests for {} calls = {:.2} per call (target 1)",
                    r.party_requests,
                    r.new_calls,
                    r.party_requests_per_call()
                ),
            ));
            out.push((
                r.talk_lists_by_parties == 0,
                format!(
                    "{at}: parties listed {} talk pages (target 0)",
                    r.talk_lists_by_parties
                ),
            ));
        }
        out.push((
            r.rows_exact,
            format!("{at}: talks and parties equal the simulator's truth"),
        ));
    }
    out
}
