//! API client against scripted local servers. OWNER: API-client helper.
//!
//! Each test starts a small axum server on port 0 whose data endpoint answers from a
//! script (one reply per hit, then a default) and whose token endpoint checks the
//! signature like the real API; assertions are on what the server saw and on what
//! the client returned.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use md5::{Digest, Md5};
use serde_json::{Value, json};
use sobot_sync::core::secret::Secret;
use sobot_sync::io::api::{ApiClient, ApiError, ApiSettings, Credentials};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod limits;
mod requests;
mod retries;
mod tokens;

const APP_ID: &str = "app-1";
const APP_SECRET: &str = "TOPSECRET-s3cr3t";
const SEARCH: &str = "/callservice/tm/tm-reports/maincdrs/_search";

// ---------------------------------------------------------------------------------
// The scripted server
// ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    delay: Duration,
}

impl Reply {
    fn raw(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    fn ok(data: Value) -> Self {
        Self::raw(200, envelope(200, "", data).to_string())
    }
    fn code(code: Value, message: &str) -> Self {
        Self::raw(
            200,
            json!({"code": code, "status": "Failed", "message": message, "reason": "x", "data": null})
                .to_string(),
        )
    }
    fn status(status: u16) -> Self {
        Self::raw(
            status,
            envelope(i64::from(status), "failed", Value::Null).to_string(),
        )
    }
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

fn envelope(code: i64, message: &str, data: Value) -> Value {
    json!({"apiVersion": "6.2", "status": "Success", "message": message, "code": code,
           "reason": "OK", "kind": "Test", "data": data})
}

#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Hit {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

type TokenStyle = Box<dyn Fn(usize) -> Value + Send + Sync>;

struct Mock {
    script: Mutex<VecDeque<Reply>>,
    default_reply: Mutex<Reply>,
    hits: Mutex<Vec<Hit>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// The secret the token endpoint expects (a client with another one is refused).
    secret: String,
    token_style: TokenStyle,
    token_script: Mutex<VecDeque<Reply>>,
    token_requests: AtomicUsize,
    /// When set, data requests need an issued, unrevoked token.
    check_tokens: bool,
    valid_tokens: Mutex<HashSet<String>>,
}

impl Mock {
    fn new() -> Self {
        Self {
            script: Mutex::new(VecDeque::new()),
            default_reply: Mutex::new(Reply::ok(json!({"total": 0, "list": []}))),
            hits: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            secret: APP_SECRET.into(),
            token_style: Box::new(
                |n| json!({"access_token": format!("tok-{n}"), "expires_in": 3600}),
            ),
            token_script: Mutex::new(VecDeque::new()),
            token_requests: AtomicUsize::new(0),
            check_tokens: false,
            valid_tokens: Mutex::new(HashSet::new()),
        }
    }
    fn script(self, replies: impl IntoIterator<Item = Reply>) -> Self {
        self.script.lock().unwrap().extend(replies);
        self
    }
    fn default_reply(self, reply: Reply) -> Self {
        *self.default_reply.lock().unwrap() = reply;
        self
    }
    fn token_style(mut self, style: impl Fn(usize) -> Value + Send + Sync + 'static) -> Self {
        self.token_style = Box::new(style);
        self
    }
    fn token_script(self, replies: impl IntoIterator<Item = Reply>) -> Self {
        self.token_script.lock().unwrap().extend(replies);
        self
    }
    fn secret(mut self, secret: &str) -> Self {
        self.secret = secret.into();
        self
    }
    fn checking_tokens(mut self) -> Self {
        self.check_tokens = true;
        self
    }
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
    fn token_requests(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }
    fn revoke_all_tokens(&self) {
        self.valid_tokens.lock().unwrap().clear();
    }

    /// Starts serving; returns the base URL.
    async fn start(self) -> (Arc<Self>, String) {
        let mock = Arc::new(self);
        let router = Router::new()
            .route("/tokens/company", post(token_endpoint))
            .fallback(data_endpoint)
            .with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (mock, format!("http://{addr}"))
    }
}

fn respond(reply: Reply) -> Response {
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap(),
        Bytes::from(reply.body),
    )
        .into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Checks the request like the real endpoint: fields present, timestamp fresh,
/// signature right; then answers from the token script or the token style.
async fn token_endpoint(State(mock): State<Arc<Mock>>, body: Bytes) -> Response {
    let n = mock.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let scripted = mock.token_script.lock().unwrap().pop_front();
    if let Some(reply) = scripted {
        tokio::time::sleep(reply.delay).await;
        return respond(reply);
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return respond(Reply::code(json!(400), "bad json"));
    };
    let current_time = match &req["currentTime"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    let (Some(app_id), Some(rt), Some(ts), Some(sign)) = (
        req["appId"].as_str(),
        req["responseType"].as_str(),
        current_time,
        req["sign"].as_str(),
    ) else {
        return respond(Reply::code(json!(400), "missing field"));
    };
    let expected = md5_hex(&format!("{app_id}{ts}{rt}{}", mock.secret));
    if app_id != APP_ID || rt != "token" || sign != expected || now_ms().abs_diff(ts) > 600_000 {
        // Echo things a careless client might copy into its error.
        return respond(Reply::code(
            json!(401),
            &format!(
                "sign invalid for secret {} expected {expected}",
                mock.secret
            ),
        ));
    }
    let data = (mock.token_style)(n);
    if let Some(token) = data
        .get("access_token")
        .or_else(|| data.get("accessToken"))
        .and_then(Value::as_str)
    {
        mock.valid_tokens.lock().unwrap().insert(token.to_owned());
    }
    respond(Reply::ok(data))
}

async fn data_endpoint(
    State(mock): State<Arc<Mock>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let now = mock.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    mock.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let authorized = !mock.check_tokens
        || headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| mock.valid_tokens.lock().unwrap().contains(t));
    mock.hits.lock().unwrap().push(Hit {
        at,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
    });
    let reply = if authorized {
        let scripted = mock.script.lock().unwrap().pop_front();
        scripted.unwrap_or_else(|| mock.default_reply.lock().unwrap().clone())
    } else {
        Reply::raw(401, envelope(401, "token invalid", Value::Null).to_string())
    };
    tokio::time::sleep(reply.delay).await;
    mock.in_flight.fetch_sub(1, Ordering::SeqCst);
    respond(reply)
}

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

fn company() -> Credentials {
    Credentials::Company {
        app_id: APP_ID.into(),
        app_secret: Secret::new(APP_SECRET),
    }
}

fn settings(base: &str, credentials: Credentials) -> ApiSettings {
    ApiSettings {
        base_url: base.into(),
        credentials,
        max_rps: 1000,
        max_concurrency: 4,
        timezone: "Asia/Singapore".into(),
        request_timeout: Duration::from_secs(5),
        max_retries: 3,
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        tenant: None,
        agent_token: None,
    }
}

fn client(settings: ApiSettings) -> ApiClient {
    ApiClient::new(settings).unwrap()
}

fn search_body() -> Value {
    json!({"startTime": 1_700_000_000_000i64, "endTime": 1_700_000_060_000i64, "pageNum": 1, "pageSize": 100})
}

fn jwt_with_exp(exp: u64) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64.encode(json!({"sub": "company", "exp": exp}).to_string()),
        b64.encode(b"signature")
    )
}
