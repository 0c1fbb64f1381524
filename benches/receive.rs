//! Push receiver benchmark: `sobot-sync receive` (the real binary, a child process so
//! its memory is its own) fed over loopback by N concurrent clients, each sending signed
//! talk pushes at an even pace so together they offer a target rate. Reports pushes/s
//! acknowledged, p50/p99/max acknowledgement latency, and the receiver's resident memory
//! over the run (peak and samples), then stops the receiver (SIGTERM: flush) and checks
//! that the warehouse holds one row per acknowledged push.
//!
//! Run with `cargo bench --bench receive`. Environment:
//! - `SOBOT_BENCH_RECEIVE_SECS`: duration in seconds (default 20; 600 for the 10-minute run);
//! - `SOBOT_BENCH_RECEIVE_RATE`: offered pushes/s, all clients together (default 5000;
//!   0 = each client sends as fast as it is answered);
//! - `SOBOT_BENCH_RECEIVE_CLIENTS`: concurrent clients (default 64).
//!
//! The Markdown table goes to stdout, progress and target verdicts to stderr.

use chrono::{TimeZone, Utc};
use serde_json::Value;
use sobot_sync::core::push::PushKind;
use sobot_sync::sim::SimConfig;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sobot-sync");
const APP_KEY: &str = "bench-app-key";

struct Options {
    secs: u64,
    rate: u64,
    clients: usize,
}

fn var(k: &str, default: u64) -> Result<u64, String> {
    match std::env::var(k) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{k} {v:?}: expected a whole number")),
        _ => Ok(default),
    }
}

fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn main() -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(run()))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let opts = Options {
        secs: var("SOBOT_BENCH_RECEIVE_SECS", 20)?,
        rate: var("SOBOT_BENCH_RECEIVE_RATE", 5000)?,
        clients: var("SOBOT_BENCH_RECEIVE_CLIENTS", 64)? as usize,
    };
    let config = SimConfig::default();
    let company = config.company_id.clone();
    // Real talk records as templates; each push gets a call id of its own.
    let from = Utc
        .with_ymd_and_hms(2024, 3, 1, 0, 0, 0)
        .single()
        .ok_or("date")?;
    let templates: Vec<Value> = sobot_sync::sim::push::records(
        &config,
        from,
        from + chrono::Duration::days(1),
        &[PushKind::Talk],
    )
    .into_iter()
    .map(|(_, v)| v)
    .collect();
    if templates.is_empty() {
        return Err("the simulator produced no talks".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut child = tokio::process::Command::new(BIN)
        .args(["receive", "--addr", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SOBOT_PUSH_APP_KEY", APP_KEY)
        .env("SOBOT_PUSH_COMPANY_IDS", &company)
        .env("SOBOT_SYNC_WAREHOUSE", "file://./wh")
        .env("SOBOT_SYNC_RECEIVE_WAL", "./wal")
        .env("SOBOT_SYNC_RECEIVE_FLUSH_SECS", "10")
        .env("SOBOT_SYNC_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {BIN}: {e}"))?;
    let pid = child.id().ok_or("no pid")?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.clients)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut up = false;
    for _ in 0..200 {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !up {
        return Err("the receiver did not become healthy".into());
    }
    eprintln!(
        "receive bench: {} s, {} clients, offered {} pushes/s",
        opts.secs,
        opts.clients,
        if opts.rate == 0 {
            "max".to_string()
        } else {
            opts.rate.to_string()
        }
    );
    let templates = Arc::new(templates);
    let seq = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..opts.clients {
        let (client, base, templates, seq, failed, stop, company) = (
            client.clone(),
            base.clone(),
            templates.clone(),
            seq.clone(),
            failed.clone(),
            stop.clone(),
            company.clone(),
        );
        let period = (opts.rate > 0)
            .then(|| Duration::from_secs_f64(opts.clients as f64 / opts.rate as f64));
        tasks.push(tokio::spawn(async move {
            let mut lat_us: Vec<u32> = Vec::new();
            let mut tick = period.map(|p| {
                let mut i = tokio::time::interval_at(
                    tokio::time::Instant::now() + p.mul_f64(c as f64 / 64.0),
                    p,
                );
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let mut rec = templates[(n as usize) % templates.len()].clone();
                let id = rec["callID"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                rec["callID"] = Value::String(format!("{id}-{n}"));
                rec["startTime"] = Value::from(Utc::now().timestamp_millis());
                let body = rec.to_string();
                let ts = Utc::now().timestamp_millis().to_string();
                let code = format!("b{n}");
                let sign = sobot_sync::core::push::sign::sign(&company, &ts, &code, APP_KEY);
                let t0 = Instant::now();
                let res = client
                    .post(format!("{base}/push/talks"))
                    .header("X-Log-TimeStamp", ts)
                    .header("X-Log-RandomCode", code)
                    .header("X-Log-Sign", sign)
                    .body(body)
                    .send()
                    .await;
                let took = t0.elapsed();
                match res {
                    Ok(r) if r.status() == 200 => {
                        lat_us.push(took.as_micros().min(u32::MAX as u128) as u32)
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat_us
        }));
    }
    // Memory samples while the load runs.
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let every = Duration::from_secs((opts.secs / 10).max(1));
    while started.elapsed() < Duration::from_secs(opts.secs) {
        tokio::time::sleep(
            every.min(Duration::from_secs(opts.secs).saturating_sub(started.elapsed())),
        )
        .await;
        if let Some(kib) = proc_kib(pid, "VmRSS:") {
            samples.push((started.elapsed().as_secs(), kib));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u32> = Vec::new();
    for t in tasks {
        lat.extend(t.await.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let peak = proc_kib(pid, "VmHWM:").unwrap_or(0);
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map_err(|e| e.to_string())?
        .success();
    if !ok {
        return Err("kill -TERM failed".into());
    }
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .map_err(|_| "the receiver did not stop within 120 s".to_string())?
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("the receiver exited with {status}"));
    }
    let rows = count_rows(&dir.path().join("wh/push_talks"))?;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        f64::from(lat[i]) / 1000.0
    };
    let acked = lat.len();
    let rate = acked as f64 / elapsed;
    let (p50, p99, max) = (pct(0.50), pct(0.99), pct(1.0));
    println!(
        "| duration s | clients | offered/s | acknowledged/s | p50 ms | p99 ms | max ms | failed | peak RSS MiB | rows = acked |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {:.0} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {:.0} | {} |",
        elapsed,
        opts.clients,
        if opts.rate == 0 {
            "max".to_string()
        } else {
            opts.rate.to_string()
        },
        rate,
        p50,
        p99,
        max,
        failed.load(Ordering::Relaxed),
        peak as f64 / 1024.0,
        rows == acked as u64,
    );
    let shown: Vec<String> = samples
        .iter()
        .map(|(s, k)| format!("{s}s:{:.0}", *k as f64 / 1024.0))
        .collect();
    println!("\nRSS MiB over the run: {}", shown.join(" "));
    // The replay memory grows until the skew (300 s) has passed, then levels off; the
    // key index keeps only filters: the figures at 1, 5 and 10 minutes show both.
    let at: Vec<String> = [60u64, 300, 600]
        .into_iter()
        .filter(|m| *m <= opts.secs)
        .filter_map(|m| {
            let (s, k) = samples.iter().min_by_key(|(s, _)| s.abs_diff(m))?;
            Some(format!("{} min ({s} s): {:.0}", m / 60, *k as f64 / 1024.0))
        })
        .collect();
    if !at.is_empty() {
        println!("RSS MiB at {}", at.join(", "));
    }
    eprintln!(
        "targets: >= 5000/s {}; p99 < 50 ms {}; rows {} for {} acknowledged",
        // With a paced load the rate is the offered one (less pacing jitter): met when
        // at least 5,000/s were offered and 99% of that was acknowledged.
        if rate >= 5000.0 || (opts.rate >= 5000 && rate >= 0.99 * opts.rate as f64) {
            "met"
        } else {
            "MISSED"
        },
        if p99 < 50.0 { "met" } else { "MISSED" },
        rows,
        acked
    );
    if rows != acked as u64 {
        return Err(format!("{rows} rows for {acked} acknowledged pushes"));
    }
    Ok(())
}

use std::process::Command;

/// Rows in every Parquet file under `dir` (from the footers).
fn count_rows(dir: &std::path::Path) -> Result<u64, String> {
    let mut rows = 0u64;
    let Ok(parts) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    for part in parts {
        let part = part.map_err(|e| e.to_string())?.path();
        for f in std::fs::read_dir(&part).map_err(|e| e.to_string())? {
            let path = f.map_err(|e| e.to_string())?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("parquet") {
                continue;
            }
            let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            let reader = parquet::file::serialized_reader::SerializedFileReader::new(file)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            use parquet::file::reader::FileReader;
            rows += reader.metadata().file_metadata().num_rows() as u64;
        }
    }
    Ok(rows)
}
