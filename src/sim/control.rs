//! The token endpoint and the `/_sim/*` control endpoints. Neither counts as a data
//! request, so every-Nth faults never hit them (slow may hit the token endpoint).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::config::{Dialect, Faults, fires};
use super::protocol::{TokenRequest, envelope_error, failure, parse_body, success, unwrapped};
use super::state::Shared;

/// `POST /tokens/company`
pub(crate) async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let n = shared.stats.token_request();
    let faults = shared.faults();
    if fires(faults.slow_every, n) {
        tokio::time::sleep(Duration::from_millis(faults.slow_ms)).await;
    }
    // The real clock: signatures and token lifetimes never follow the simulated now.
    let now = Utc::now();
    let response = match parse_body::<TokenRequest>(&body) {
        Err(m) => envelope_error(400, &m),
        Ok(req) => match shared.tokens.check_request(&req, now) {
            Err(m) => envelope_error(401, &m),
            Ok(()) => {
                let token = shared.tokens.issue(faults.token_ttl(), now);
                match (shared.dialect, token) {
                    // issue 13: the token form of Sobot's token documentation, without
                    // the envelope.
                    (Dialect::Literal, serde_json::Value::Object(mut t)) => {
                        t.insert("response_type".into(), "token".into());
                        unwrapped("Token", t)
                    }
                    (_, token) => success("Token", token),
                }
            }
        },
    };
    shared.stats.record("token", response.status().as_u16());
    response
}

/// `GET /_sim/stats`
pub(crate) async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.stats.snapshot()).into_response()
}

/// `GET /_sim/faults`
pub(crate) async fn faults(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.faults().as_ref().clone()).into_response()
}

/// `PUT /_sim/faults` with a `Faults` object (missing fields take their defaults).
pub(crate) async fn set_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse_body::<Faults>(&body) {
        Ok(f) => {
            shared.set_faults(f.clone());
            Json(f).into_response()
        }
        Err(m) => failure(StatusCode::BAD_REQUEST, 400, &m),
    }
}

#[derive(Debug, Deserialize)]
struct NowBody {
    now: Option<DateTime<Utc>>,
    /// issue 5: run the clock from `now` (or the real now) at this many simulated
    /// seconds per real second.
    #[serde(default)]
    speed: Option<f64>,
}

/// `PUT /_sim/now` with `{"now": "RFC 3339" | null, "speed": N}` (`speed` optional).
pub(crate) async fn set_now(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse_body::<NowBody>(&body) {
        Ok(b) => {
            match b.speed {
                Some(speed) => shared.run_clock(b.now.unwrap_or_else(Utc::now), speed),
                None => shared.set_now(b.now),
            }
            Json(serde_json::json!({ "now": b.now, "speed": b.speed })).into_response()
        }
        Err(m) => failure(StatusCode::BAD_REQUEST, 400, &m),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestateBody {
    /// Local day in the simulator's zone, `yyyy-MM-dd`.
    date: NaiveDate,
    /// Extra talk pairs to count that day (default 1; 0 withdraws the restatement).
    #[serde(default = "one")]
    pairs: u32,
}

fn one() -> u32 {
    1
}

/// `PUT /_sim/restate` with `{"date": "2024-03-02", "pairs": 1}`: from now on the reports
/// of that local day (and its weeks and months) count `pairs` extra answered talk pairs.
/// Answers the restatements in force.
pub(crate) async fn restate(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse_body::<RestateBody>(&body) {
        Ok(b) => {
            shared.dataset.restate(b.date, b.pairs);
            restatements(State(shared)).await
        }
        Err(m) => failure(StatusCode::BAD_REQUEST, 400, &m),
    }
}

/// `GET /_sim/restate`: `{"2024-03-02": 1, ...}`, the restated days and their pairs.
pub(crate) async fn restatements(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.dataset.restatements()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckPlanBody {
    single_object: bool,
}

/// `PUT /_sim/check-plan` with `{"single_object": true}`: `check_plan` answers one plan
/// object, as the API document shows, instead of the list of plans.
pub(crate) async fn set_check_plan(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse_body::<CheckPlanBody>(&body) {
        Ok(b) => {
            shared
                .dataset
                .report_state()
                .set_check_plan_single(b.single_object);
            Json(serde_json::json!({ "single_object": b.single_object })).into_response()
        }
        Err(m) => failure(StatusCode::BAD_REQUEST, 400, &m),
    }
}
