//! The three HTTP report endpoints: parse, apply faults, page, and run the query off the
//! async workers.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::assemble::run;
use super::query::ReportQuery;
use crate::core::report::indicators::Family;
use crate::sim::config::Dialect;
use crate::sim::handlers::page_window;
use crate::sim::protocol::{envelope_error, failure, success_zero_in};
use crate::sim::state::{RequestCtx, Shared};

const BROKEN: &str = "simulated permanent failure for this time range";

/// Shared body of the three report endpoints.
async fn serve(shared: Arc<Shared>, ctx: RequestCtx, body: Bytes, family: Family) -> Response {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return envelope_error(400, &format!("invalid request body: {e}")),
        }
    };
    let q = match ReportQuery::parse(family, &body) {
        Ok(q) => q,
        Err(m) => return envelope_error(400, &m),
    };
    let (from, to) = q.range_ms(ctx.tz);
    if ctx.faults.broken_overlaps(from, to) {
        return failure(StatusCode::INTERNAL_SERVER_ERROR, 500, BROKEN);
    }
    let size = usize::try_from(q.page_size)
        .unwrap_or(usize::MAX)
        .min(shared.max_page_size);
    let window = page_window(
        q.curr_page,
        size,
        ctx.faults.shifting_page_size,
        shared.seed,
    );
    // A month of half hours is real work: keep it off the async workers.
    let ds = shared.dataset.clone();
    let curr_page = q.curr_page;
    // issue 13: the `Literal` dialect labels half hours and hours by their instants.
    let instants = shared.dialect == Dialect::Literal;
    let job = tokio::task::spawn_blocking(move || {
        run(&ds, &q, ctx.tz, instants, ctx.now_ms, &ctx.faults, window)
    });
    match job.await {
        Ok(a) => success_zero_in(
            shared.dialect,
            "JSONObject",
            json!({
                "metric": a.rows,
                "amount": a.amount,
                "total": a.total,
                "currPage": curr_page,
                "pageSize": size,
            }),
        ),
        Err(e) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            500,
            &format!("simulator report failed: {e}"),
        ),
    }
}

/// `POST /callservice/tm/tm-reports/gateway-number-table/_search`
pub(crate) async fn gateway_numbers(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    serve(shared, ctx, body, Family::GatewayNumbers).await
}

/// `POST /callservice/tm/tm-reports/agent-table/_search`
pub(crate) async fn agents(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    serve(shared, ctx, body, Family::Agents).await
}

/// `POST /callservice/tm/tm-reports/depart-table/_search`
pub(crate) async fn departments(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    serve(shared, ctx, body, Family::Departments).await
}
