//! Runs the real `sobot-sync` binary against an in-process simulator, with a clean
//! environment and a temporary working directory, the way a user's shell or cron would.

use chrono::{DateTime, Utc};
use sobot_sync::sim;
use sobot_sync::sim::{SimConfig, SimHandle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_sobot-sync");
/// The repository's own definitions, so the binary is tested with what ships.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Longest any single command may take before the test calls it hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What one finished command left behind.
#[derive(Debug)]
pub struct Outcome {
    /// `None` when the process died by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Both streams, for "never contains" checks and failure messages.
    pub fn all(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n{}",
            self.all()
        );
        assert_no_panic(self);
        self
    }
}

/// No command may panic or print a backtrace, whatever its input (CONTRACT section 1).
#[track_caller]
pub fn assert_no_panic(o: &Outcome) {
    let all = o.all();
    assert!(
        !all.contains("panicked") && !all.contains("RUST_BACKTRACE"),
        "the binary panicked\n{all}"
    );
}

/// A simulator, a temporary working directory holding the warehouse, and the settings
/// every command of one test shares.
pub struct CliEnv {
    pub dir: tempfile::TempDir,
    pub sim: SimHandle,
    /// The simulated present, both for the simulator and for `--now`.
    pub now: DateTime<Utc>,
    pub env: BTreeMap<String, String>,
}

impl CliEnv {
    /// Starts a simulator whose clock stands at `now` and settings pointing at it:
    /// the sim's credentials, a generous rate cap, `SOBOT_SYNC_START = start`, a warehouse
    /// under the temporary directory and the repository's pipelines and schemas.
    pub async fn start(now: DateTime<Utc>, start: &str) -> CliEnv {
        Self::start_with(
            SimConfig {
                now: Some(now),
                ..SimConfig::default()
            },
            start,
        )
        .await
    }

    pub async fn start_with(config: SimConfig, start: &str) -> CliEnv {
        let now = config.now.expect("tests fix the simulated now");
        let (app_id, app_secret) = (config.app_id.clone(), config.app_secret.clone());
        let sim = sim::start(config, ([127, 0, 0, 1], 0).into())
            .await
            .expect("simulator binds 127.0.0.1:0");
        let dir = tempfile::tempdir().expect("temporary working directory");
        let mut env = BTreeMap::new();
        for (k, v) in [
            ("SOBOT_BASE_URL", sim.base_url()),
            ("SOBOT_APP_ID", app_id),
            ("SOBOT_APP_SECRET", app_secret),
            ("SOBOT_MAX_RPS", "5000".into()),
            ("SOBOT_MAX_CONCURRENCY", "16".into()),
            ("SOBOT_SYNC_START", start.into()),
            ("SOBOT_SYNC_WAREHOUSE", "file://./wh".into()),
            ("SOBOT_SYNC_PIPELINES", format!("{REPO}/pipelines")),
            ("SOBOT_SYNC_SCHEMAS", format!("{REPO}/schemas")),
        ] {
            env.insert(k.to_string(), v);
        }
        CliEnv { dir, sim, now, env }
    }

    /// `--now` as the command line takes it.
    pub fn now_arg(&self) -> String {
        self.now.to_rfc3339()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The warehouse folder (`file://./wh` relative to the working directory).
    pub fn warehouse(&self) -> PathBuf {
        self.dir.path().join("wh")
    }

    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    pub fn unset(&mut self, key: &str) -> &mut Self {
        self.env.remove(key);
        self
    }

    /// The command with a clean environment: only PATH, HOME and this test's settings.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        command(self.dir.path(), &self.env, args)
    }

    pub async fn run(&self, args: &[&str]) -> Outcome {
        output(self.command(args)).await
    }

    /// `run --now NOW`, every enabled pipeline.
    pub async fn sync(&self) -> Outcome {
        self.run(&["run", "--now", &self.now_arg()]).await
    }

    /// `status --json --now NOW`, parsed; fails the test unless it exits 0 with a JSON array.
    pub async fn status(&self) -> Vec<serde_json::Value> {
        let o = self
            .run(&["status", "--json", "--now", &self.now_arg()])
            .await;
        o.expect_code(0);
        match serde_json::from_str::<serde_json::Value>(&o.stdout) {
            Ok(serde_json::Value::Array(rows)) => rows,
            other => panic!("status --json is not a JSON array: {other:?}\n{}", o.all()),
        }
    }

    /// Starts a command without waiting for it (crash and concurrency tests).
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("spawn sobot-sync")
    }
}

pub fn command(
    cwd: &Path,
    env: &BTreeMap<String, String>,
    args: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", cwd)
        .envs(env)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

pub async fn output(mut cmd: tokio::process::Command) -> Outcome {
    let out = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .expect("sobot-sync finished within the timeout")
        .expect("sobot-sync could be started");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Waits for a spawned command and collects its output.
pub async fn finish(child: tokio::process::Child) -> Outcome {
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .expect("sobot-sync finished within the timeout")
        .expect("sobot-sync output");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Files under `dir` that are neither Parquet data nor JSON state: staging leftovers.
pub fn stray_files(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for path in entries.map(|e| e.expect("directory entry").path()) {
            if path.is_dir() {
                walk(&path, out);
            } else if !path
                .extension()
                .is_some_and(|e| e == "parquet" || e == "json")
            {
                out.push(path.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}
