//! The gate every data request passes before its handler: numbering (for every-Nth
//! faults), statistics, fault injection, the server-side rate limit, authentication and
//! the `timezoneid` header. Faults are decided independently, so one request may be both
//! slow and refused.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use chrono_tz::Tz;

use super::config::{Faults, fires};
use super::protocol::{envelope_error, failure, json_response};
use super::state::{RequestCtx, Shared};

/// The statistics name of a data route, from the request path (ids never contain `/`).
fn endpoint_name(path: &str) -> &'static str {
    if path.ends_with("/partycdrs") {
        "partycdrs"
    } else if path.contains("/maincdrs/") {
        "maincdrs"
    } else if path.contains("/cdrs/") {
        "cdrs"
    } else if path.contains("/agent-histories/") {
        "agent-histories"
    } else if path.contains("/recordings/") {
        "recordings"
    } else if path.contains("/gateway-number-table/") {
        "gateway-number-table"
    } else if path.contains("/agent-table/") {
        "agent-table"
    } else if path.contains("/depart-table/") {
        "depart-table"
    } else if path.ends_with("/check_plan") {
        "check_plan"
    } else if path.ends_with("/_watch/agents-metrics") {
        "agents-metrics-watch"
    } else if path.ends_with("/agents-metrics") {
        "agents-metrics"
    } else {
        "other"
    }
}

pub(crate) async fn gate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let endpoint = endpoint_name(req.uri().path());
    let n = shared.next_data_request();
    let faults = shared.faults();
    let (_in_flight, admitted) = shared.stats.arrive(faults.max_rps);
    if fires(faults.slow_every, n) {
        tokio::time::sleep(Duration::from_millis(faults.slow_ms)).await;
    }
    let response = pass(&shared, faults, n, admitted, req, next).await;
    shared.stats.record(endpoint, response.status().as_u16());
    response
}

async fn pass(
    shared: &Shared,
    faults: Arc<Faults>,
    n: u64,
    admitted: bool,
    mut req: Request,
    next: Next,
) -> Response {
    if !admitted {
        return too_many(1, "request rate above the server limit");
    }
    // issue 13: an endpoint broken for good, whatever the request.
    if let Some(status) = faults.broken_endpoint(req.uri().path()) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return failure(status, status.as_u16(), "simulated broken endpoint");
    }
    if fires(faults.rate_limit_every, n) {
        return too_many(faults.retry_after_secs, "simulated rate limit");
    }
    if fires(faults.server_error_every, n) {
        let k = faults.server_error_every.unwrap_or(1).max(1);
        let status = [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ][((n / k).saturating_sub(1) % 3) as usize];
        return failure(status, status.as_u16(), "simulated server error");
    }
    if fires(faults.envelope_error_every, n) {
        return envelope_error(500, "simulated internal error");
    }
    let shape_path = faults
        .wrong_shape_path
        .as_deref()
        .is_some_and(|p| !p.is_empty() && req.uri().path().contains(p));
    if fires(faults.wrong_shape_every, n) || shape_path {
        return wrong_shape();
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = shared.tokens.kind(auth, Utc::now()) else {
        let why = if auth.is_some() {
            "token unknown or expired"
        } else {
            "Authorization header missing"
        };
        return failure(StatusCode::UNAUTHORIZED, 401, why);
    };
    // issue 13: which token reached which endpoint (agent token routing is tested on it).
    shared
        .stats
        .token_used(endpoint_name(req.uri().path()), token.as_str());
    let tz = match req
        .headers()
        .get("timezoneid")
        .map(|v| v.to_str().map(str::trim))
    {
        None => shared.default_tz,
        Some(Ok("")) => shared.default_tz,
        Some(Ok(name)) => match name.parse::<Tz>() {
            Ok(tz) => tz,
            Err(_) => return envelope_error(400, &format!("unknown timezoneid {name:?}")),
        },
        Some(Err(_)) => return envelope_error(400, "timezoneid is not text"),
    };
    // A stream has no end to cut in half (issue 5: it has its own drop switches).
    let truncate = fires(faults.truncate_every, n) && !req.uri().path().contains("/_watch/");
    let now_ms = shared.now().timestamp_millis();
    req.extensions_mut().insert(RequestCtx {
        tz,
        faults,
        now_ms,
        token,
    });
    let response = next.run(req).await;
    if truncate {
        cut_in_half(response).await
    } else {
        response
    }
}

/// issue 13: HTTP 200 with well-formed JSON that is no answer the document shows.
fn wrong_shape() -> Response {
    let body = serde_json::json!({
        "result": "ok",
        "items": [],
        "serverTime": 1_700_000_000_000_i64,
    });
    json_response(StatusCode::OK, body.to_string().into_bytes())
}

fn too_many(retry_after_secs: u64, why: &str) -> Response {
    let mut r = failure(StatusCode::TOO_MANY_REQUESTS, 429, why);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    r
}

/// The response with only the first half of its body: a connection cut mid-answer.
async fn cut_in_half(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => {
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                500,
                "simulator lost its own body",
            );
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes.slice(..bytes.len() / 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_routes() {
        assert_eq!(
            endpoint_name("/callservice/tm/tm-reports/maincdrs/_search"),
            "maincdrs"
        );
        assert_eq!(
            endpoint_name("/callservice/tm/tm-reports/maincdrs/{call_id}/partycdrs"),
            "partycdrs"
        );
        assert_eq!(
            endpoint_name("/callservice/tm/tm-reports/cdrs/_search"),
            "cdrs"
        );
        assert_eq!(
            endpoint_name("/callservice/tm/tm-reports/agent-histories/_search"),
            "agent-histories"
        );
        assert_eq!(
            endpoint_name("/callservice/tm/tm-reports/agent-table/_search"),
            "agent-table"
        );
        assert_eq!(
            endpoint_name("/callservice/tm/tm-reports/gateway_number/check_plan"),
            "check_plan"
        );
        assert_eq!(
            endpoint_name("/callservice/v6/webmsg/monitoring/agents-metrics"),
            "agents-metrics"
        );
    }
}
