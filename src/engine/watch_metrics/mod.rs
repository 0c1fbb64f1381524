//! issue 5 (M): `sobot-sync watch-metrics` follows the agent metrics stream (Push Agent
//! Indicator, server-sent events) and writes an `agent_metrics` snapshot of its picture
//! once per `SOBOT_SYNC_METRICS_SNAPSHOT_SECS`.
//!
//! ```text
//!  connect (Authorization, fresh Idempotency-Key) ──> sse::SseParser ──> picture::parse_message
//!        ^                                                                    │
//!        │ backoff (backon), picture discarded              full: new Picture │ changes: apply replaces
//!        └──── dropped / refused / not a stream                               v
//!                                          boundary B passed on the stream's clock: write
//!                                          snapshot B (snapshots::to_batch + snapshots::write)
//! ```
//!
//! **Which clock.** Snapshot times are instants of the stream's own clock, the messages'
//! `creationTime`: the picture after every message stamped at or before a boundary `B`
//! is the state at `B`, and that is known to be complete once a message stamped after
//! `B` arrives. So snapshot `B` is written just before the first message stamped after
//! `B` is applied. When the stream is quiet, the server's clock is estimated as the last
//! `creationTime` plus the real time since that message arrived, and `B` is written once
//! that estimate passes `B` by [`QUIET_GRACE`] (a server that sends only on change must
//! still get its snapshots on time). Clock skew between client and server never matters.
//!
//! **Stale pictures.** A dropped connection discards the picture: a snapshot is only ever
//! written from a picture that has been in sync, on one connection, from a full message
//! up to the snapshot's time. Boundaries that fall between the last message before a
//! drop and the full message after the reconnect are skipped (counted, logged with their
//! times), not written late: nothing on the stream tells what the state was then. A
//! boundary at or after that full message is written as usual.
//!
//! **Writes.** Rows go through the same conversion, privacy step and sink as the polled
//! `agent_metrics` snapshots (same schema, `snapshot_time` = the boundary, file
//! `<table>/dt=<local date>/<B>_<B+interval>.parquet`), so a snapshot written again
//! replaces its file and `(agent_uuid, snapshot_time)` stays unique. SIGTERM/SIGINT stop
//! the loop between writes: the write in progress finishes, then the command exits 0.

pub mod picture;
pub mod sse;

use crate::core::pipeline::Pipeline;
use crate::core::plan::{Grid, Window};
use crate::engine::run::Engine;
use chrono::{DateTime, Utc};
use picture::{Message, Picture};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use sse::{Parsed, SseParser};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Push Agent Indicator in the API document.
pub const WATCH_ENDPOINT: &str = "/callservice/v6/webmsg/monitoring/_watch/agents-metrics";
/// The pipeline whose table, schema and filters the snapshots use.
pub const PIPELINE: &str = "agent_metrics";
/// How long past a boundary (on the estimated server clock) a quiet stream waits before
/// taking its silence as "nothing changed" and writing the snapshot.
pub const QUIET_GRACE: Duration = Duration::from_secs(10);
/// At most this many snapshots are written at once from one picture (a day of minutes);
/// older due boundaries are skipped. A `creationTime` far in the future must not make
/// the client write files without end.
const MAX_CATCH_UP: u64 = 1440;
/// One event larger than this is dropped (the full message of 10,000 agents is ~8 MB).
const MAX_EVENT_BYTES: usize = 64 << 20;
/// Attempts to store one snapshot before the command fails.
const WRITE_ATTEMPTS: u32 = 3;

/// What a watch did, for the summary line and the tests.
#[derive(Debug, Default, Clone)]
pub struct WatchReport {
    /// Snapshot times written, in order.
    pub written: Vec<DateTime<Utc>>,
    /// Snapshot times skipped because the picture was stale (disconnected) at them.
    pub skipped: Vec<DateTime<Utc>>,
    /// Connections opened that answered with an event stream.
    pub connections: u64,
    pub full_messages: u64,
    pub change_messages: u64,
    /// Events that could not be read (not JSON, unknown MessageID, wrong shape, too big).
    pub bad_messages: u64,
    /// Operations left out: not a `replace`, an unknown path, an agent not in the picture.
    pub unknown_ops: u64,
    /// Incremental messages that arrived before a full message and were ignored.
    pub unsynced_messages: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watch-metrics: {0}")]
    Config(String),
    #[error("watch-metrics: the API refused the stream: {0}")]
    Refused(String),
    #[error("watch-metrics: cannot store the snapshot at {at}: {message}")]
    Write { at: String, message: String },
}

/// How one connection ended.
enum Ended {
    Stopped,
    /// Dropped, closed, refused for a while, or not an event stream: reconnect.
    Lost(String),
    /// The API refused this token (HTTP 401): get a new one, then reconnect.
    Unauthorized(u64),
}

/// The watcher's state across connections.
struct Watcher<'e> {
    engine: &'e Engine,
    /// `agent_metrics` with `window_secs` = the snapshot interval.
    pipeline: Pipeline,
    grid: Grid,
    interval: chrono::Duration,
    run_id: String,
    http: reqwest::Client,
    /// The next boundary to write; `None` until the first full message.
    next_due: Option<DateTime<Utc>>,
    report: WatchReport,
}

/// One connection's picture and when its newest message arrived.
struct Live {
    picture: Option<Picture>,
    last_rx: Instant,
}

/// Follows the stream until `stop` is cancelled; returns what was done. Fails only on a
/// refusal that retrying cannot cure (credentials, a 4xx) or a snapshot that cannot be
/// stored.
pub async fn watch(engine: &Engine, stop: CancellationToken) -> Result<WatchReport, WatchError> {
    let mut w = Watcher::new(engine)?;
    let settings = &engine.settings;
    let backoff = || {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(settings.min_backoff)
            .with_max_delay(settings.max_backoff.max(settings.min_backoff))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = backoff();
    let mut refused: Option<u64> = None;
    // The last connection was refused right after a new token was obtained.
    let mut just_refreshed = false;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let synced_before = w.report.full_messages;
        match w.connect_and_follow(&stop, refused.take()).await? {
            Ended::Stopped => break,
            Ended::Unauthorized(_) if just_refreshed => {
                return Err(WatchError::Refused(
                    "HTTP 401 for a freshly obtained access token: the app may lack permission for the agent metrics stream".into(),
                ));
            }
            Ended::Unauthorized(generation) => {
                refused = Some(generation);
                just_refreshed = true;
                tracing::info!("the stream refused the access token; obtaining a new one");
                continue; // at once: a refused token is no reason to back off
            }
            Ended::Lost(why) => {
                tracing::warn!(reason = %why, "agent metrics stream lost; reconnecting")
            }
        }
        just_refreshed = false;
        if w.report.full_messages > synced_before {
            // This connection was in sync: the next failure starts backing off afresh.
            delays = backoff();
        }
        let delay = delays.next().unwrap_or(settings.max_backoff);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    Ok(w.report)
}

impl<'e> Watcher<'e> {
    fn new(engine: &'e Engine) -> Result<Self, WatchError> {
        let mut pipeline = engine.catalog.get(PIPELINE).cloned().ok_or_else(|| {
            WatchError::Config(format!(
                "no pipeline named {PIPELINE} in SOBOT_SYNC_PIPELINES: its table and schema are where the snapshots go"
            ))
        })?;
        let secs = engine.settings.metrics_snapshot_secs;
        pipeline.window_secs = secs;
        let interval = chrono::Duration::seconds(i64::try_from(secs).map_err(|_| {
            WatchError::Config("SOBOT_SYNC_METRICS_SNAPSHOT_SECS is too large".into())
        })?);
        let http = reqwest::Client::builder()
            .connect_timeout(engine.settings.request_timeout)
            // A stream silent for this long is dead (the API sends a message per change,
            // the simulator one per tick): reconnect rather than wait forever.
            .read_timeout(engine.settings.request_timeout.max(Duration::from_secs(60)))
            .build()
            .map_err(|e| WatchError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            grid: Grid::new(engine.settings.timezone, secs),
            engine,
            pipeline,
            interval,
            run_id: Engine::new_run_id(),
            http,
            next_due: None,
            report: WatchReport::default(),
        })
    }

    /// One connection: connect, then read events until it ends.
    async fn connect_and_follow(
        &mut self,
        stop: &CancellationToken,
        refused: Option<u64>,
    ) -> Result<Ended, WatchError> {
        // A stop while connecting (a slow token or a server that holds the headers back)
        // must not wait for the connect timeout.
        let connected = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(Ended::Stopped),
            c = self.connect(refused) => c?,
        };
        let (mut response, generation) = match connected {
            Ok(r) => r,
            Err(ended) => return Ok(ended),
        };
        if response.status() == StatusCode::UNAUTHORIZED {
            return Ok(Ended::Unauthorized(generation));
        }
        let status = response.status();
        if !status.is_success() {
            let transient = status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT;
            if transient {
                return Ok(Ended::Lost(format!("HTTP {status}")));
            }
            return Err(WatchError::Refused(format!(
                "HTTP {status}{}",
                envelope_message(response).await
            )));
        }
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().starts_with("text/event-stream"));
        if !is_stream {
            // An envelope error with HTTP 200 (the API's way of failing): retry later.
            return Ok(Ended::Lost(format!(
                "the API answered without an event stream{}",
                envelope_message(response).await
            )));
        }
        self.report.connections += 1;
        let mut parser = SseParser::new(MAX_EVENT_BYTES);
        let mut live = Live {
            picture: None,
            last_rx: Instant::now(),
        };
        loop {
            let quiet_at = self.quiet_deadline(&live);
            let chunk = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(Ended::Stopped),
                chunk = response.chunk() => chunk,
                _ = sleep_until(quiet_at) => {
                    self.on_quiet(&live).await?;
                    continue;
                }
            };
            match chunk {
                Ok(Some(bytes)) => {
                    for parsed in parser.feed(&bytes) {
                        self.on_event(parsed, &mut live).await?;
                    }
                }
                Ok(None) => return Ok(Ended::Lost("the server closed the stream".into())),
                Err(e) => return Ok(Ended::Lost(format!("reading the stream: {e}"))),
            }
        }
    }

    /// Sends the request; `Err(Ended)` for a failure worth retrying.
    async fn connect(
        &self,
        refused: Option<u64>,
    ) -> Result<Result<(reqwest::Response, u64), Ended>, WatchError> {
        let (token, generation) = match self.engine.client.stream_token(refused).await {
            Ok(t) => t,
            Err(e @ crate::io::api::ApiError::Auth { .. }) => {
                return Err(WatchError::Refused(e.to_string()));
            }
            Err(e) => return Ok(Err(Ended::Lost(format!("obtaining a token: {e}")))),
        };
        let mut auth = HeaderValue::from_str(token.expose().trim()).map_err(|_| {
            WatchError::Refused(
                "the access token contains characters not allowed in an HTTP header".into(),
            )
        })?;
        auth.set_sensitive(true);
        let settings = &self.engine.settings;
        let joined = format!(
            "{}/{}",
            settings.base_url.trim_end_matches('/'),
            WATCH_ENDPOINT.trim_start_matches('/')
        );
        let mut url = url::Url::parse(&joined).map_err(|e| {
            WatchError::Config(format!("SOBOT_BASE_URL: cannot form the stream URL: {e}"))
        })?;
        let mut query = crate::engine::snapshots::snapshot::filter_query(&self.pipeline);
        crate::engine::snapshots::snapshot::push_operator(
            self.engine.settings.operator_user_id.as_ref(),
            &mut query,
        );
        query.push(("product".into(), "scc".into()));
        query.push(("pageNum".into(), "1".into()));
        query.push((
            "pageSize".into(),
            self.pipeline.page_size.max(1).to_string(),
        ));
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let sent = self
            .http
            .get(url)
            .header(AUTHORIZATION, auth)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .header("timezoneid", settings.timezone.name())
            .header(ACCEPT, "text/event-stream")
            .send()
            .await;
        Ok(match sent {
            Ok(r) => Ok((r, generation)),
            Err(e) => Err(Ended::Lost(format!("connecting: {e}"))),
        })
    }

    /// When a quiet stream's estimated server clock passes the next boundary by the grace.
    fn quiet_deadline(&self, live: &Live) -> Option<Instant> {
        let p = live.picture.as_ref()?;
        let due = self.next_due?;
        let ahead_ms = (due.timestamp_millis() - p.as_of).max(0);
        let ahead = Duration::from_millis(u64::try_from(ahead_ms).unwrap_or(u64::MAX / 2));
        Some(live.last_rx + ahead.saturating_add(QUIET_GRACE))
    }

    async fn on_quiet(&mut self, live: &Live) -> Result<(), WatchError> {
        let Some(p) = live.picture.as_ref() else {
            return Ok(());
        };
        let elapsed = Instant::now().saturating_duration_since(live.last_rx);
        let elapsed = elapsed.saturating_sub(QUIET_GRACE);
        let est = p.as_of + i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX / 2) + 1;
        tracing::debug!("stream quiet; writing the snapshots its silence confirms");
        self.flush_before(est, p).await
    }

    async fn on_event(&mut self, parsed: Parsed, live: &mut Live) -> Result<(), WatchError> {
        let data = match parsed {
            Parsed::Event(e) => e.data,
            Parsed::Oversized { bytes } => {
                self.report.bad_messages += 1;
                tracing::warn!(bytes, "an event larger than the limit was dropped");
                return Ok(());
            }
        };
        if data.trim().is_empty() {
            return Ok(()); // a keep-alive with an empty data line
        }
        match picture::parse_message(&data) {
            Err(why) => {
                self.report.bad_messages += 1;
                tracing::warn!(problem = %why, "an agent metrics message could not be read; ignored");
            }
            Ok(Message::Full(fresh)) => {
                self.report.full_messages += 1;
                let t = fresh.as_of;
                match &live.picture {
                    // A full message mid-stream: the old picture held until now.
                    Some(old) => self.flush_before(t, old).await?,
                    None => self.resync_at(t),
                }
                if fresh.bad_entries > 0 {
                    tracing::warn!(
                        entries = fresh.bad_entries,
                        "agents without an agentUUID in the full message were left out"
                    );
                }
                if fresh.total.is_some_and(|t| t > fresh.len() as u64) {
                    tracing::warn!(
                        total = fresh.total,
                        listed = fresh.len(),
                        "the stream lists fewer agents than its total: raise page_size of pipeline {PIPELINE}"
                    );
                }
                tracing::info!(agents = fresh.len(), at = %ms_time(t), "agent metrics picture in sync");
                live.picture = Some(fresh);
                live.last_rx = Instant::now();
            }
            Ok(Message::Changes { at, ops }) => {
                let Some(p) = live.picture.as_ref() else {
                    self.report.unsynced_messages += 1;
                    return Ok(());
                };
                self.report.change_messages += 1;
                if let Some(t) = at {
                    self.flush_before(t, p).await?;
                }
                let Some(p) = live.picture.as_mut() else {
                    return Ok(());
                };
                let applied = p.apply(&ops);
                if let Some(t) = at {
                    p.as_of = p.as_of.max(t);
                }
                if applied.unknown > 0 {
                    self.report.unknown_ops += applied.unknown;
                    tracing::warn!(
                        unknown = applied.unknown,
                        applied = applied.applied,
                        first = applied.first_problem.as_deref().unwrap_or(""),
                        "operations of an agent metrics message were left out"
                    );
                }
                live.last_rx = Instant::now();
            }
        }
        Ok(())
    }

    /// A fresh picture at `t` after none: boundaries since the last one written are
    /// skipped (the picture was stale at them); the next is the first at or after `t`.
    fn resync_at(&mut self, t: i64) {
        let at = ms_time(t);
        let first = self.grid.ceil(at);
        if let Some(from) = self.next_due.filter(|due| *due < first) {
            let mut due = from;
            let mut n = 0u64;
            while due < first {
                self.report.skipped.push(due);
                due += self.interval;
                n += 1;
            }
            tracing::warn!(
                skipped = n,
                from = %from.to_rfc3339(),
                to = %(due - self.interval).to_rfc3339(),
                "snapshots skipped: the stream was disconnected at those times"
            );
        }
        // A server whose clock went back (another node) must not make the client write
        // snapshots it already wrote a second time.
        self.next_due = Some(self.next_due.map_or(first, |due| due.max(first)));
    }

    /// Writes every due snapshot strictly before `t` (epoch ms) from `picture`.
    async fn flush_before(&mut self, t: i64, picture: &Picture) -> Result<(), WatchError> {
        let Some(mut due) = self.next_due else {
            return Ok(());
        };
        let before = ms_time(t);
        let due_count = if due < before {
            ((before - due).num_milliseconds() - 1) / self.interval.num_milliseconds().max(1) + 1
        } else {
            0
        };
        let excess = u64::try_from(due_count)
            .unwrap_or(0)
            .saturating_sub(MAX_CATCH_UP);
        for _ in 0..excess {
            self.report.skipped.push(due);
            due += self.interval;
        }
        if excess > 0 {
            tracing::warn!(
                skipped = excess,
                "the stream's clock jumped ahead; only the last {MAX_CATCH_UP} due snapshots are written"
            );
        }
        while due < before {
            self.write_snapshot(due, picture).await?;
            self.report.written.push(due);
            due += self.interval;
            self.next_due = Some(due);
        }
        self.next_due = Some(due);
        Ok(())
    }

    async fn write_snapshot(&self, at: DateTime<Utc>, picture: &Picture) -> Result<(), WatchError> {
        let w = Window {
            start: at,
            end: at + self.interval,
        };
        let stamp = Value::from(at.timestamp_millis());
        let mut records = picture.records();
        for r in &mut records {
            r.insert(
                crate::engine::snapshots::snapshot::SNAPSHOT_FIELD.into(),
                stamp.clone(),
            );
        }
        let fail = |message: String| WatchError::Write {
            at: at.to_rfc3339(),
            message,
        };
        let batch = crate::engine::snapshots::to_batch(
            self.engine,
            &self.pipeline,
            &records,
            &w,
            &self.run_id,
        )
        .map_err(|e| fail(e.to_string()))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match crate::engine::snapshots::write(self.engine, &self.pipeline, &w, &batch).await {
                Ok((file, _)) => {
                    tracing::info!(snapshot = %at.to_rfc3339(), agents = records.len(), file = %file.relative_path(), "agent metrics snapshot written");
                    return Ok(());
                }
                Err(e) if attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(snapshot = %at.to_rfc3339(), attempt, error = %e, "storing the snapshot failed; trying again");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                }
                Err(e) => return Err(fail(e.to_string())),
            }
        }
    }
}

/// `deadline` or never.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn ms_time(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// `: code N, message` from an envelope body, or nothing (the body may be anything; only
/// the code and the server's message are shown, never the body itself).
async fn envelope_message(response: reqwest::Response) -> String {
    let Ok(bytes) = response.bytes().await else {
        return String::new();
    };
    let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(&bytes) else {
        return String::new();
    };
    let code = o.get("code").map(ToString::to_string).unwrap_or_default();
    let message = o
        .get("message")
        .or_else(|| o.get("reason"))
        .and_then(Value::as_str)
        .unwrap_or("");
    format!(": code {code}, {message}")
}
