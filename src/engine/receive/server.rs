//! The HTTP side: `POST /push/{talks,parties,agent-status,call-events}`, `GET /healthz`,
//! `GET /metrics`.
//!
//! Order of checks for a push, each refusal counted in `/metrics` by push and reason:
//! 1. the `X-Log-*` headers are present and the timestamp is within the skew (401);
//!    then the body is received, up to `SOBOT_SYNC_RECEIVE_MAX_BODY_BYTES` (413);
//! 2. the signature is one of a configured company's (401): the company ids are few, so
//!    each is tried, and a request nobody signed never reaches the body or the object
//!    store (an anonymous sender cannot fill the dead-letter area);
//! 3. the body is decoded: plain JSON or decrypted `{"content"}` (400, dead letter; 503 if
//!    the dead letter cannot be stored);
//! 4. its `companyId` is the company that signed (401), and its random code was not used
//!    within the skew (401);
//! 5. it is appended to the WAL and synced: 200, or 503 when that fails.
//!
//! Steps 1 and 3 need no secret in a log line; a refusal is logged with the push, the
//! reason and the company (never the signature, the key or the body).

use super::deadletter;
use super::wal::Wal;
use crate::core::push::PushKind;
use crate::core::push::body::{self, BodyError};
use crate::core::push::cipher::{AesKey, CipherMode};
use crate::core::push::sign::{self, Refusal, ReplayGuard};
use crate::core::secret::Secret;
use crate::io::store::Location;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use chrono_tz::Tz;
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub const RECEIVED: &str = "sobot_sync_push_received_total";
pub const REFUSED: &str = "sobot_sync_push_refused_total";
pub const ACKNOWLEDGED: &str = "sobot_sync_push_acknowledged_total";
pub const DEAD_LETTERS: &str = "sobot_sync_push_dead_letters_total";
pub const ROWS_FLUSHED: &str = "sobot_sync_push_rows_flushed_total";

/// Everything a request needs.
pub struct App {
    pub app_key: Secret,
    pub companies: HashSet<String>,
    pub max_skew_ms: i64,
    pub cipher: Option<(CipherMode, AesKey)>,
    pub replay: ReplayGuard,
    pub wal: Wal,
    pub warehouse: Location,
    pub tz: Tz,
    pub metrics: PrometheusHandle,
    /// The last flush failed: pushes are durable in the WAL, but not reaching Parquet.
    pub flush_failing: AtomicBool,
    /// Shutting down: new pushes get 503 (Sobot retries them elsewhere or later).
    pub stopping: AtomicBool,
    /// `SOBOT_SYNC_RECEIVE_MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
}

pub fn router(app: Arc<App>) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text));
    for kind in PushKind::ALL {
        r = r.route(
            &format!("/push/{}", kind.path()),
            post(move |s: State<Arc<App>>, h: HeaderMap, b: Body| push(s, kind, h, b)),
        );
    }
    r.with_state(app)
}

pub fn describe() {
    use metrics::describe_counter;
    describe_counter!(RECEIVED, "Pushes received, by push type");
    describe_counter!(
        REFUSED,
        "Pushes refused, by push type, HTTP status and reason (bad_signature, stale_timestamp, replay, unknown_company, missing_headers, unparseable, undecryptable, incomplete, not_durable, too_large, body_not_received)"
    );
    describe_counter!(
        ACKNOWLEDGED,
        "Pushes acknowledged (durable in the write-ahead log)"
    );
    describe_counter!(
        DEAD_LETTERS,
        "Unreadable push bodies stored as dead letters"
    );
    describe_counter!(ROWS_FLUSHED, "Push rows written to Parquet, by table");
}

fn refuse(kind: PushKind, status: StatusCode, reason: &'static str) -> Response {
    metrics::counter!(REFUSED, "push" => kind.path(), "status" => status.as_str().to_string(), "reason" => reason)
        .increment(1);
    (status, axum::Json(serde_json::json!({ "error": reason }))).into_response()
}

/// A 401 for `why`, counted and logged (with the company once it is known; never the
/// signature, the key or the body).
fn unauthorized(kind: PushKind, why: Refusal, company: Option<&str>) -> Response {
    tracing::warn!(
        push = kind.path(),
        company = company.unwrap_or("-"),
        reason = why.label(),
        "push refused"
    );
    refuse(kind, StatusCode::UNAUTHORIZED, why.label())
}

enum BodyRead {
    TooLarge,
    /// The connection failed or ended before the body did.
    Cut(String),
}

/// Reads a request body of at most `limit` bytes. Read here rather than by axum's
/// extractor so that an oversized body is counted and logged like every other refusal.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyRead> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyRead::TooLarge),
        Err(e) => Err(BodyRead::Cut(e.to_string())),
    }
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

async fn push(
    State(app): State<Arc<App>>,
    kind: PushKind,
    headers: HeaderMap,
    body: Body,
) -> Response {
    metrics::counter!(RECEIVED, "push" => kind.path()).increment(1);
    if app.stopping.load(Ordering::Relaxed) {
        return refuse(kind, StatusCode::SERVICE_UNAVAILABLE, "stopping");
    }
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let (Some(ts), Some(code), Some(given)) = (
        header(&headers, "x-log-timestamp"),
        header(&headers, "x-log-randomcode"),
        header(&headers, "x-log-sign"),
    ) else {
        return unauthorized(kind, Refusal::MissingHeaders, None);
    };
    let Ok(ts_ms) = sign::check_timestamp(ts, now_ms, app.max_skew_ms) else {
        return unauthorized(kind, Refusal::StaleTimestamp, None);
    };
    let raw = match read_body(body, app.max_body_bytes).await {
        Ok(raw) => raw,
        Err(BodyRead::TooLarge) => {
            tracing::warn!(
                push = kind.path(),
                limit = app.max_body_bytes,
                "push refused: body larger than SOBOT_SYNC_RECEIVE_MAX_BODY_BYTES, not kept"
            );
            return refuse(kind, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
        }
        Err(BodyRead::Cut(e)) => {
            tracing::warn!(push = kind.path(), error = %e, "push refused: its body could not be received");
            return refuse(kind, StatusCode::BAD_REQUEST, "body_not_received");
        }
    };
    let cipher = app.cipher.as_ref().map(|(m, k)| (*m, k));
    let key = app.app_key.expose();
    let signer = app
        .companies
        .iter()
        .find(|c| sign::verify(c, ts, code, key, given));
    let Some(signer) = signer else {
        // Unsigned: refused without storing anything. The body is only looked at to tell
        // an unknown company from a bad signature in the count.
        let reason = match body::decode(kind, &raw, cipher) {
            Ok(d) if !app.companies.contains(d.company_id.as_str()) => Refusal::UnknownCompany,
            _ => Refusal::BadSignature,
        };
        return unauthorized(kind, reason, None);
    };
    let decoded = match body::decode(kind, &raw, cipher) {
        Ok(d) => d,
        Err(e) => return dead_letter(&app, kind, raw, &headers, &e).await,
    };
    let company = decoded.company_id.as_str();
    let refusal = if company != signer.as_str() {
        // Signed by one company for another's record.
        Some(Refusal::BadSignature)
    } else if !app.replay.first_use(company, code, ts_ms, now_ms) {
        Some(Refusal::Replay)
    } else {
        None
    };
    if let Some(r) = refusal {
        return unauthorized(kind, r, Some(company));
    }
    match app.wal.append(kind, now_ms, decoded.json).await {
        Ok(()) => {
            metrics::counter!(ACKNOWLEDGED, "push" => kind.path()).increment(1);
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "ok": true })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(push = kind.path(), error = %e, "push not acknowledged: cannot make it durable");
            refuse(kind, StatusCode::SERVICE_UNAVAILABLE, "not_durable")
        }
    }
}

async fn dead_letter(
    app: &App,
    kind: PushKind,
    raw: Bytes,
    headers: &HeaderMap,
    why: &BodyError,
) -> Response {
    let reason = why.to_string();
    match deadletter::store(
        &app.warehouse,
        kind,
        raw,
        headers,
        &reason,
        Utc::now(),
        app.tz,
    )
    .await
    {
        Ok(path) => {
            metrics::counter!(DEAD_LETTERS, "push" => kind.path()).increment(1);
            tracing::warn!(push = kind.path(), reason = %reason, dead_letter = %path, "unreadable push kept as a dead letter");
            refuse(kind, StatusCode::BAD_REQUEST, why.label())
        }
        Err(e) => {
            tracing::error!(push = kind.path(), error = %e, "unreadable push not kept: answering 503 so Sobot retries");
            refuse(kind, StatusCode::SERVICE_UNAVAILABLE, "dead_letter_failed")
        }
    }
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let wal_ok = app.wal.healthy();
    let stopping = app.stopping.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "wal": if wal_ok { "ok" } else { "failing" },
        "flush": if app.flush_failing.load(Ordering::Relaxed) { "failing" } else { "ok" },
        "pending": app.wal.status().pending.load(Ordering::Relaxed),
        "stopping": stopping,
    });
    let code = if wal_ok && !stopping {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    crate::io::obs::process::record();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
