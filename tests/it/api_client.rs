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

// ---------------------------------------------------------------------------------
// Requests and headers
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn post_sends_headers_and_body_and_returns_data() {
    let (mock, base) = Mock::new()
        .script([Reply::ok(json!({"total": 1, "list": [{"callID": "c1"}]}))])
        .start()
        .await;
    let api = client(settings(
        &format!("{base}/"),
        Credentials::Token(Secret::new("static-tok")),
    ));
    let data = api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(data, json!({"total": 1, "list": [{"callID": "c1"}]}));

    let hits = mock.hits();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.path, SEARCH);
    assert_eq!(hit.header("authorization").as_deref(), Some("static-tok"));
    assert_eq!(hit.header("timezoneid").as_deref(), Some("Asia/Singapore"));
    assert_eq!(
        hit.header("content-type").as_deref(),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&hit.body).unwrap(),
        search_body()
    );
    assert_eq!(api.stats().requests, 1);
}

#[tokio::test]
async fn get_sends_query_parameters() {
    let (mock, base) = Mock::new().start().await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    let path = "/callservice/tm/tm-reports/maincdrs/abc 123/partycdrs";
    api.get(
        path,
        &[
            ("hideNumber".into(), "2".into()),
            ("q".into(), "a&b".into()),
        ],
    )
    .await
    .unwrap();
    let hits = mock.hits();
    assert_eq!(
        hits[0].path,
        "/callservice/tm/tm-reports/maincdrs/abc%20123/partycdrs"
    );
    assert_eq!(hits[0].query.as_deref(), Some("hideNumber=2&q=a%26b"));
    assert!(hits[0].body.is_empty());
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks: enough to
/// prove the client asks for and decodes gzip, without a compression crate.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[tokio::test]
async fn gzip_response_is_decoded() {
    let data = json!({"total": 2, "list": [{"callID": "a"}, {"callID": "b"}]});
    let body = gzip_stored(envelope(200, "", data.clone()).to_string().as_bytes());
    let (mock, base) = Mock::new()
        .script([Reply::raw(200, body).header("content-encoding", "gzip")])
        .start()
        .await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    assert_eq!(api.post(SEARCH, &search_body()).await.unwrap(), data);
    let accept = mock.hits()[0].header("accept-encoding").unwrap_or_default();
    assert!(accept.contains("gzip"), "accept-encoding was {accept:?}");
}

// ---------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn all_three_token_answer_styles_are_understood() {
    let jwt = jwt_with_exp(now_ms() / 1000 + 3600);
    let styles: Vec<(&str, Value)> = vec![
        (
            "snake",
            json!({"access_token": "tok-snake", "expires_in": 7200}),
        ),
        (
            "camel",
            json!({"accessToken": "tok-camel", "expiresIn": "7200"}),
        ),
        ("jwt", json!({"accessToken": jwt})),
    ];
    for (name, answer) in styles {
        let token = answer
            .get("access_token")
            .or_else(|| answer.get("accessToken"))
            .and_then(Value::as_str)
            .unwrap()
            .to_owned();
        let (mock, base) = Mock::new()
            .checking_tokens()
            .token_style(move |_| answer.clone())
            .start()
            .await;
        let api = client(settings(&base, company()));
        api.authenticate()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        api.post(SEARCH, &search_body())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        api.post(SEARCH, &search_body())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The signature was checked by the server; one token served both requests.
        assert_eq!(mock.token_requests(), 1, "{name}");
        let hits = mock.hits();
        assert_eq!(hits.len(), 2, "{name}");
        assert!(
            hits.iter()
                .all(|h| h.header("authorization").as_deref() == Some(token.as_str()))
        );
        assert_eq!(api.stats().token_refreshes, 1, "{name}");
    }
}

#[tokio::test]
async fn wrong_secret_is_an_auth_error_without_secrets() {
    let (mock, base) = Mock::new().secret("the-server-knows-another").start().await;
    let api = client(settings(&base, company()));
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Auth { endpoint, .. } if endpoint == "/tokens/company"),
        "{err:?}"
    );
    let (text, debug) = (err.to_string(), format!("{err:?}"));
    assert!(
        text.contains("/tokens/company") && text.contains("refused"),
        "{text}"
    );
    for leak in [APP_SECRET, "the-server-knows-another", "sign invalid"] {
        assert!(
            !text.contains(leak) && !debug.contains(leak),
            "{leak} leaked: {debug}"
        );
    }
    // A refusal is permanent: one token request, no data request.
    assert_eq!(mock.token_requests(), 1);
    assert!(mock.hits().is_empty());
}

#[tokio::test]
async fn token_is_refreshed_at_half_life() {
    let (mock, base) = Mock::new()
        .checking_tokens()
        .token_style(|n| json!({"access_token": format!("tok-{n}"), "expires_in": 1}))
        .start()
        .await;
    let api = client(settings(&base, company()));
    api.post(SEARCH, &search_body()).await.unwrap();
    api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(
        mock.token_requests(),
        1,
        "still within the first half of the lifetime"
    );
    // Past half of the one-second lifetime, though the token would still be valid.
    tokio::time::sleep(Duration::from_millis(600)).await;
    api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(mock.token_requests(), 2);
    let tokens: Vec<_> = mock
        .hits()
        .iter()
        .map(|h| h.header("authorization"))
        .collect();
    assert_eq!(
        tokens,
        vec![
            Some("tok-1".into()),
            Some("tok-1".into()),
            Some("tok-2".into())
        ]
    );
    assert_eq!(api.stats().token_refreshes, 2);
}

#[tokio::test]
async fn jwt_exp_drives_the_refresh() {
    // exp one to two seconds ahead: half-life passes within a second.
    let (mock, base) = Mock::new()
        .token_style(
            |n| json!({"accessToken": jwt_with_exp(now_ms() / 1000 + 2) + &format!("{n}")}),
        )
        .start()
        .await;
    let api = client(settings(&base, company()));
    api.authenticate().await.unwrap();
    api.authenticate().await.unwrap();
    assert_eq!(mock.token_requests(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    api.authenticate().await.unwrap();
    assert_eq!(mock.token_requests(), 2);
}

#[tokio::test]
async fn concurrent_requests_share_one_token_request() {
    let (mock, base) = Mock::new()
        .checking_tokens()
        .token_script([
            Reply::ok(json!({"access_token": "tok-slow", "expires_in": 3600}))
                .delayed(Duration::from_millis(100)),
        ])
        .start()
        .await;
    // The scripted token answer bypasses the server's issuing, so register it.
    mock.valid_tokens.lock().unwrap().insert("tok-slow".into());
    let api = client(settings(&base, company()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.post(SEARCH, &search_body()).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(mock.token_requests(), 1);
    assert_eq!(mock.hits().len(), 8);
}

#[tokio::test]
async fn http_401_refreshes_once_and_repeats() {
    let (mock, base) = Mock::new().checking_tokens().start().await;
    let api = client(settings(&base, company()));
    api.post(SEARCH, &search_body()).await.unwrap();
    mock.revoke_all_tokens();
    api.post(SEARCH, &search_body()).await.unwrap();
    let tokens: Vec<_> = mock
        .hits()
        .iter()
        .map(|h| h.header("authorization"))
        .collect();
    assert_eq!(
        tokens,
        vec![
            Some("tok-1".into()),
            Some("tok-1".into()),
            Some("tok-2".into())
        ]
    );
    assert_eq!(mock.token_requests(), 2);
    assert_eq!(api.stats().token_refreshes, 2);
    assert_eq!(api.stats().retries, 0, "a refresh is not a backoff retry");
}

#[tokio::test]
async fn concurrent_401s_share_one_refresh() {
    let (mock, base) = Mock::new().checking_tokens().start().await;
    let api = client(settings(&base, company()));
    api.authenticate().await.unwrap();
    mock.revoke_all_tokens();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.post(SEARCH, &search_body()).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(mock.token_requests(), 2);
}

#[tokio::test]
async fn envelope_401_refreshes_and_a_second_401_is_an_auth_error() {
    let (mock, base) = Mock::new()
        .script([
            Reply::code(json!("401"), "token expired tok-1"),
            Reply::status(401),
        ])
        .start()
        .await;
    let api = client(settings(&base, company()));
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Auth { endpoint, .. } if endpoint == SEARCH),
        "{err:?}"
    );
    assert_eq!(mock.hits().len(), 2);
    assert_eq!(mock.token_requests(), 2);
    let text = format!("{err} {err:?}");
    assert!(!text.contains("tok-1") && !text.contains("tok-2"), "{text}");
}

#[tokio::test]
async fn static_token_401_is_an_auth_error_naming_the_setting() {
    let (mock, base) = Mock::new().script([Reply::status(401)]).start().await;
    let api = client(settings(
        &base,
        Credentials::Token(Secret::new("STATIC-abc-123")),
    ));
    api.authenticate().await.unwrap();
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    assert!(matches!(&err, ApiError::Auth { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("SOBOT_TOKEN") && text.contains(SEARCH),
        "{text}"
    );
    assert!(!text.contains("STATIC-abc-123") && !format!("{err:?}").contains("STATIC-abc-123"));
    assert_eq!(mock.hits().len(), 1);
    assert_eq!(mock.token_requests(), 0);
}

#[tokio::test]
async fn no_secret_or_token_in_errors_or_debug() {
    let token = "TOKEN-very-secret-42";
    // The token endpoint fails with a body that contains a token, until exhaustion.
    let failing = Reply::raw(
        500,
        envelope(500, token, json!({"access_token": token})).to_string(),
    );
    let (_mock, base) = Mock::new().token_script(vec![failing; 4]).start().await;
    let s = settings(&base, company());
    let api = client(s.clone());
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Exhausted { endpoint, attempts: 4, .. } if endpoint == "/tokens/company"),
        "{err:?}"
    );

    // A transient envelope error at the token endpoint, echoing token and secret.
    let echo = Reply::code(json!(500), &format!("{token} {APP_SECRET}"));
    let (_mock2, base2) = Mock::new().token_script(vec![echo; 4]).start().await;
    let err2 = client(settings(&base2, company()))
        .authenticate()
        .await
        .unwrap_err();

    let texts = [
        err.to_string(),
        format!("{err:?}"),
        err2.to_string(),
        format!("{err2:?}"),
        format!("{api:?}"),
        format!("{s:?}"),
    ];
    for text in &texts {
        assert!(!text.contains(token), "token leaked: {text}");
        assert!(!text.contains(APP_SECRET), "secret leaked: {text}");
    }
    assert!(
        texts[4].contains(APP_ID),
        "Debug still names the app: {}",
        texts[4]
    );
}

// ---------------------------------------------------------------------------------
// Envelope and retries
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn permanent_envelope_code_is_not_retried() {
    let (mock, base) = Mock::new()
        .script([Reply::code(json!(400), "startTime is required")])
        .start()
        .await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    match &err {
        ApiError::Envelope {
            endpoint,
            code,
            message,
        } => {
            assert_eq!((endpoint.as_str(), *code), (SEARCH, 400));
            assert_eq!(message, "startTime is required");
        }
        other => panic!("expected an envelope error, got {other:?}"),
    }
    assert_eq!(mock.hits().len(), 1);
    assert_eq!(api.stats().retries, 0);
}

#[tokio::test]
async fn transient_envelope_code_is_retried() {
    let (mock, base) = Mock::new()
        .script([
            Reply::code(json!("500"), "busy"),
            Reply::code(json!(9999), "odd"),
        ])
        .start()
        .await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(mock.hits().len(), 3);
    assert_eq!(api.stats().retries, 2);
    assert_eq!(api.stats().requests, 3);
}

#[tokio::test]
async fn missing_data_is_a_decode_error() {
    // issue 13: a shape we do not read is retried once, then final.
    let no_data = Reply::raw(200, r#"{"code":200,"message":""}"#);
    let (mock, base) = Mock::new().script([no_data.clone(), no_data]).start().await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Decode { endpoint, .. } if endpoint == SEARCH),
        "{err:?}"
    );
    assert_eq!(mock.hits().len(), 2);
}

#[tokio::test]
async fn http_429_honours_retry_after() {
    let (mock, base) = Mock::new()
        .script([Reply::status(429).header("retry-after", "1")])
        .start()
        .await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    api.post(SEARCH, &search_body()).await.unwrap();
    let hits = mock.hits();
    assert_eq!(hits.len(), 2);
    let gap = hits[1].at - hits[0].at;
    // max_backoff is 20 ms: only the Retry-After explains a gap this long.
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    let stats = api.stats();
    assert_eq!(
        (stats.rate_limited, stats.retries, stats.requests),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn http_5xx_then_success() {
    let (mock, base) = Mock::new()
        .script([
            Reply::status(503),
            Reply::status(502),
            Reply::raw(504, "<html>gateway</html>"),
        ])
        .start()
        .await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    let data = api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(data, json!({"total": 0, "list": []}));
    assert_eq!(mock.hits().len(), 4);
    assert_eq!(api.stats().retries, 3);
}

#[tokio::test]
async fn truncated_json_then_success() {
    let (mock, base) = Mock::new()
        .script([
            Reply::raw(200, r#"{"code":200,"data":{"total":5,"li"#),
            Reply::raw(200, "not json at all"),
        ])
        .start()
        .await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(mock.hits().len(), 3);
}

#[tokio::test]
async fn body_cut_short_by_the_server_then_success() {
    // A raw server: the first answer promises more bytes than it sends and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 8192];
            let _ = socket.read(&mut buf).await;
            let full = envelope(200, "", json!({"ok": true})).to_string();
            let reply = if n == 0 {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    full.len() + 50,
                    &full[..10]
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{full}",
                    full.len()
                )
            };
            let _ = socket.write_all(reply.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    assert_eq!(
        api.post(SEARCH, &search_body()).await.unwrap(),
        json!({"ok": true})
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn timeout_then_success() {
    let (mock, base) = Mock::new()
        .script([Reply::ok(json!("late")).delayed(Duration::from_secs(10))])
        .start()
        .await;
    let mut s = settings(&base, Credentials::Token(Secret::new("t")));
    // Long enough that the second, prompt answer never times out on a loaded machine.
    s.request_timeout = Duration::from_secs(1);
    let api = client(s);
    let started = Instant::now();
    let data = api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(
        data,
        json!({"total": 0, "list": []}),
        "the second answer, not the late one"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(mock.hits().len(), 2);
    assert_eq!(api.stats().retries, 1);
}

#[tokio::test]
async fn exhaustion_names_endpoint_and_attempts() {
    let (mock, base) = Mock::new().default_reply(Reply::status(500)).start().await;
    let mut s = settings(&base, Credentials::Token(Secret::new("t")));
    s.max_retries = 2;
    let api = client(s);
    let err = api
        .post(&format!("{SEARCH}?debug=1"), &search_body())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::Exhausted { endpoint, attempts: 3, last }
            if endpoint == SEARCH && matches!(**last, ApiError::Http { status: 500, .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(SEARCH) && text.contains("3 attempts") && text.contains("500"),
        "{text}"
    );
    assert!(
        !text.contains("127.0.0.1") && !text.contains("debug=1"),
        "{text}"
    );
    assert_eq!(mock.hits().len(), 3);
}

#[tokio::test]
async fn connection_refused_is_retried_then_exhausted() {
    // Bind and drop to get a port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut s = settings(&base, Credentials::Token(Secret::new("t")));
    s.max_retries = 1;
    let api = client(s);
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Exhausted { attempts: 2, last, .. } if matches!(**last, ApiError::Transport { .. })),
        "{err:?}"
    );
    assert_eq!(api.stats().requests, 2);
}

// ---------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_cap_holds_across_concurrent_tasks() {
    let (mock, base) = Mock::new().start().await;
    let mut s = settings(&base, Credentials::Token(Secret::new("t")));
    s.max_rps = 20;
    s.max_concurrency = 8;
    let api = client(s);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (api, next) = (api.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::SeqCst) < 30 {
                    api.post(SEARCH, &search_body()).await?;
                }
                Ok::<_, ApiError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let elapsed = started.elapsed();
    let times: Vec<Instant> = mock.hits().iter().map(|h| h.at).collect();
    assert_eq!(times.len(), 30);
    // Burst 1: at most 20 starts in any half-open second, +1 for arrival jitter.
    let busiest = times
        .iter()
        .map(|&t0| {
            times
                .iter()
                .filter(|&&t| t >= t0 && t < t0 + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(busiest <= 21, "{busiest} requests within one second");
    assert!(
        elapsed >= Duration::from_secs(1),
        "30 requests at 20/s took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_holds() {
    let (mock, base) = Mock::new()
        .default_reply(Reply::ok(json!({})).delayed(Duration::from_millis(150)))
        .start()
        .await;
    let mut s = settings(&base, Credentials::Token(Secret::new("t")));
    s.max_concurrency = 3;
    let api = client(s);
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.post(SEARCH, &search_body()).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(mock.hits().len(), 12);
    assert_eq!(mock.max_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn token_requests_count_against_the_rate_cap() {
    let (mock, base) = Mock::new().start().await;
    let mut s = settings(&base, company());
    s.max_rps = 5;
    let api = client(s);
    let started = Instant::now();
    api.post(SEARCH, &search_body()).await.unwrap();
    api.post(SEARCH, &search_body()).await.unwrap();
    // Token + 2 data requests, evenly spaced at 200 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(mock.token_requests(), 1);
    assert_eq!(api.stats().requests, 3);
}

#[test]
fn invalid_settings_are_rejected_with_the_setting_named() {
    let base = settings("http://127.0.0.1:1", company());
    let cases: Vec<(ApiSettings, &str)> = vec![
        (
            ApiSettings {
                max_rps: 0,
                ..base.clone()
            },
            "SOBOT_MAX_RPS",
        ),
        (
            ApiSettings {
                max_rps: u32::MAX,
                ..base.clone()
            },
            "SOBOT_MAX_RPS",
        ),
        (
            ApiSettings {
                max_concurrency: 0,
                ..base.clone()
            },
            "SOBOT_MAX_CONCURRENCY",
        ),
        (
            ApiSettings {
                base_url: "sg.sobot.io".into(),
                ..base.clone()
            },
            "SOBOT_BASE_URL",
        ),
        (
            ApiSettings {
                timezone: "Asia/\nX".into(),
                ..base.clone()
            },
            "SOBOT_TIMEZONE",
        ),
        (
            ApiSettings {
                credentials: Credentials::Token(Secret::new(" ")),
                ..base.clone()
            },
            "SOBOT_TOKEN",
        ),
        (
            ApiSettings {
                credentials: Credentials::Company {
                    app_id: "".into(),
                    app_secret: Secret::new("x"),
                },
                ..base.clone()
            },
            "SOBOT_APP_ID",
        ),
        (
            ApiSettings {
                agent_token: Some(Secret::new("a\nb")),
                ..base.clone()
            },
            "SOBOT_AGENT_TOKEN",
        ),
    ];
    for (s, name) in cases {
        match ApiClient::new(s) {
            Err(ApiError::Config(m)) => assert!(m.contains(name), "{m}"),
            other => panic!("{name}: expected a config error, got {other:?}"),
        }
    }
}
