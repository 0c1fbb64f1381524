//! issue 5 (R): `sobot-sync receive`, the real binary, fed by the simulator's push
//! sender (`sim::push`): every push type into its table, refusals counted, dead
//! letters kept, encrypted bodies in each mode, and a SIGKILL under load.

use crate::support::cli_proc::{
    CliEnv, Outcome, {self},
};
use crate::support::parquet_file;
use crate::support::table::{i64_at, ms_at, str_at};
use arrow::array::RecordBatch;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sobot_sync::core::push::PushKind;
use sobot_sync::core::push::cipher::{AesKey, CipherMode};
use sobot_sync::sim::SimConfig;
use sobot_sync::sim::push::{
    PushPlan, Sent, {self},
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

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
async fn bad_signatures_stale_timestamps_replays_and_unknown_companies_are_refused_and_counted() {
    let mut r = Receiver::new().await;
    r.start().await;
    let talks = records(&[PushKind::Talk], 2);
    assert!(talks.len() >= 8);
    let mut plan = r.plan(talks.clone());
    plan.bad_sign_every = Some(2);
    plan.stale_every = Some(3);
    plan.replay_every = Some(4);
    let sent = push::send(&plan).await;
    let count = |fault: &str, status: u16| {
        sent.iter()
            .flat_map(|s| &s.attempts)
            .filter(|a| a.kind == fault && a.status == Some(status))
            .count()
    };
    let n = talks.len();
    assert_eq!(count("bad_sign", 401), n / 2);
    assert_eq!(count("stale", 401), n / 3);
    assert_eq!(count("replay", 401), n / 4);
    assert_eq!(count("ok", 200), n);
    // An unknown company, signed correctly with the app key.
    let client = reqwest::Client::new();
    let ts = Utc::now().timestamp_millis().to_string();
    let body = serde_json::json!({"companyId": "stranger", "callID": "x1"}).to_string();
    let sign = sobot_sync::core::push::sign::sign("stranger", &ts, "rc-1", APP_KEY);
    let res = client
        .post(format!("{}/push/talks", r.url()))
        .header("X-Log-TimeStamp", &ts)
        .header("X-Log-RandomCode", "rc-1")
        .header("X-Log-Sign", sign)
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 401);
    // No headers at all.
    let res = client
        .post(format!("{}/push/talks", r.url()))
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 401);
    let m = r.metrics().await;
    let refused = "sobot_sync_push_refused_total";
    let talks_401 = ["push=\"talks\"", "status=\"401\""];
    let reason = |why: &str| {
        let label = format!("reason=\"{why}\"");
        metric(&m, refused, &[talks_401[0], talks_401[1], &label])
    };
    assert_eq!(reason("bad_signature"), (n / 2) as f64, "{m}");
    assert_eq!(reason("stale_timestamp"), (n / 3) as f64, "{m}");
    assert_eq!(reason("replay"), (n / 4) as f64, "{m}");
    assert_eq!(reason("unknown_company"), 1.0, "{m}");
    assert_eq!(reason("missing_headers"), 1.0, "{m}");
    let out = r.stop().await;
    assert!(out.all().contains("bad_signature"), "refusals are logged");
    // Refused pushes left no rows; the good ones are there once.
    assert_eq!(
        keys_once(&r.env.warehouse(), PushKind::Talk),
        acked(&sent, PushKind::Talk)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_bodies_get_400_and_are_kept_as_dead_letters() {
    let mut r = Receiver::new().await;
    r.start().await;
    let client = reqwest::Client::new();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("talks", b"{\"companyId\": \"x\", not json".to_vec()),
        (
            "parties",
            br#"{"content":"bm90IGVuY3J5cHRlZCB3aXRoIG91ciBrZXk="}"#.to_vec(),
        ),
        ("call-events", b"[1, 2, 3]".to_vec()),
        ("agent-status", vec![0xff, 0xfe, 0x00, 0x01]),
    ];
    let send = |path: &str, body: Vec<u8>, sign: String, ts: String| {
        client
            .post(format!("{}/push/{path}", r.url()))
            .header("X-Log-TimeStamp", ts)
            .header("X-Log-RandomCode", "rc")
            .header("X-Log-Sign", sign)
            .body(body)
            .send()
    };
    // Unsigned garbage is refused before its body is looked at: nothing is stored.
    for (path, body) in &bodies {
        let ts = Utc::now().timestamp_millis().to_string();
        let res = send(path, body.clone(), "00".into(), ts)
            .await
            .expect("answer");
        assert_eq!(res.status(), 401, "{path}");
    }
    assert!(
        !r.env.warehouse().join("_dead_letters").exists(),
        "no dead letter from an unsigned request"
    );
    // Signed by a configured company: kept as dead letters.
    for (path, body) in &bodies {
        let ts = Utc::now().timestamp_millis().to_string();
        let sign = sobot_sync::core::push::sign::sign(&company(), &ts, "rc", APP_KEY);
        let res = send(path, body.clone(), sign, ts).await.expect("answer");
        assert_eq!(res.status(), 400, "{path}");
    }
    let m = r.metrics().await;
    assert_eq!(
        metric(&m, "sobot_sync_push_dead_letters_total", &[]),
        4.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "sobot_sync_push_refused_total", &["status=\"400\""]),
        4.0,
        "{m}"
    );
    r.stop().await;
    for (path, body) in &bodies {
        let dir = r.env.warehouse().join("_dead_letters").join(path);
        let mut found = Vec::new();
        for part in std::fs::read_dir(&dir).expect("dead letters of the push") {
            for f in std::fs::read_dir(part.expect("dt folder").path()).expect("listing") {
                found.push(f.expect("file").path());
            }
        }
        let letters: Vec<_> = found
            .iter()
            .filter(|p| !p.to_string_lossy().ends_with(".headers.json"))
            .collect();
        assert_eq!(letters.len(), 1, "{path}: {found:?}");
        assert_eq!(&std::fs::read(letters[0]).expect("letter"), body, "{path}");
        let meta: Value = serde_json::from_slice(
            &std::fs::read(letters[0].with_extension("headers.json")).expect("headers file"),
        )
        .expect("headers JSON");
        assert_eq!(meta["headers"]["x-log-randomcode"], "rc");
    }
}

/// A body over `SOBOT_SYNC_RECEIVE_MAX_BODY_BYTES` gets 413, counted and logged, and is not
/// kept; a body of exactly the limit is read and acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_size_limit_gets_413_and_is_counted() {
    let mut r = Receiver::new().await;
    let record = |padding: usize| {
        serde_json::json!({
            "companyId": company(),
            "callID": format!("call-limit-{padding}"),
            "startTime": 1_709_258_400_000_i64,
            "remark": "x".repeat(padding),
        })
        .to_string()
        .into_bytes()
    };
    // The limit is the size of the record padded by 300 bytes.
    let limit = record(300).len();
    r.env
        .set("SOBOT_SYNC_RECEIVE_MAX_BODY_BYTES", &limit.to_string());
    r.start().await;
    let client = reqwest::Client::new();
    let send = |code: &'static str, body: Vec<u8>| {
        let ts = Utc::now().timestamp_millis().to_string();
        let sign = sobot_sync::core::push::sign::sign(&company(), &ts, code, APP_KEY);
        client
            .post(format!("{}/push/talks", r.url()))
            .header("X-Log-TimeStamp", ts)
            .header("X-Log-RandomCode", code)
            .header("X-Log-Sign", sign)
            .body(body)
            .send()
    };
    let at_limit = send("rc-at-limit", record(300)).await.expect("answer");
    assert_eq!(at_limit.status(), 200, "a body of exactly the limit");
    let over = send("rc-over", record(301)).await.expect("answer");
    assert_eq!(over.status(), 413, "one byte over the limit");
    let answer: Value = over.json().await.expect("a JSON answer");
    assert_eq!(answer["error"], "too_large");
    let m = r.metrics().await;
    assert_eq!(
        metric(
            &m,
            "sobot_sync_push_refused_total",
            &["status=\"413\"", "reason=\"too_large\"", "push=\"talks\""]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "sobot_sync_push_acknowledged_total", &[]),
        1.0,
        "{m}"
    );
    let out = r.stop().await;
    assert!(
        out.all().contains("SOBOT_SYNC_RECEIVE_MAX_BODY_BYTES"),
        "the log names the setting to raise\n{}",
        out.all()
    );
    assert!(
        !r.env.warehouse().join("_dead_letters").exists(),
        "an oversized body is not kept"
    );
    assert_eq!(
        keys_once(&r.env.warehouse(), PushKind::Talk),
        BTreeSet::from(["call-limit-300".to_string()]),
        "only the body within the limit landed"
    );
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
async fn a_receiver_killed_under_load_loses_no_acknowledged_push() {
    let mut r = Receiver::new().await;
    // No flush before the kill: every acknowledged push is in the WAL only.
    r.env
        .set("SOBOT_SYNC_RECEIVE_FLUSH_ROWS", "1000000")
        .set("SOBOT_SYNC_RECEIVE_FLUSH_SECS", "3600");
    r.start().await;
    let all = records(&PushKind::ALL, 24);
    assert!(all.len() > 2000, "{}", all.len());
    let mut plan = r.plan(all.clone());
    plan.concurrency = 16;
    plan.repeat_every = Some(5);
    let sender = tokio::spawn({
        let plan = plan.clone();
        async move { push::send(&plan).await }
    });
    // Kill once a good part has been acknowledged.
    let client = reqwest::Client::new();
    for _ in 0..400 {
        let m = client
            .get(format!("{}/metrics", r.url()))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        if metric(&m, "sobot_sync_push_acknowledged_total", &[]) > 600.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut child = r.child.take().expect("receiver");
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let first = sender.await.expect("sender");
    let acked_first: usize = first.iter().filter(|s| s.acknowledged()).count();
    assert!(
        acked_first > 0 && acked_first < first.len(),
        "the kill came mid-load: {acked_first} of {} acknowledged",
        first.len()
    );
    assert!(
        !r.env.warehouse().join("push_talks").exists(),
        "nothing was flushed before the kill"
    );
    // Restart, flushing often: the WAL is replayed and flushed while Sobot retries
    // everything (acknowledged or not), so rows arrive again after their flush.
    r.env
        .set("SOBOT_SYNC_RECEIVE_FLUSH_ROWS", "150")
        .set("SOBOT_SYNC_RECEIVE_FLUSH_SECS", "1");
    r.start().await;
    // Sobot retries what was not acknowledged; a few acknowledged ones come again too
    // (a retry whose 200 was lost), which must not add rows.
    let retry: Vec<(PushKind, Value)> = all
        .iter()
        .zip(&first)
        .enumerate()
        .filter(|(i, (_, s))| !s.acknowledged() || i % 10 == 0)
        .map(|(_, (r, _))| r.clone())
        .collect();
    let mut again = plan.clone();
    again.records = retry;
    again.repeat_every = None;
    let second = push::send(&again).await;
    assert!(second.iter().all(Sent::acknowledged));
    let out = r.stop().await;
    assert!(
        out.all().contains("replaying the write-ahead log"),
        "{}",
        out.all()
    );
    let wh = r.env.warehouse();
    for kind in PushKind::ALL {
        let keys = keys_once(&wh, kind);
        let before = acked(&first, kind);
        assert!(
            before.is_subset(&keys),
            "{}: acknowledged before the kill but missing: {:?}",
            kind.table(),
            before.difference(&keys).take(5).collect::<Vec<_>>()
        );
        let all_acked: BTreeSet<String> = before.union(&acked(&second, kind)).cloned().collect();
        assert_eq!(keys, all_acked, "{}", kind.table());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_pushes_answer_503_when_the_wal_cannot_be_written() {
    let mut r = Receiver::new().await;
    r.start().await;
    let talks = records(&[PushKind::Talk], 1);
    let sent = push::send(&r.plan(talks[..1].to_vec())).await;
    assert!(sent[0].acknowledged());
    // Wait for the flush (it closes the segment), then take the WAL folder away.
    let wal = r.env.path().join("wal");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if r.env.warehouse().join("push_talks").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::remove_dir_all(&wal).expect("remove wal");
    std::fs::write(&wal, b"not a folder").expect("block wal");
    let sent = push::send(&r.plan(talks[1..2].to_vec())).await;
    assert_eq!(sent[0].attempts[0].status, Some(503));
    let h = client
        .get(format!("{}/healthz", r.url()))
        .send()
        .await
        .expect("healthz");
    assert_eq!(h.status(), 503);
    // Disk back: pushes are durable again.
    std::fs::remove_file(&wal).expect("unblock");
    std::fs::create_dir(&wal).expect("wal folder");
    let sent = push::send(&r.plan(talks[2..3].to_vec())).await;
    assert!(sent[0].acknowledged());
    let h = client
        .get(format!("{}/healthz", r.url()))
        .send()
        .await
        .expect("healthz");
    assert_eq!(h.status(), 200);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_body_whose_dead_letter_cannot_be_stored_gets_503() {
    let mut r = Receiver::new().await;
    r.start().await;
    // The warehouse is a plain file: nothing can be stored under it.
    let wh = r.env.warehouse();
    let _ = std::fs::remove_dir_all(&wh);
    std::fs::write(&wh, b"not a folder").expect("block the warehouse");
    let ts = Utc::now().timestamp_millis().to_string();
    let sign = sobot_sync::core::push::sign::sign(&company(), &ts, "rc", APP_KEY);
    let res = reqwest::Client::new()
        .post(format!("{}/push/talks", r.url()))
        .header("X-Log-TimeStamp", &ts)
        .header("X-Log-RandomCode", "rc")
        .header("X-Log-Sign", sign)
        .body("not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 503, "Sobot must retry what could not be kept");
    let m = r.metrics().await;
    assert_eq!(
        metric(
            &m,
            "sobot_sync_push_refused_total",
            &["reason=\"dead_letter_failed\""]
        ),
        1.0,
        "{m}"
    );
    std::fs::remove_file(&wh).expect("unblock");
    r.stop().await;
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

/// Every row of `kind`'s table in an S3 warehouse, by key (read with the crate's store).
async fn s3_keys(loc: &sobot_sync::io::store::Location, kind: PushKind) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let files = sobot_sync::io::sink::list_files(loc, kind.table())
        .await
        .expect("table listing");
    for rel in files {
        let bytes = sobot_sync::io::sink::fetch(loc, &rel)
            .await
            .unwrap_or_else(|e| panic!("read {rel}: {e}"));
        let batch = parquet_file::decode(bytes, &rel);
        for i in 0..batch.num_rows() {
            *counts.entry(row_key(kind, &batch, i)).or_default() += 1;
        }
    }
    counts
}

/// The receiver against the in-process S3 warehouse, across two restarts (the second
/// after its local key index was deleted, as with a lost disk, so the keys are read back
/// from S3) and Sobot's retries of pushes already stored: every acknowledged push is a
/// row, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_land_once_in_an_s3_warehouse_across_restarts_and_a_lost_key_index() {
    let wh = crate::support::rig::Warehouse::s3().await;
    let mut r = Receiver::new().await;
    r.env.set("SOBOT_SYNC_WAREHOUSE", &wh.url);
    for (k, v) in wh.env() {
        r.env.set(k, v);
    }
    let kinds = [PushKind::Talk, PushKind::CallEvent];
    let all = records(&kinds, 6);
    let (a, b) = all.split_at(all.len() / 2);
    r.start().await;
    let mut plan = r.plan(a.to_vec());
    plan.repeat_every = Some(3);
    let mut sent = push::send(&plan).await;
    r.stop().await;
    // Restart: new pushes, and retries of some already stored.
    r.start().await;
    let mut again: Vec<_> = b.to_vec();
    again.extend(a.iter().step_by(7).cloned());
    sent.extend(push::send(&r.plan(again)).await);
    r.stop().await;
    let keys = r.env.path().join("wal/keys");
    assert!(keys.join("push_talks").is_dir(), "the key index is on disk");
    std::fs::remove_dir_all(&keys).expect("delete the key index");
    r.start().await;
    let retries: Vec<_> = all.iter().step_by(5).cloned().collect();
    sent.extend(push::send(&r.plan(retries)).await);
    r.stop().await;
    assert!(
        sent.iter().all(Sent::acknowledged),
        "every push acknowledged"
    );
    let s3 = sobot_sync::io::store::S3Options {
        endpoint: wh.env().get("AWS_ENDPOINT_URL").cloned(),
        access_key_id: wh.env().get("AWS_ACCESS_KEY_ID").cloned(),
        secret_access_key: wh
            .env()
            .get("AWS_SECRET_ACCESS_KEY")
            .map(sobot_sync::core::secret::Secret::new),
        region: wh.env().get("AWS_REGION").cloned(),
        allow_http: true,
    };
    let loc = sobot_sync::io::store::Location::parse(&wh.url, &s3).expect("warehouse URL");
    for kind in kinds {
        let counts = s3_keys(&loc, kind).await;
        let dup: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dup.is_empty(), "{}: duplicate keys {dup:?}", kind.table());
        let expected = acked(&sent, kind);
        assert!(!expected.is_empty(), "{kind:?}: the sender sent some");
        let rows: usize = counts.values().sum();
        assert_eq!(
            rows,
            expected.len(),
            "{}: rows = acknowledged",
            kind.table()
        );
        assert_eq!(
            counts.into_keys().collect::<BTreeSet<_>>(),
            expected,
            "{}",
            kind.table()
        );
    }
}
