//! Talking to a simulator over real HTTP, as the sync engine does: a simulator on a free
//! port, and a client that keeps each answer's raw bytes so tests can inspect truncation
//! and exact bodies. Shared by the `sim` and `sim_reports` tests.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sobot_sync::sim;
use sobot_sync::sim::{SimConfig, SimHandle};

/// The static token every test simulator accepts.
pub const TOKEN: &str = "static-test-token";

/// A test's RFC 3339 instant; a typo in a test fails loudly.
pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("test time {s:?}: {e}"))
}

/// A simulator that accepts [`TOKEN`] and whose clock stands at `now`.
pub fn config(now: &str) -> SimConfig {
    SimConfig {
        static_token: Some(TOKEN.to_string()),
        now: Some(utc(now)),
        ..SimConfig::default()
    }
}

/// Starts a simulator on a free loopback port.
pub async fn start(config: SimConfig) -> SimHandle {
    let addr = "127.0.0.1:0"
        .parse()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    sim::start(config, addr)
        .await
        .unwrap_or_else(|e| panic!("simulator did not start: {e}"))
}

/// One HTTP answer, body kept raw so tests can inspect truncation and exact bytes.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The envelope `code`.
    pub fn code(&self) -> i64 {
        self.json()["code"].as_i64().unwrap_or(-1)
    }
}

/// A client of one simulator. Tests change `token` and `timezone` to probe the checks;
/// endpoint-specific helpers are `impl Client` blocks in the test files that use them.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
    pub timezone: Option<String>,
}

impl Client {
    pub fn new(sim: &SimHandle) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: sim.base_url(),
            token: Some(TOKEN.to_string()),
            timezone: None,
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let mut req = req;
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(tz) = &self.timezone {
            req = req.header("timezoneid", tz);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("body failed: {e}"));
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// A GET, with an `Idempotency-Key` header when one is given.
    pub async fn get(&self, path_and_query: &str, idempotency: Option<&str>) -> Answer {
        let mut req = self.http.get(format!("{}{path_and_query}", self.base));
        if let Some(k) = idempotency {
            req = req.header("Idempotency-Key", k);
        }
        self.send(req).await
    }
}
