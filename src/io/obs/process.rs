//! The standard Prometheus process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_start_time_seconds`),
//! read from `/proc/self` at each scrape. No crate of the kind was at hand offline, and
//! four numbers from procfs need none. On a system without `/proc` they are left out.

use std::path::Path;

pub const CPU_SECONDS: &str = "process_cpu_seconds_total";
pub const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
pub const OPEN_FDS: &str = "process_open_fds";
pub const START_TIME: &str = "process_start_time_seconds";

/// Clock ticks per second of `/proc`'s times: `USER_HZ`, 100 on every Linux ABI that
/// exposes it to user space.
const TICKS_PER_SEC: f64 = 100.0;

pub(super) fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        CPU_SECONDS,
        Unit::Seconds,
        "Total user and system CPU time spent"
    );
    describe_gauge!(RESIDENT_MEMORY, Unit::Bytes, "Resident memory size");
    describe_gauge!(OPEN_FDS, "Number of open file descriptors");
    describe_gauge!(
        START_TIME,
        Unit::Seconds,
        "Start time of the process since the Unix epoch"
    );
}

/// What `/proc` says about the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    /// Seconds after boot the process started (`btime` turns it into a Unix time).
    pub started_after_boot: f64,
}

/// Reads `utime`, `stime`, `starttime` and `rss` from the text of `/proc/<pid>/stat`.
/// The command name (field 2) is in parentheses and may hold spaces, so fields are
/// counted after its closing one.
pub fn parse_stat(stat: &str, page_size: f64) -> Option<Sample> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): field N is at index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(Sample {
        cpu_seconds: (num(14)? + num(15)?) / TICKS_PER_SEC,
        started_after_boot: num(22)? / TICKS_PER_SEC,
        resident_bytes: num(24)? * page_size,
    })
}

/// The boot time (`btime`, Unix seconds) from the text of `/proc/stat`.
pub fn parse_boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn page_size() -> f64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: sysconf only reads a constant of the system.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 {
            return size as f64;
        }
    }
    4096.0
}

/// Sets the process gauges from `/proc` (a no-op where it cannot be read).
pub fn record() {
    let proc = Path::new("/proc");
    let Some(sample) = std::fs::read_to_string(proc.join("self/stat"))
        .ok()
        .and_then(|s| parse_stat(&s, page_size()))
    else {
        return;
    };
    metrics::counter!(CPU_SECONDS).absolute(sample.cpu_seconds as u64);
    metrics::gauge!(RESIDENT_MEMORY).set(sample.resident_bytes);
    if let Some(boot) = std::fs::read_to_string(proc.join("stat"))
        .ok()
        .and_then(|s| parse_boot_time(&s))
    {
        metrics::gauge!(START_TIME).set(boot + sample.started_after_boot);
    }
    if let Ok(fds) = std::fs::read_dir(proc.join("self/fd")) {
        metrics::gauge!(OPEN_FDS).set(fds.count() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis, as /proc shows it.
        let stat = "4242 (sobot (sync) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 50 0 0 20 0 9 0 12345 1000000 300 18446744073709551615";
        let s = parse_stat(stat, 4096.0).expect("parses");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.started_after_boot, 123.45);
        assert_eq!(s.resident_bytes, 300.0 * 4096.0);
        assert_eq!(parse_stat("no parenthesis", 4096.0), None);
    }

    #[test]
    fn boot_time_is_read_from_btime() {
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1.7e9)
        );
        assert_eq!(parse_boot_time("cpu 1 2 3\n"), None);
    }

    #[test]
    fn this_process_can_be_read_on_linux() {
        if cfg!(target_os = "linux") {
            let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
            let s = parse_stat(&stat, page_size()).expect("this process's stat parses");
            assert!(s.resident_bytes > 0.0, "{s:?}");
        }
    }
}
