//! Who holds a lock, and whether that process still exists (issue 13, crash recovery).
//!
//! A lock generation records the process that wrote it: host name, pid, the process's
//! start time and the kernel's boot id (and the pid namespace, so that two containers on
//! one kernel, each with its own pid 1, are never compared by pid). Another process on
//! the same host and boot can then tell a crashed holder from a live one at once, instead
//! of waiting for the lease to expire. A reused pid is not mistaken for the holder: its
//! start time differs. Everything that cannot be known (another host, another boot,
//! another pid namespace, a record from an older version, a system without `/proc`)
//! is [`Liveness::Unknown`], and such a lock keeps its lease until it expires.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The process that wrote a lock generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderProcess {
    /// The host name (`/proc/sys/kernel/hostname` on Linux).
    pub host: String,
    pub pid: u32,
    /// Field 22 (`starttime`) of `/proc/<pid>/stat`: clock ticks after boot. With the
    /// boot id it names one process for good; a later process with the same pid has
    /// another start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    /// `/proc/sys/kernel/random/boot_id`: start times are only comparable within one boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The target of `/proc/self/ns/pid` (`pid:[4026531836]`): pids are only comparable
    /// within one pid namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
}

impl std::fmt::Display for HolderProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on host {}", self.pid, self.host)
    }
}

/// Whether a lock's holder process still runs, as far as this process can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Same host, boot and pid namespace, and a process with that pid and start time runs.
    Alive,
    /// Same host, boot and pid namespace, and no process with that pid and start time
    /// exists: the holder crashed or was killed. Its lock may be taken over at once.
    Dead,
    /// Another host or boot, or not enough recorded to tell: wait for the lease.
    Unknown,
}

/// What looking up a pid on this host found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// No process has this pid.
    Gone,
    /// A process has this pid; its start time when it could be read.
    Running { start_ticks: Option<u64> },
    /// The lookup failed in a way that says nothing (no `/proc`, no permission).
    Unknown,
}

impl HolderProcess {
    /// This process, computed once.
    pub fn current() -> &'static HolderProcess {
        static CURRENT: OnceLock<HolderProcess> = OnceLock::new();
        CURRENT.get_or_init(|| {
            let pid = std::process::id();
            HolderProcess {
                host: host_name(),
                pid,
                start_ticks: match probe(pid) {
                    Probe::Running { start_ticks } => start_ticks,
                    _ => None,
                },
                boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
                pid_ns: std::fs::read_link("/proc/self/ns/pid")
                    .ok()
                    .map(|p| p.display().to_string()),
            }
        })
    }

    /// Whether this recorded holder still runs, seen from `me`, with `probe` looking up
    /// pids on this host (the real one is [`probe`]; tests pass their own).
    pub fn liveness_from(&self, me: &HolderProcess, probe: impl Fn(u32) -> Probe) -> Liveness {
        let same =
            |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(a), Some(b)) if a == b);
        if self.host != me.host
            || !same(&self.boot_id, &me.boot_id)
            || !same(&self.pid_ns, &me.pid_ns)
        {
            return Liveness::Unknown;
        }
        let Some(recorded) = self.start_ticks else {
            return Liveness::Unknown;
        };
        match probe(self.pid) {
            Probe::Gone => Liveness::Dead,
            Probe::Running {
                start_ticks: Some(now),
            } if now != recorded => Liveness::Dead,
            Probe::Running {
                start_ticks: Some(_),
            } => Liveness::Alive,
            Probe::Running { start_ticks: None } | Probe::Unknown => Liveness::Unknown,
        }
    }

    /// [`Self::liveness_from`] this process, probing the real `/proc`.
    pub fn liveness(&self) -> Liveness {
        self.liveness_from(Self::current(), probe)
    }
}

/// Looks `pid` up in `/proc`. A missing entry is confirmed with `kill(pid, 0)` where
/// libc is linked, because `/proc` mounted with `hidepid` hides other users' processes.
pub fn probe(pid: u32) -> Probe {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => Probe::Running {
            start_ticks: start_ticks(&text),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !std::path::Path::new("/proc/self/stat").exists() {
                return Probe::Unknown;
            }
            confirm_gone(pid)
        }
        Err(_) => Probe::Unknown,
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn confirm_gone(pid: u32) -> Probe {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return Probe::Unknown;
    };
    // SAFETY: signal 0 only asks the kernel whether the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc == 0 {
        return Probe::Running { start_ticks: None };
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ESRCH) => Probe::Gone,
        Some(libc::EPERM) => Probe::Running { start_ticks: None },
        _ => Probe::Unknown,
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn confirm_gone(_pid: u32) -> Probe {
    Probe::Gone
}

/// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted after the last `)`.
pub fn start_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (the state), so field 22 is the 20th after it.
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn host_name() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown-host".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> HolderProcess {
        HolderProcess {
            host: "worker-1".into(),
            pid: 100,
            start_ticks: Some(5_000),
            boot_id: Some("boot-a".into()),
            pid_ns: Some("pid:[1]".into()),
        }
    }

    fn holder(pid: u32, start: u64) -> HolderProcess {
        HolderProcess {
            pid,
            start_ticks: Some(start),
            ..me()
        }
    }

    #[test]
    fn same_host_and_a_gone_pid_is_dead() {
        let l = holder(4242, 7_000).liveness_from(&me(), |_| Probe::Gone);
        assert_eq!(l, Liveness::Dead);
    }

    #[test]
    fn a_reused_pid_with_another_start_time_is_dead() {
        let l = holder(4242, 7_000).liveness_from(&me(), |pid| {
            assert_eq!(pid, 4242);
            Probe::Running {
                start_ticks: Some(9_999),
            }
        });
        assert_eq!(l, Liveness::Dead);
    }

    #[test]
    fn the_same_pid_and_start_time_is_alive() {
        let l = holder(4242, 7_000).liveness_from(&me(), |_| Probe::Running {
            start_ticks: Some(7_000),
        });
        assert_eq!(l, Liveness::Alive);
    }

    #[test]
    fn another_host_waits_however_the_pid_looks() {
        let other = HolderProcess {
            host: "worker-2".into(),
            ..holder(4242, 7_000)
        };
        assert_eq!(
            other.liveness_from(&me(), |_| Probe::Gone),
            Liveness::Unknown
        );
    }

    #[test]
    fn another_boot_or_pid_namespace_waits() {
        let rebooted = HolderProcess {
            boot_id: Some("boot-b".into()),
            ..holder(4242, 7_000)
        };
        assert_eq!(
            rebooted.liveness_from(&me(), |_| Probe::Gone),
            Liveness::Unknown
        );
        let container = HolderProcess {
            pid_ns: Some("pid:[2]".into()),
            ..holder(4242, 7_000)
        };
        assert_eq!(
            container.liveness_from(&me(), |_| Probe::Gone),
            Liveness::Unknown
        );
    }

    #[test]
    fn what_was_not_recorded_or_cannot_be_read_waits() {
        let no_start = HolderProcess {
            start_ticks: None,
            ..holder(4242, 7_000)
        };
        assert_eq!(
            no_start.liveness_from(&me(), |_| Probe::Gone),
            Liveness::Unknown
        );
        let no_boot = HolderProcess {
            boot_id: None,
            ..holder(4242, 7_000)
        };
        let me_no_boot = HolderProcess {
            boot_id: None,
            ..me()
        };
        assert_eq!(
            no_boot.liveness_from(&me_no_boot, |_| Probe::Gone),
            Liveness::Unknown
        );
        assert_eq!(
            holder(4242, 7_000).liveness_from(&me(), |_| Probe::Unknown),
            Liveness::Unknown
        );
        assert_eq!(
            holder(4242, 7_000).liveness_from(&me(), |_| Probe::Running { start_ticks: None }),
            Liveness::Unknown
        );
    }

    #[test]
    fn start_time_is_field_22_even_with_parentheses_in_the_name() {
        let line = "17245 (c a) t)) R 17242 17242 12960 0 -1 4194304 127 0 0 0 0 0 0 0 20 0 1 0 120565 3133440 381";
        assert_eq!(start_ticks(line), Some(120_565));
        assert_eq!(start_ticks("1 (x) R 2"), None);
        assert_eq!(start_ticks("no parenthesis"), None);
    }

    /// The real probe on this machine: this process is alive with its own start time, a
    /// child that exited is dead (Linux only: elsewhere liveness is never known).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_real_probe_sees_this_process_and_a_finished_child() {
        let current = HolderProcess::current();
        assert!(current.start_ticks.is_some() && current.boot_id.is_some());
        assert_eq!(current.liveness(), Liveness::Alive);
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        let alive_then = HolderProcess {
            pid,
            start_ticks: match probe(pid) {
                Probe::Running { start_ticks } => start_ticks,
                _ => Some(0),
            },
            ..current.clone()
        };
        child.wait().expect("reap true");
        assert_eq!(alive_then.liveness(), Liveness::Dead);
    }
}
