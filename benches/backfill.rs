//! Backfill benchmark: throughput and peak memory of `sobot-sync backfill` for talks and
//! parties against the in-process simulator, next to a baseline that issues the same
//! requests at the same concurrency and throws the bodies away.
//!
//! Each end-to-end run is a child process (the real binary), so its peak memory is its
//! own and not the simulator's. Run with `cargo bench --bench backfill`
//! (`-- --quick` for 1 and 3 days). Environment:
//! - `SOBOT_BENCH_DAYS`: comma-separated range lengths in days (default `1,30`);
//! - `SOBOT_BENCH_CALLS_PER_HOUR`: simulated call rate (default 200);
//! - `SOBOT_BENCH_REPEAT`: runs per measurement, the fastest kept (default 1);
//! - `SOBOT_BENCH_LATENCY_MS`: a delay the simulator adds to every answer (default 0),
//!   to see the engine against an API that is not on the same machine;
//! - `SOBOT_BENCH_STEADY_DAYS`: days the steady-state case catches up before its hourly
//!   run (default 2, 1 with `--quick`; 0 skips the case);
//! - `SOBOT_BENCH_STEADY_HOUR`: the local hour at whose quarter past it catches up
//!   (default 16: the lookback of the hourly run covers the day's busiest hours).
//!
//! The steady-state case runs `sobot-sync run talks parties` over N days at a daemon's
//! time of day, then again an hour later, and sets each run's requests against the
//! fewest that could bring the warehouse up to the simulator's truth
//! (`support::steady`).
//!
//! The Markdown tables go to stdout, progress and target verdicts to stderr.

mod support;

use chrono::{DateTime, Duration as Days, TimeZone, Utc};
use chrono_tz::Tz;
use sobot_sync::core::pipeline::{Catalog, Pipeline};
use sobot_sync::core::plan::Grid;
use sobot_sync::sim::{self, SimConfig, SimHandle};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};
use support::BenchError;
use support::child::{self, ChildRun};
use support::plan::RangePlan;
use support::replay::{Replay, Shape};
use support::report::{self, Measurement};
use support::steady;

const TOKEN: &str = "bench-static-token";
const TIMEZONE: Tz = chrono_tz::Asia::Singapore;
const SHAPE: Shape = Shape {
    max_concurrency: 16,
    window_concurrency: 2,
};

#[derive(Debug)]
struct Options {
    days: Vec<u32>,
    calls_per_hour: f64,
    repeat: u32,
    latency_ms: u64,
    steady_days: u32,
    steady_hour: u32,
}

impl Options {
    /// Reads `--quick` (other arguments, such as cargo's `--bench`, are ignored) and the
    /// `SOBOT_BENCH_*` variables.
    fn read() -> Result<Self, BenchError> {
        let quick = std::env::args().any(|a| a == "--quick");
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let days = match var("SOBOT_BENCH_DAYS") {
            Some(v) => v
                .split(',')
                .map(|d| d.trim().parse::<u32>().ok().filter(|d| *d > 0))
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| {
                    BenchError::Setup(format!(
                        "SOBOT_BENCH_DAYS {v:?}: expected positive whole numbers, e.g. 1,30"
                    ))
                })?,
            None if quick => vec![1, 3],
            None => vec![1, 30],
        };
        let calls_per_hour = match var("SOBOT_BENCH_CALLS_PER_HOUR") {
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|c| c.is_finite() && *c > 0.0)
                .ok_or_else(|| {
                    BenchError::Setup(format!(
                        "SOBOT_BENCH_CALLS_PER_HOUR {v:?}: expected a positive number"
                    ))
                })?,
            None => 200.0,
        };
        let repeat = match var("SOBOT_BENCH_REPEAT") {
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|r| *r > 0)
                .ok_or_else(|| {
                    BenchError::Setup(format!(
                        "SOBOT_BENCH_REPEAT {v:?}: expected a positive whole number"
                    ))
                })?,
            None => 1,
        };
        let latency_ms = match var("SOBOT_BENCH_LATENCY_MS") {
            Some(v) => v.trim().parse::<u64>().ok().ok_or_else(|| {
                BenchError::Setup(format!(
                    "SOBOT_BENCH_LATENCY_MS {v:?}: expected a whole number of milliseconds"
                ))
            })?,
            None => 0,
        };
        let steady_days = match var("SOBOT_BENCH_STEADY_DAYS") {
            Some(v) => v.trim().parse::<u32>().ok().ok_or_else(|| {
                BenchError::Setup(format!(
                    "SOBOT_BENCH_STEADY_DAYS {v:?}: expected a whole number of days (0 skips)"
                ))
            })?,
            None if quick => 1,
            None => 2,
        };
        let steady_hour = match var("SOBOT_BENCH_STEADY_HOUR") {
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|h| *h < 24)
                .ok_or_else(|| {
                    BenchError::Setup(format!(
                        "SOBOT_BENCH_STEADY_HOUR {v:?}: expected a local hour, 0 to 23"
                    ))
                })?,
            None => 16,
        };
        Ok(Self {
            days,
            calls_per_hour,
            repeat,
            latency_ms,
            steady_days,
            steady_hour,
        })
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backfill bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The fixed points of the simulated timeline: backfills start on this local day and
/// the simulated now is far enough after any range for every call to be visible.
fn timeline() -> Result<(DateTime<Utc>, DateTime<Utc>), BenchError> {
    let start = TIMEZONE
        .with_ymd_and_hms(2024, 1, 2, 0, 0, 0)
        .single()
        .ok_or_else(|| BenchError::Setup("2024-01-02 is not a local instant".into()))?;
    let now = Utc
        .with_ymd_and_hms(2024, 12, 1, 0, 0, 0)
        .single()
        .ok_or_else(|| BenchError::Setup("2024-12-01 is not an instant".into()))?;
    Ok((start.with_timezone(&Utc), now))
}

/// When the steady-state case catches up: a quarter past local `hour`, after the talks
/// (:05) and parties (:10) schedules, so the hourly run an hour later finds exactly one
/// new window. The hour matters: the simulator follows a day's traffic curve, and the
/// hourly run's lookback covers the six hours before its new window.
fn steady_now(hour: u32) -> Result<DateTime<Utc>, BenchError> {
    TIMEZONE
        .with_ymd_and_hms(2024, 6, 3, hour, 15, 0)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| BenchError::Setup(format!("2024-06-03 {hour}:15 is not a local instant")))
}

/// What every scenario shares: the simulator, the definitions and somewhere to write.
struct Bench {
    sim_runtime: tokio::runtime::Runtime,
    replay_runtime: tokio::runtime::Runtime,
    sim: SimHandle,
    replay: Replay,
    catalog: Catalog,
    scratch: tempfile::TempDir,
    now: DateTime<Utc>,
    repeat: u32,
}

fn run() -> Result<(), BenchError> {
    let opts = Options::read()?;
    let (start, now) = timeline()?;
    let max_days = opts.days.iter().copied().max().unwrap_or(1);
    if start + Days::days(i64::from(max_days)) > now - Days::hours(1) {
        return Err(BenchError::Setup(format!(
            "{max_days} days from {start} reach past the simulated now {now}"
        )));
    }
    let bench = Bench::start(&opts, now)?;
    let talks = bench.pipeline("talks")?;
    let parties = bench.pipeline("parties")?;
    let grid = Grid::new(TIMEZONE, talks.window_secs);
    let dataset = bench.sim.dataset();
    eprintln!(
        "simulator at {} ({} calls/hour, {} ms added to every answer), {} child process(es) per measurement",
        bench.sim.base_url(),
        opts.calls_per_hour,
        opts.latency_ms,
        opts.repeat
    );

    let mut results = Vec::new();
    for &days in &opts.days {
        let to = start + Days::days(i64::from(days));
        let plan = RangePlan::new(&dataset, &grid, start, to);
        eprintln!(
            "{days} d: {} windows, {} talks, {} parties",
            plan.windows.len(),
            plan.talks(),
            plan.parties()
        );
        results.push(bench.measure(talks, None, days, (start, to), &plan)?);
        results.push(bench.measure(parties, Some(talks), days, (start, to), &plan)?);
    }

    let steady = if opts.steady_days > 0 {
        let case = steady::Case {
            sim: &bench.sim,
            talks,
            parties,
            grid,
            days: opts.steady_days,
            now: steady_now(opts.steady_hour)?,
            dir: bench
                .scratch
                .path()
                .join(format!("steady-{}d", opts.steady_days)),
        };
        eprintln!(
            "steady state: {} d caught up at {}, then the hourly run",
            case.days, case.now
        );
        let runs = case.measure(&|warehouse| bench.command(warehouse));
        // The backfill cases' clock again, whatever the steady-state case did with it.
        bench.sim.set_now(Some(bench.now));
        runs?
    } else {
        Vec::new()
    };

    println!("{}", report::table(&results));
    let mut verdicts = report::verdicts(&results);
    if !steady.is_empty() {
        println!("{}", report::steady_table(&steady));
        verdicts.extend(report::steady_verdicts(&steady));
    }
    for (ok, what) in &verdicts {
        eprintln!("{} {what}", if *ok { "PASS" } else { "FAIL" });
    }
    bench.sim_runtime.block_on(bench.sim.shutdown());
    Ok(())
}

impl Bench {
    fn start(opts: &Options, now: DateTime<Utc>) -> Result<Self, BenchError> {
        let runtime = || {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(BenchError::io("start a tokio runtime"))
        };
        let sim_runtime = runtime()?;
        let mut config = SimConfig {
            calls_per_hour: opts.calls_per_hour,
            now: Some(now),
            static_token: Some(TOKEN.to_string()),
            timezone: TIMEZONE,
            ..SimConfig::default()
        };
        if opts.latency_ms > 0 {
            // The slow-answer fault on every request: a fixed network and server delay.
            config.faults.slow_every = Some(1);
            config.faults.slow_ms = opts.latency_ms;
        }
        let sim = sim_runtime
            .block_on(sim::start(config, ([127, 0, 0, 1], 0).into()))
            .map_err(BenchError::io("start the simulator"))?;
        let replay = Replay::new(&sim.base_url(), TOKEN, TIMEZONE.name(), SHAPE)?;
        let catalog = Catalog::load(&repo_dir("pipelines"), &repo_dir("schemas"), TIMEZONE)
            .map_err(|e| BenchError::Setup(format!("pipeline definitions: {e}")))?;
        let scratch = tempfile::tempdir().map_err(BenchError::io("create a scratch directory"))?;
        Ok(Self {
            sim_runtime,
            replay_runtime: runtime()?,
            sim,
            replay,
            catalog,
            scratch,
            now,
            repeat: opts.repeat,
        })
    }

    fn pipeline(&self, name: &str) -> Result<&Pipeline, BenchError> {
        self.catalog
            .get(name)
            .ok_or_else(|| BenchError::Setup(format!("no pipeline {name:?} in ./pipelines")))
    }

    /// The end-to-end runs and the replays of one pipeline over one range; the fastest
    /// of `repeat` runs of each is kept, with the highest peak.
    fn measure(
        &self,
        p: &Pipeline,
        parent: Option<&Pipeline>,
        days: u32,
        range: (DateTime<Utc>, DateTime<Utc>),
        plan: &RangePlan,
    ) -> Result<Measurement, BenchError> {
        // issue 15: a child backfill reads its calls from the parent's table: one request
        // per call and no parent page.
        let expected_requests = match parent {
            Some(_) => plan.child_requests(),
            None => plan.search_requests(p.page_size),
        };
        let expected_rows = if parent.is_some() {
            plan.parties()
        } else {
            plan.talks()
        };
        let mut best: Option<Measurement> = None;
        for attempt in 1..=self.repeat {
            let label = format!("{}-{days}d-{attempt}", p.name);
            let (run, requests, rows) = self.end_to_end(p, parent, &label, range)?;
            if rows != expected_rows || requests != expected_requests {
                eprintln!(
                    "warning: {label}: {rows} rows and {requests} requests, the plan says {expected_rows} and {expected_requests}"
                );
            }
            let (baseline_wall, baseline_requests) = self.discarded(p, parent, plan)?;
            if baseline_requests != requests {
                eprintln!(
                    "warning: {label}: the replay made {baseline_requests} requests, the engine {requests}"
                );
            }
            let m = Measurement {
                pipeline: p.name.clone(),
                days,
                rows,
                requests,
                wall: run.wall,
                peak_kib: run.peak_kib,
                baseline_wall,
                baseline_requests,
            };
            eprintln!(
                "{label}: end-to-end {:.2} s, peak {:.1} MiB; bodies discarded {:.2} s",
                m.wall.as_secs_f64(),
                m.peak_mib(),
                m.baseline_wall.as_secs_f64()
            );
            best = Some(match best {
                None => m,
                Some(b) => Measurement {
                    wall: b.wall.min(m.wall),
                    baseline_wall: b.baseline_wall.min(m.baseline_wall),
                    peak_kib: b.peak_kib.max(m.peak_kib),
                    ..b
                },
            });
        }
        best.ok_or_else(|| BenchError::Setup("SOBOT_BENCH_REPEAT is 0".into()))
    }

    /// `sobot-sync backfill` in a child process with a fresh warehouse: the run, the data
    /// requests the simulator served meanwhile, and the rows the command reported.
    fn end_to_end(
        &self,
        p: &Pipeline,
        parent: Option<&Pipeline>,
        label: &str,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<(ChildRun, u64, u64), BenchError> {
        let dir = self.scratch.path().join(label);
        std::fs::create_dir_all(&dir).map_err(BenchError::io(format!("create {dir:?}")))?;
        // issue 15: a child's backfill reads the calls its parent committed, so the parent
        // is backfilled first in the same warehouse, outside the measurement.
        if let Some(parent) = parent {
            let mut cmd = self.command(&dir.join("warehouse"));
            cmd.args(["backfill", &parent.name])
                .args(["--from", &from.to_rfc3339()])
                .args(["--to", &to.to_rfc3339()])
                .args(["--now", &self.now.to_rfc3339()]);
            let parent_dir = dir.join("parent");
            std::fs::create_dir_all(&parent_dir)
                .map_err(BenchError::io(format!("create {parent_dir:?}")))?;
            child::run(cmd, &format!("{label}-parent"), &parent_dir)?;
        }
        let mut cmd = self.command(&dir.join("warehouse"));
        cmd.args(["backfill", &p.name])
            .args(["--from", &from.to_rfc3339()])
            .args(["--to", &to.to_rfc3339()])
            .args(["--now", &self.now.to_rfc3339()]);
        let before = self.sim.stats().requests;
        let run = child::run(cmd, label, &dir)?;
        let requests = self.sim.stats().requests - before;
        let line =
            child::report_line(&run.stdout, &p.name).ok_or_else(|| BenchError::NoReport {
                what: label.to_string(),
                stdout: run.stdout.clone(),
            })?;
        Ok((run, requests, line.rows))
    }

    /// `sobot-sync` against the simulator with a warehouse in `warehouse`: no setting
    /// from the bench's own environment, the engine shaped as [`SHAPE`] and no rate cap.
    fn command(&self, warehouse: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sobot-sync"));
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("SOBOT_") || k.starts_with("AWS_") {
                cmd.env_remove(k.as_ref());
            }
        }
        cmd.env("SOBOT_BASE_URL", self.sim.base_url())
            .env("SOBOT_TOKEN", TOKEN)
            .env("SOBOT_TIMEZONE", TIMEZONE.name())
            .env("SOBOT_MAX_RPS", "1000000")
            .env("SOBOT_MAX_CONCURRENCY", SHAPE.max_concurrency.to_string())
            .env(
                "SOBOT_SYNC_WINDOW_CONCURRENCY",
                SHAPE.window_concurrency.to_string(),
            )
            .env("SOBOT_SYNC_WAREHOUSE", file_url(warehouse))
            .env("SOBOT_SYNC_PIPELINES", repo_dir("pipelines"))
            .env("SOBOT_SYNC_SCHEMAS", repo_dir("schemas"))
            .env("SOBOT_SYNC_LOG", "warn");
        cmd
    }

    /// The same requests with the bodies dropped: wall time and requests served.
    fn discarded(
        &self,
        p: &Pipeline,
        parent: Option<&Pipeline>,
        plan: &RangePlan,
    ) -> Result<(Duration, u64), BenchError> {
        let before = self.sim.stats().requests;
        let started = Instant::now();
        self.replay_runtime.block_on(async {
            match parent {
                Some(parent) => self.replay.children(p, parent, plan).await,
                None => self.replay.search(p, plan).await,
            }
        })?;
        let wall = started.elapsed();
        Ok((wall, self.sim.stats().requests - before))
    }
}

/// A directory of this repository (definitions, schemas), wherever cargo runs us from.
fn repo_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}
