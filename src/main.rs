use clap::Parser;
use std::process::ExitCode;

/// glibc raises its mmap threshold after large frees (zstd's per-column contexts, page
/// buffers) and keeps an arena per thread, so a long backfill's peak memory crept up with
/// its length although nothing was held (see docs/performance.md). A fixed threshold and
/// two arenas keep it flat. The threshold sits above an API answer (a page of 200 talks
/// is about 200 KB): with 64 KB, every answer and its copies were fresh mappings, each
/// page of them a fault (1 MB took about a sixth off the process's kernel time).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; it runs first in main, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    let cli = sobot_sync::app::cli::Cli::parse();
    // Human or JSON lines (SOBOT_SYNC_LOG_FORMAT), before the settings are read.
    if let Err(e) = sobot_sync::io::obs::logging::init() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
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
    runtime.block_on(sobot_sync::app::cli::main(cli))
}
