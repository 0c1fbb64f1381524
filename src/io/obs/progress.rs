//! The `backfill` progress bar: windows done of total, rows, ETA, on stderr when it is
//! a terminal, and nothing at all otherwise (CI, log files, containers).
//!
//! The runner reports through two free functions ([`planned`], [`advanced`]) that do
//! nothing unless a [`BackfillBar`] is alive, so the run drivers need no extra
//! parameter and incremental runs pay nothing. Log lines go through
//! [`stderr_writer`], which lifts the bar while a line is printed so the two never
//! garble each other.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// The live bar, if a backfill on a terminal asked for one.
static SLOT: Mutex<Option<Slot>> = Mutex::new(None);

struct Slot {
    label: String,
    bar: Option<ProgressBar>,
    rows: u64,
}

fn with_slot<T>(f: impl FnOnce(&mut Option<Slot>) -> T) -> T {
    let mut guard = SLOT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut guard)
}

/// Keeps the bar alive for one backfill; dropping it takes the bar down.
pub struct BackfillBar(());

impl BackfillBar {
    /// A bar for a backfill of `pipeline`, or `None` when stderr is not a terminal.
    pub fn start(pipeline: &str) -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        with_slot(|s| {
            *s = Some(Slot {
                label: pipeline.to_string(),
                bar: None,
                rows: 0,
            })
        });
        Some(BackfillBar(()))
    }
}

impl Drop for BackfillBar {
    fn drop(&mut self) {
        if let Some(bar) = with_slot(|s| s.take()).and_then(|s| s.bar) {
            bar.abandon();
        }
    }
}

/// The backfill has `windows` windows left to load: the bar appears.
pub fn planned(windows: u64) {
    with_slot(|s| {
        let Some(slot) = s.as_mut() else { return };
        let bar = ProgressBar::with_draw_target(Some(windows), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} windows, {msg}, ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(slot.label.clone());
        bar.set_message("0 rows");
        slot.bar = Some(bar);
    });
}

/// `windows` more windows committed, holding `rows` rows.
pub fn advanced(windows: u64, rows: u64) {
    with_slot(|s| {
        let Some(slot) = s.as_mut() else { return };
        slot.rows += rows;
        if let Some(bar) = &slot.bar {
            bar.inc(windows);
            bar.set_message(format!("{} rows", slot.rows));
        }
    });
}

/// The bar, if one is showing (cloning shares it).
fn bar() -> Option<ProgressBar> {
    with_slot(|s| s.as_ref().and_then(|s| s.bar.clone()))
}

/// Standard error for log lines, printed above the progress bar when one is showing.
pub struct StderrWriter;

/// `MakeWriter` for `tracing_subscriber`.
pub fn stderr_writer() -> StderrWriter {
    StderrWriter
}

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match bar() {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
