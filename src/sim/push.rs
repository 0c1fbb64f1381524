//! The push sender: `sobot-sync sim [sim options] push --target URL ...` sends the four
//! pushes of the API document's Push Management to a receiver, signed as Sobot signs
//! them, from the same seeded data the simulator serves (so tests compare the tables
//! with the truth), with faults on request:
//! - `--repeat-every N`: every Nth push is sent a second time with fresh headers (a
//!   Sobot retry: both acknowledged, one row expected);
//! - `--encrypt-every N`: every Nth body goes as `{"content": ...}` (`--cipher`,
//!   `--aes-key`);
//! - `--bad-sign-every N`, `--stale-every N`: every Nth push is signed with a wrong key,
//!   or stamped an hour ago (expected 401, no row unless a later attempt succeeds);
//! - `--replay-every N`: every Nth push, once acknowledged, is sent again with the very
//!   same headers (expected 401 replay).
//!
//! Records: talks and agent statuses of `[--from, --to)`, the parties of those talks,
//! and call events derived from the talks (ringing, established when answered,
//! released; every third call's events carry no `eventId`, so their key is the body's
//! hash). It prints a JSON summary; `--report FILE` also writes every push and attempt.

use super::config::SimConfig;
use super::dataset::Dataset;
use crate::core::push::PushKind;
use crate::core::push::cipher::{self, AesKey, CipherMode};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{Value, json};
use std::path::PathBuf;

/// Options of `sim push`.
#[derive(clap::Args, Debug, Clone)]
pub struct PushArgs {
    /// Base URL of the receiver (`http://127.0.0.1:8780`); pushes go to `<URL>/push/...`.
    #[arg(long)]
    pub target: String,
    /// The app key to sign with.
    #[arg(long, env = "SOBOT_PUSH_APP_KEY", hide_env_values = true)]
    pub app_key: String,
    /// Start of the data range (RFC 3339 or a date).
    #[arg(long)]
    pub from: String,
    /// End of the data range, exclusive.
    #[arg(long)]
    pub to: String,
    /// Push types to send (talks, parties, agent-status, call-events); default all.
    #[arg(long, value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// Send every Nth push a second time with fresh headers, as a Sobot retry.
    #[arg(long, value_name = "N")]
    pub repeat_every: Option<u64>,
    /// Send every Nth body encrypted, as `{"content": ...}` (see --cipher, --aes-key).
    #[arg(long, value_name = "N")]
    pub encrypt_every: Option<u64>,
    /// Cipher of encrypted bodies: aes-ecb, aes-cbc or aes-gcm.
    #[arg(long, default_value = "aes-ecb")]
    pub cipher: String,
    /// Key for encrypted bodies (same forms as SOBOT_PUSH_AES_KEY).
    #[arg(long, env = "SOBOT_PUSH_AES_KEY", hide_env_values = true)]
    pub aes_key: Option<String>,
    /// First send every Nth push signed with a wrong key (expected 401).
    #[arg(long, value_name = "N")]
    pub bad_sign_every: Option<u64>,
    /// First send every Nth push stamped an hour ago (expected 401).
    #[arg(long, value_name = "N")]
    pub stale_every: Option<u64>,
    /// Once acknowledged, send every Nth push again with the very same headers (expected 401 replay).
    #[arg(long, value_name = "N")]
    pub replay_every: Option<u64>,
    /// Pushes in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Send at most this many records.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Write every push and its attempts as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// What to send and how.
#[derive(Debug, Clone)]
pub struct PushPlan {
    pub target: String,
    pub company_id: String,
    pub app_key: String,
    pub records: Vec<(PushKind, Value)>,
    pub repeat_every: Option<u64>,
    pub encrypt: Option<(u64, CipherMode, AesKey)>,
    pub bad_sign_every: Option<u64>,
    pub stale_every: Option<u64>,
    pub replay_every: Option<u64>,
    pub concurrency: usize,
}

/// One record sent, and every attempt made with it.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    pub push: &'static str,
    /// The table key, as `receive::body` computes it (parts joined by U+001F).
    pub key: String,
    pub encrypted: bool,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// ok, repeat, bad_sign, stale, replay.
    pub kind: &'static str,
    /// HTTP status; `None`: no answer (connection refused, reset, timeout).
    pub status: Option<u16>,
}

impl Sent {
    /// Whether the receiver acknowledged (200) any attempt: then its row must exist.
    pub fn acknowledged(&self) -> bool {
        self.attempts.iter().any(|a| a.status == Some(200))
    }
}

/// The pushes of `[from, to)` from the simulator's data set, in time order per type.
pub fn records(
    config: &SimConfig,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    kinds: &[PushKind],
) -> Vec<(PushKind, Value)> {
    let data = Dataset::new(config, "http://sim/recordings/".to_string());
    let talks = data.talks(from, to);
    let mut out = Vec::new();
    for kind in kinds {
        match kind {
            PushKind::Talk => out.extend(talks.iter().map(|t| (PushKind::Talk, t.clone()))),
            PushKind::Party => {
                for t in &talks {
                    let id = t.get("callID").and_then(Value::as_str).unwrap_or_default();
                    out.extend(data.parties(id).into_iter().map(|p| (PushKind::Party, p)));
                }
            }
            PushKind::AgentStatus => out.extend(
                data.agent_histories(from, to)
                    .iter()
                    .map(|h| (PushKind::AgentStatus, agent_status(h))),
            ),
            PushKind::CallEvent => {
                for (n, t) in talks.iter().enumerate() {
                    out.extend(
                        call_events(t, n % 3 != 2)
                            .into_iter()
                            .map(|e| (PushKind::CallEvent, e)),
                    );
                }
            }
        }
    }
    out
}

/// An agent-history record as the Agent Status Callback pushes it.
fn agent_status(h: &Value) -> Value {
    let f = |k: &str| h.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "companyId": f("companyId"),
        "messageID": "AgentHistoryLogES",
        "msgType": "agent_working_status_changed_successfully",
        "creationTime": f("startTimeMs"),
        "agentUUID": f("agentUUID"),
        "agentID": f("agentID"),
        "agentName": f("agentName"),
        "loginStatus": f("loginStatus"),
        "notReadyStatus": f("noReadyStatus"),
        "workStatus": f("workStatus"),
        "startTime": f("startTimeMs"),
    })
}

/// The call events of one talk.
fn call_events(t: &Value, with_id: bool) -> Vec<Value> {
    let f = |k: &str| t.get(k).cloned().unwrap_or(Value::Null);
    let id = f("callID");
    let id_text = id.as_str().unwrap_or_default().trim().to_string();
    let answered = t.get("answerTime").and_then(Value::as_i64).unwrap_or(0) > 0;
    let mut names = vec![("EventRinging", f("startTime"))];
    if answered {
        names.push(("EventEstablished", f("answerTime")));
    }
    names.push(("EventReleased", f("endTime")));
    names
        .into_iter()
        .map(|(name, at)| {
            let mut e = json!({
                "messageID": name,
                "companyId": f("companyId"),
                "creationTime": at,
                "callID": id,
                "callType": f("callType"),
                "agentUUID": f("lastAgentUUID"),
                "customerNumber": f("customerNumber"),
            });
            if with_id && let Some(o) = e.as_object_mut() {
                o.insert("eventId".into(), Value::String(format!("{id_text}-{name}")));
            }
            e
        })
        .collect()
}

fn every(n: Option<u64>, i: u64) -> bool {
    matches!(n, Some(n) if n > 0 && i % n == n - 1)
}

/// Sends the plan's records; never fails as a whole: every attempt's outcome is reported.
pub async fn send(plan: &PushPlan) -> Vec<Sent> {
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(_) => reqwest::Client::new(),
    };
    let base = plan.target.trim_end_matches('/').to_string();
    // Indexes, not references, as the stream's items, and boxed futures: with
    // borrowed items rustc cannot prove the future `Send` for callers that spawn it.
    futures::stream::iter(0..plan.records.len())
        .map(|i| -> BoxFuture<'_, Sent> {
            let (kind, record) = &plan.records[i];
            Box::pin(send_one(&client, &base, plan, i as u64, *kind, record))
        })
        .buffered(plan.concurrency.max(1))
        .collect()
        .await
}

async fn send_one(
    client: &reqwest::Client,
    base: &str,
    plan: &PushPlan,
    i: u64,
    kind: PushKind,
    record: &Value,
) -> Sent {
    let plain = record.to_string();
    let key = crate::core::push::body::decode(kind, plain.as_bytes(), None)
        .map(|d| d.key)
        .unwrap_or_default();
    let (body, encrypted) = match &plan.encrypt {
        Some((n, mode, k)) if every(Some(*n), i) => {
            let iv: [u8; 16] = rand::random();
            let content = cipher::encrypt(*mode, k, plain.as_bytes(), &iv);
            (json!({ "content": content }).to_string(), true)
        }
        _ => (plain, false),
    };
    let url = format!("{base}/push/{}", kind.path());
    let mut attempts = Vec::new();
    let fresh = |key: &str, age_ms: i64| {
        let ts = (Utc::now().timestamp_millis() - age_ms).to_string();
        let code = uuid::Uuid::new_v4().simple().to_string();
        let sign = crate::core::push::sign::sign(&plan.company_id, &ts, &code, key);
        Headers { ts, code, sign }
    };
    if every(plan.bad_sign_every, i) {
        let h = fresh("not-the-app-key", 0);
        attempts.push(attempt(client, &url, &body, "bad_sign", h).await);
    }
    if every(plan.stale_every, i) {
        let h = fresh(&plan.app_key, 3_600_000);
        attempts.push(attempt(client, &url, &body, "stale", h).await);
    }
    let good = fresh(&plan.app_key, 0);
    attempts.push(attempt(client, &url, &body, "ok", good.clone()).await);
    if every(plan.replay_every, i) {
        attempts.push(attempt(client, &url, &body, "replay", good).await);
    }
    if every(plan.repeat_every, i) {
        let h = fresh(&plan.app_key, 0);
        attempts.push(attempt(client, &url, &body, "repeat", h).await);
    }
    Sent {
        push: kind.path(),
        key,
        encrypted,
        attempts,
    }
}

/// One POST of a body with these headers.
async fn attempt(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    fault: &'static str,
    headers: Headers,
) -> Attempt {
    let status = client
        .post(url)
        .header("content-type", "application/json;charset=utf-8")
        .header("X-Log-TimeStamp", headers.ts)
        .header("X-Log-RandomCode", headers.code)
        .header("X-Log-Sign", headers.sign)
        .body(body.to_string())
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16());
    Attempt {
        kind: fault,
        status,
    }
}

#[derive(Clone)]
struct Headers {
    ts: String,
    code: String,
    sign: String,
}

/// `sim ... push`: builds the plan from the options and the simulator's config.
pub async fn run(config: &SimConfig, args: &PushArgs) -> Result<(), String> {
    let tz = config.timezone;
    let from =
        crate::core::timeutil::parse_time(&args.from, tz).map_err(|e| format!("--from: {e}"))?;
    let to = crate::core::timeutil::parse_time(&args.to, tz).map_err(|e| format!("--to: {e}"))?;
    let kinds: Vec<PushKind> = if args.kinds.is_empty() {
        PushKind::ALL.to_vec()
    } else {
        args.kinds
            .iter()
            .map(|k| {
                PushKind::ALL
                    .into_iter()
                    .find(|p| p.path() == k.trim())
                    .ok_or_else(|| {
                        format!("--kinds: {k:?} is not talks, parties, agent-status or call-events")
                    })
            })
            .collect::<Result<_, _>>()?
    };
    let encrypt = match args.encrypt_every {
        None => None,
        Some(n) => {
            let mode: CipherMode = args.cipher.parse().map_err(|e| format!("--cipher {e}"))?;
            let key = args
                .aes_key
                .as_deref()
                .ok_or("--encrypt-every needs --aes-key (or SOBOT_PUSH_AES_KEY)")?;
            Some((
                n,
                mode,
                AesKey::parse(key).map_err(|e| format!("--aes-key: {e}"))?,
            ))
        }
    };
    let mut records = records(config, from, to, &kinds);
    if let Some(limit) = args.limit {
        records.truncate(limit);
    }
    let plan = PushPlan {
        target: args.target.clone(),
        company_id: config.company_id.clone(),
        app_key: args.app_key.clone(),
        records,
        repeat_every: args.repeat_every,
        encrypt,
        bad_sign_every: args.bad_sign_every,
        stale_every: args.stale_every,
        replay_every: args.replay_every,
        concurrency: args.concurrency,
    };
    let sent = send(&plan).await;
    let mut statuses = std::collections::BTreeMap::<String, u64>::new();
    for a in sent.iter().flat_map(|s| &s.attempts) {
        let status = a.status.map_or("none".to_string(), |s| s.to_string());
        *statuses.entry(format!("{}:{status}", a.kind)).or_default() += 1;
    }
    let summary = json!({
        "records": sent.len(),
        "acknowledged": sent.iter().filter(|s| s.acknowledged()).count(),
        "attempts": statuses,
    });
    println!("{summary}");
    if let Some(path) = &args.report {
        let text = serde_json::to_string(&sent).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("--report {}: {e}", path.display()))?;
    }
    Ok(())
}
