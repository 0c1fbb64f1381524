//! issue 5 (R): `sobot-sync receive`, the real binary, fed by the simulator's push
//! sender (`sim::push`): every push type into its table, refusals counted, dead
//! letters kept, encrypted bodies in each mode, and a SIGKILL under load.

use crate::support::cli_proc::{self, CliEnv, Outcome};
use crate::support::parquet_file;
use crate::support::table::{i64_at, ms_at, str_at};
use arrow::array::RecordBatch;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sobot_sync::core::push::PushKind;
use sobot_sync::core::push::cipher::{AesKey, CipherMode};
use sobot_sync::sim::push::{PushPlan, Sent};
use sobot_sync::sim::{SimConfig, push};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

mod durability;
mod refusals;

const APP_KEY: &str = "push-app-key-for-tests";
const AES_KEY: &str = "0123456789abcdef0123456789abcdef";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 2, 0, 0, 0).unwrap()
}

fn company() -> String {
    SimConfig::default().company_id
}

/// A free loopback port (bound, then released for the receiver).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A receiver's environment and the child process when running.
struct Receiver {
    env: CliEnv,
    port: u16,
    child: Option<tokio::process::Child>,
}

impl Receiver {
    async fn new() -> Receiver {
        let mut env = CliEnv::start(now(), "2024-03-01").await;
        env.set("SOBOT_PUSH_APP_KEY", APP_KEY)
            .set(
                "SOBOT_PUSH_COMPANY_IDS",
                &format!("other-co, {}", company()),
            )
            .set("SOBOT_PUSH_AES_KEY", AES_KEY)
            .set("SOBOT_SYNC_RECEIVE_WAL", "./wal")
            .set("SOBOT_SYNC_RECEIVE_FLUSH_SECS", "1");
        Receiver {
            env,
            port: free_port(),
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts `receive` and waits until `/healthz` answers 200.
    async fn start(&mut self) {
        let addr = format!("127.0.0.1:{}", self.port);
        self.child = Some(self.env.spawn(&["receive", "--addr", &addr]));
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/healthz", self.url())).send().await
                && r.status() == 200
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let out = cli_proc::finish(self.child.take().expect("child")).await;
                panic!("receive exited early with {status}\n{}", out.all());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("receive did not become healthy");
    }

    /// SIGTERM, then the exit; the receiver must flush and exit 0.
    async fn stop(&mut self) -> Outcome {
        let child = self.child.take().expect("a running receiver");
        let pid = child.id().expect("the receiver is running");
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM {pid} failed");
        let out = cli_proc::finish(child).await;
        out.expect_code(0);
        assert!(
            !out.all().contains(APP_KEY),
            "the app key was logged\n{}",
            out.all()
        );
        assert!(
            !out.all().contains(AES_KEY),
            "the AES key was logged\n{}",
            out.all()
        );
        out
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url()))
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("/metrics text")
    }

    fn plan(&self, records: Vec<(PushKind, Value)>) -> PushPlan {
        PushPlan {
            target: self.url(),
            company_id: company(),
            app_key: APP_KEY.into(),
            records,
            repeat_every: None,
            encrypt: None,
            bad_sign_every: None,
            stale_every: None,
            replay_every: None,
            concurrency: 8,
        }
    }
}

/// The pushes of a few simulated hours.
fn records(kinds: &[PushKind], hours: i64) -> Vec<(PushKind, Value)> {
    let from = Utc.with_ymd_and_hms(2024, 3, 1, 1, 0, 0).unwrap();
    push::records(
        &SimConfig::default(),
        from,
        from + chrono::Duration::hours(hours),
        kinds,
    )
}

/// Every row of `table` in the warehouse, with its key as the sender computes it.
fn read_table(wh: &Path, kind: PushKind) -> Vec<(String, RecordBatch, usize)> {
    let mut out = Vec::new();
    let dir = wh.join(kind.table());
    let Ok(parts) = std::fs::read_dir(&dir) else {
        return out;
    };
    for part in parts {
        let part = part.expect("partition folder").path();
        for file in std::fs::read_dir(&part).expect("partition listing") {
            let path = file.expect("file").path();
            if path.extension().and_then(|e| e.to_str()) != Some("parquet") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read file");
            let batch = parquet_file::decode(bytes.into(), &path.display().to_string());
            for i in 0..batch.num_rows() {
                out.push((row_key(kind, &batch, i), batch.clone(), i));
            }
        }
    }
    out
}

fn row_key(kind: PushKind, b: &RecordBatch, i: usize) -> String {
    let s = |c: &str| str_at(b, c, i).unwrap_or_default();
    match kind {
        PushKind::Talk => s("call_id"),
        PushKind::Party => s("party_id"),
        PushKind::CallEvent => s("event_key"),
        PushKind::AgentStatus => [
            s("company_id"),
            s("agent_uuid"),
            ms_at(b, "start_time", i).map_or(String::new(), |v| v.to_string()),
            i64_at(b, "login_status", i).map_or(String::new(), |v| v.to_string()),
            i64_at(b, "work_status", i).map_or(String::new(), |v| v.to_string()),
        ]
        .join("\u{1f}"),
    }
}

/// Keys per table: each key once, and the set of keys.
fn keys_once(wh: &Path, kind: PushKind) -> BTreeSet<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (k, _, _) in read_table(wh, kind) {
        *counts.entry(k).or_default() += 1;
    }
    let dup: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "{}: duplicate keys {dup:?}", kind.table());
    counts.into_keys().collect()
}

fn acked(sent: &[Sent], kind: PushKind) -> BTreeSet<String> {
    sent.iter()
        .filter(|s| s.push == kind.path() && s.acknowledged())
        .map(|s| s.key.clone())
        .collect()
}

/// The value of one series of `/metrics` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_push_type_lands_in_its_table_once() {
    let mut r = Receiver::new().await;
    r.start().await;
    let all = records(&PushKind::ALL, 4);
    let mut plan = r.plan(all.clone());
    plan.repeat_every = Some(4); // Sobot retries: acknowledged twice, one row
    let sent = push::send(&plan).await;
    assert!(
        sent.iter().all(Sent::acknowledged),
        "every push acknowledged"
    );
    r.stop().await;
    let wh = r.env.warehouse();
    for kind in PushKind::ALL {
        let expected = acked(&sent, kind);
        assert!(!expected.is_empty(), "{kind:?}: the sender sent some");
        assert_eq!(keys_once(&wh, kind), expected, "{}", kind.table());
        // The rows hold what was sent.
        let by_key: BTreeMap<String, &Value> = all
            .iter()
            .filter(|(k, _)| *k == kind)
            .zip(sent.iter().filter(|s| s.push == kind.path()))
            .map(|((_, v), s)| (s.key.clone(), v))
            .collect();
        for (key, b, i) in read_table(&wh, kind) {
            let v = by_key[&key];
            let (col, field) = match kind {
                PushKind::Talk => ("start_time", "startTime"),
                PushKind::Party => ("start_time", "startTime"),
                PushKind::AgentStatus => ("creation_time", "creationTime"),
                PushKind::CallEvent => ("creation_time", "creationTime"),
            };
            assert_eq!(ms_at(&b, col, i), v[field].as_i64(), "{key} {col}");
            assert!(str_at(&b, "_run_id", i).is_some());
            assert!(ms_at(&b, "_extracted_at", i).is_some());
        }
        // A talk's text columns round-trip too.
        if kind == PushKind::Talk {
            for (key, b, i) in read_table(&wh, kind) {
                let want = by_key[&key]["lastAgentName"].as_str().map(str::trim);
                let got = str_at(&b, "last_agent_name", i);
                assert_eq!(got.as_deref(), want, "{key}");
            }
        }
    }
    // Nothing left behind: the WAL is empty after a clean stop (its `keys` folder holds
    // the key index).
    let wal: Vec<_> = std::fs::read_dir(r.env.path().join("wal"))
        .expect("wal folder")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
        .filter(|e| {
            std::fs::metadata(e.path())
                .map(|m| m.len() > 0)
                .unwrap_or(false)
        })
        .collect();
    assert!(wal.is_empty(), "WAL segments with data left: {wal:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_bodies_in_every_mode_and_key_length() {
    let keys = ["0123456789abcdef", "0123456789abcdef01234567", AES_KEY];
    for (mode, key) in CipherMode::ALL.into_iter().zip(keys) {
        let mut r = Receiver::new().await;
        r.env
            .set("SOBOT_PUSH_CIPHER", mode.as_str())
            .set("SOBOT_PUSH_AES_KEY", key);
        r.start().await;
        let mut plan = r.plan(records(&[PushKind::Talk, PushKind::Party], 2));
        plan.encrypt = Some((2, mode, AesKey::parse(key).expect("key")));
        let sent = push::send(&plan).await;
        assert!(sent.iter().any(|s| s.encrypted));
        assert!(sent.iter().all(Sent::acknowledged), "{mode:?}");
        r.stop().await;
        for kind in [PushKind::Talk, PushKind::Party] {
            assert_eq!(
                keys_once(&r.env.warehouse(), kind),
                acked(&sent, kind),
                "{mode:?} {kind:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_push_command_sends_signed_pushes_and_reports_them() {
    let mut r = Receiver::new().await;
    r.start().await;
    let report = r.env.path().join("pushes.json");
    let out = r
        .env
        .run(&[
            "sim",
            "push",
            "--target",
            &r.url(),
            "--from",
            "2024-03-01T01:00:00Z",
            "--to",
            "2024-03-01T03:00:00Z",
            "--kinds",
            "talks,call-events",
            "--bad-sign-every",
            "3",
            "--encrypt-every",
            "2",
            "--report",
            &report.display().to_string(),
        ])
        .await;
    out.expect_code(0);
    let summary: Value = serde_json::from_str(out.stdout.trim()).expect("a JSON summary");
    let records = summary["records"].as_u64().expect("records");
    assert!(records > 0);
    assert_eq!(summary["acknowledged"].as_u64(), Some(records));
    assert_eq!(summary["attempts"]["ok:200"].as_u64(), Some(records));
    assert_eq!(
        summary["attempts"]["bad_sign:401"].as_u64(),
        Some(records / 3)
    );
    let sent: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("report JSON");
    assert_eq!(sent.len() as u64, records);
    r.stop().await;
    let talks: BTreeSet<String> = sent
        .iter()
        .filter(|s| s["push"] == "talks")
        .filter_map(|s| s["key"].as_str().map(str::to_string))
        .collect();
    assert_eq!(keys_once(&r.env.warehouse(), PushKind::Talk), talks);
}
