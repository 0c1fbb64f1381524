//! `sobot-sync receive`: Sobot's pushes (API document, Push Management; CONTRACT
//! section 7) verified, made durable in a local write-ahead log before they are
//! acknowledged, and flushed to Parquet tables by size or age.
//!
//! Data path: `server` (signature, replay, body, dead letters) -> `wal` (group commit,
//! fsync, then 200) -> `flush` (convert, de-duplicate by key, Parquet, then delete the
//! WAL segments). On start the WAL is replayed; on SIGTERM/SIGINT the receiver stops
//! accepting, flushes and exits 0.

pub mod deadletter;
pub mod flush;
pub mod keyindex;
pub mod server;
pub mod settings;
pub mod wal;

use crate::core::error::CommandError;
use crate::core::push::{sign, tables};
use crate::io::store::Location;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the flusher looks at the pending pushes' count and age.
const FLUSH_CHECK: Duration = Duration::from_millis(200);
/// Attempts of the last flush at shutdown before giving up (the WAL keeps the pushes).
const FINAL_FLUSH_ATTEMPTS: u32 = 3;

/// What the receiver needs from the settings (`app::receive` hands them in).
pub struct Setup {
    pub receive: settings::ReceiveSettings,
    pub warehouse: Location,
    pub schemas_dir: std::path::PathBuf,
    pub timezone: chrono_tz::Tz,
    pub pii_key: Option<crate::core::privacy::PiiKey>,
}

/// Runs the receiver until SIGTERM/SIGINT.
pub async fn run(settings: Setup, addr: Option<&str>) -> Result<(), CommandError> {
    let rs = settings.receive.clone();
    let (app_key, companies) = rs.require()?;
    let addr: SocketAddr = match addr {
        Some(a) => a.parse().map_err(|_| {
            CommandError::Config(format!(
                "--addr must be an IP address and port such as 0.0.0.0:8780, got {a:?}"
            ))
        })?,
        None => rs.addr,
    };
    let warehouse = settings.warehouse.clone();
    let schemas = Arc::new(tables::load(&settings.schemas_dir).map_err(CommandError::Config)?);
    let metrics = crate::io::obs::metrics::install().map_err(CommandError::Failed)?;
    server::describe();
    let (wal, replayed) = wal::Wal::open(&rs.wal_dir)
        .map_err(|e| CommandError::Config(format!("setting {}: {e}", settings::WAL)))?;
    if !replayed.is_empty() {
        tracing::info!(pushes = replayed.len(), "replaying the write-ahead log");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CommandError::Config(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let max_skew_ms = rs.max_skew.as_millis() as i64;
    let app = Arc::new(server::App {
        app_key: app_key.clone(),
        companies: companies.iter().cloned().collect(),
        max_skew_ms,
        cipher: rs.aes_key.clone().map(|k| (rs.cipher, k)),
        // At 5,000 pushes/s for a 300 s skew: 1.5 M codes; the cap stops a flood
        // beyond that from growing memory further (the oldest codes go first).
        replay: sign::ReplayGuard::new(max_skew_ms, 2_000_000),
        wal: wal.clone(),
        warehouse: warehouse.clone(),
        tz: settings.timezone,
        metrics,
        flush_failing: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        max_body_bytes: rs.max_body_bytes,
    });
    let mut flusher = flush::Flusher::new(
        warehouse,
        schemas,
        settings.timezone,
        settings.pii_key.clone(),
        &rs.wal_dir.join("keys"),
        replayed,
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let flush_task = {
        let app = app.clone();
        let stop = stop.clone();
        let (rows, interval) = (rs.flush_rows, rs.flush_interval);
        tokio::spawn(async move {
            flush_loop(&mut flusher, &app, rows, interval, stop).await;
            flusher
        })
    };
    tracing::info!(addr = %bound, wal = %rs.wal_dir.display(), "receiving pushes");
    let serve = axum::serve(listener, server::router(app.clone())).with_graceful_shutdown({
        let app = app.clone();
        async move {
            match crate::io::signal::shutdown_signal().await {
                Ok(name) => tracing::info!(signal = name, "stopping: no new pushes, flushing"),
                Err(e) => tracing::error!(error = %e, "cannot wait for signals; stopping"),
            }
            app.stopping.store(true, Ordering::Relaxed);
        }
    });
    let served = serve.await;
    stop.cancel();
    let mut flusher = flush_task
        .await
        .map_err(|e| CommandError::Failed(format!("the flush task failed: {e}")))?;
    served.map_err(|e| CommandError::Failed(format!("the push server stopped: {e}")))?;
    let mut last = Ok(flush::Flushed::default());
    for _ in 0..FINAL_FLUSH_ATTEMPTS {
        last = flusher.flush(&app.wal, chrono::Utc::now()).await;
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    flusher.close_all().await;
    match last {
        Ok(f) => {
            tracing::info!(rows = f.rows, "flushed; stopped");
            Ok(())
        }
        Err(e) => Err(CommandError::Failed(format!(
            "the last flush failed ({e}); the pushes stay in the write-ahead log and are flushed on the next start"
        ))),
    }
}

async fn flush_loop(
    flusher: &mut flush::Flusher,
    app: &server::App,
    rows: usize,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut backoff = Duration::ZERO;
    // Replayed pushes go out at once.
    let mut due = flusher.pending() > 0;
    loop {
        if !due {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(FLUSH_CHECK + backoff) => {}
            }
            let status = app.wal.status();
            let pending = status.pending.load(Ordering::Relaxed) + flusher.pending();
            let oldest = status.oldest_ms.load(Ordering::Relaxed);
            let age_ms = chrono::Utc::now().timestamp_millis().saturating_sub(oldest);
            due = pending >= rows
                || (pending > 0 && age_ms >= interval.as_millis() as i64)
                || flusher.pending() > 0;
        }
        if !due {
            continue;
        }
        due = false;
        match flusher.flush(&app.wal, chrono::Utc::now()).await {
            Ok(f) => {
                // A flush frees the pushes' JSON and the encoded files: hand the pages
                // back, as the window runner does after each file (`crate::io::mem`).
                crate::io::mem::release_free_memory();
                app.flush_failing.store(false, Ordering::Relaxed);
                backoff = Duration::ZERO;
                if f.rows > 0 || f.duplicates > 0 {
                    tracing::info!(
                        rows = f.rows,
                        duplicates = f.duplicates,
                        files = f.files.len(),
                        "flushed pushes to Parquet"
                    );
                }
            }
            Err(e) => {
                app.flush_failing.store(true, Ordering::Relaxed);
                backoff = (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
                tracing::error!(error = %e, retry_in_secs = backoff.as_secs(), "flush failed; the pushes stay in the write-ahead log");
            }
        }
    }
}
