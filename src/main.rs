use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

/// glibc raises its mmap threshold after large frees (zstd's per-column contexts, page
/// buffers) and keeps an arena per thread, so a long backfill's peak memory crept up with
/// its length although nothing was held (see README, Performance). A fixed threshold and
/// two arenas keep it flat.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; it runs first in main, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    let cli = sobot_sync::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOBOT_SYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(sobot_sync::cli::main(cli))
}
