//! Build facts for `sobot_sync_build_info` (`src/io/obs/metrics.rs`): the Rust compiler
//! and the target triple, which only the build knows.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_string());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    // `rustc 1.95.0 (59807616e 2026-04-14)`: the version is the second word.
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SOBOT_SYNC_TARGET={target}");
    println!("cargo:rustc-env=SOBOT_SYNC_RUSTC={version}");
}
