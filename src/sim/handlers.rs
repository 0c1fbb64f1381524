//! The data endpoints. Each reads its request, selects visible records from the data set
//! and pages them; the gate has already authenticated the request and injected faults.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;

use super::config::Faults;
use super::generate::Call;
use super::localtime::{Edge, parse_minute};
use super::model::{AgentHistoryJson, Party, Talk};
use super::protocol::{
    CallSearch, HistorySearch, Lenient, TalkSearch, envelope_error, failure, parse_body, success,
};
use super::rng::{hash, tag};
use super::state::{RequestCtx, Shared};

const BROKEN: &str = "simulated permanent failure for this time range";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TalkPage<'a> {
    curr_page: i64,
    page_size: usize,
    total: usize,
    list: Vec<Cow<'a, Talk>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryPage<'a> {
    curr_page: i64,
    page_size: usize,
    total: usize,
    page_data: Vec<AgentHistoryJson<'a>>,
}

#[derive(Serialize)]
struct PartyList<'a> {
    list: Cow<'a, [Party]>,
}

#[derive(Serialize)]
struct CallWithParties<'a> {
    #[serde(flatten)]
    talk: Cow<'a, Talk>,
    parties: Cow<'a, [Party]>,
}

#[derive(Serialize)]
struct CallList<'a> {
    list: Vec<CallWithParties<'a>>,
}

/// Which records of a result a page serves: `[(pageNum-1)*size, pageNum*size)`, minus a
/// few at the end on the pages the shifting-page-size fault shortens.
pub(crate) fn page_window(page_num: i64, size: usize, shifting: bool, seed: u64) -> (usize, usize) {
    let index = usize::try_from(page_num.saturating_sub(1)).unwrap_or(0);
    let start = index.saturating_mul(size);
    let mut stop = start.saturating_add(size);
    if shifting && hash(&[seed, tag::PAGE, page_num as u64]).is_multiple_of(3) {
        stop -= size.min(3);
    }
    (start, stop)
}

/// Page number and effective page size, or the 400 message.
fn paging(shared: &Shared, num: Lenient, size: Lenient) -> Result<(i64, usize), String> {
    let num = num
        .0
        .filter(|n| *n >= 1)
        .ok_or("pageNum must be an integer >= 1")?;
    let size = size
        .0
        .filter(|n| *n >= 1)
        .ok_or("pageSize must be an integer >= 1")?;
    Ok((
        num,
        usize::try_from(size)
            .unwrap_or(usize::MAX)
            .min(shared.max_page_size),
    ))
}

/// The call's talk as served at the request's now (issue 15: billing maybe unsettled),
/// masked for `hideNumber` 1; borrowed when neither applies.
fn served_talk<'a>(call: &'a Call, ctx: &RequestCtx, hide_number: Lenient) -> Cow<'a, Talk> {
    let talk = call.talk_at(&ctx.faults, ctx.now_ms);
    if hide_number.0 == Some(1) {
        Cow::Owned(talk.masked())
    } else {
        talk
    }
}

fn visible(call: &Call, ctx: &RequestCtx) -> bool {
    call.visible_at(&ctx.faults) <= ctx.now_ms
}

/// A call starting in the broken window fails all of its lookups.
fn in_broken_window(faults: &Faults, start_ms: i64) -> bool {
    faults.broken_overlaps(start_ms, start_ms.saturating_add(1))
}

/// `POST /callservice/tm/tm-reports/maincdrs/_search`
pub(crate) async fn talks(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    let q: TalkSearch = match parse_body(&body) {
        Ok(q) => q,
        Err(m) => return envelope_error(400, &m),
    };
    let (Some(from), Some(to)) = (q.start_time.0, q.end_time.0) else {
        return envelope_error(400, "startTime and endTime (ms) are required");
    };
    let (page_num, size) = match paging(&shared, q.page_num, q.page_size) {
        Ok(p) => p,
        Err(m) => return envelope_error(400, &m),
    };
    if ctx.faults.broken_overlaps(from, to.saturating_add(1)) {
        return failure(StatusCode::INTERNAL_SERVER_ERROR, 500, BROKEN);
    }
    let (lo, hi) = page_window(page_num, size, ctx.faults.shifting_page_size, shared.seed);
    let call_id = q
        .call_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let call_type = q.call_type.0;
    let hours = if to < from {
        Vec::new()
    } else {
        shared.dataset.hours(from, to.min(ctx.now_ms))
    };
    let mut total = 0;
    let mut list = Vec::new();
    for call in hours.iter().flat_map(|h| h.calls.iter()) {
        let t = &call.talk;
        if t.start_time < from
            || t.start_time > to
            || !visible(call, &ctx)
            || call_type.is_some_and(|c| c != i64::from(t.call_type))
            || call_id.is_some_and(|id| id != call.id)
        {
            continue;
        }
        if (lo..hi).contains(&total) {
            let mut t = served_talk(call, &ctx, q.hide_number);
            // issue 13: a recordUrl without its id, as a fault.
            if !t.record_url.is_empty() && ctx.faults.drops_record_id(&call.id) {
                let url = &mut t.to_mut().record_url;
                if let Some(cut) = url.rfind('/') {
                    url.truncate(cut + 1);
                }
            }
            list.push(t);
        }
        total += 1;
    }
    success(
        "MainCDRInfo",
        TalkPage {
            curr_page: page_num,
            page_size: size,
            total,
            list,
        },
    )
}

/// `GET /callservice/tm/tm-reports/maincdrs/{callID}/partycdrs`
pub(crate) async fn parties(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(call_id): Path<String>,
) -> Response {
    let found = shared.dataset.find_call(&call_id);
    if let Some((hour, i)) = &found {
        let call = &hour.calls[*i];
        if in_broken_window(&ctx.faults, call.talk.start_time) {
            return failure(StatusCode::INTERNAL_SERVER_ERROR, 500, BROKEN);
        }
        if visible(call, &ctx) {
            return success(
                "PartyCDRInfo",
                PartyList {
                    list: call.parties_at(&ctx.faults, ctx.now_ms),
                },
            );
        }
    }
    success(
        "PartyCDRInfo",
        PartyList {
            list: Cow::Borrowed(&[]),
        },
    )
}

/// `POST /callservice/tm/tm-reports/cdrs/_search`: one call with its parties.
pub(crate) async fn call_with_parties(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    let q: CallSearch = match parse_body(&body) {
        Ok(q) => q,
        Err(m) => return envelope_error(400, &m),
    };
    let Some(id) = q
        .call_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return envelope_error(400, "callID is required");
    };
    let found = shared.dataset.find_call(id);
    let mut list = Vec::new();
    if let Some((hour, i)) = &found {
        let call = &hour.calls[*i];
        if in_broken_window(&ctx.faults, call.talk.start_time) {
            return failure(StatusCode::INTERNAL_SERVER_ERROR, 500, BROKEN);
        }
        if visible(call, &ctx) {
            list.push(CallWithParties {
                talk: served_talk(call, &ctx, q.hide_number),
                parties: call.parties_at(&ctx.faults, ctx.now_ms),
            });
        }
    }
    success("JSONObject", CallList { list })
}

/// `POST /callservice/tm/tm-reports/agent-histories/_search`: local minute strings,
/// inclusive at both ends, so the range is `[start minute, end minute + 60 s)`.
pub(crate) async fn agent_histories(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    let q: HistorySearch = match parse_body(&body) {
        Ok(q) => q,
        Err(m) => return envelope_error(400, &m),
    };
    let start = q
        .start_time
        .as_deref()
        .and_then(|s| parse_minute(s, ctx.tz, Edge::Start));
    let end = q
        .end_time
        .as_deref()
        .and_then(|s| parse_minute(s, ctx.tz, Edge::End));
    let (Some(start), Some(end)) = (start, end) else {
        return envelope_error(
            400,
            "startTime and endTime must be \"yyyy-MM-dd HH:mm\" local times",
        );
    };
    let (page_num, size) = match paging(&shared, q.page_num, q.page_size) {
        Ok(p) => p,
        Err(m) => return envelope_error(400, &m),
    };
    let (from, to) = (start.timestamp_millis(), end.timestamp_millis() + 60_000);
    if ctx.faults.broken_overlaps(from, to) {
        return failure(StatusCode::INTERNAL_SERVER_ERROR, 500, BROKEN);
    }
    let (lo, hi) = page_window(page_num, size, ctx.faults.shifting_page_size, shared.seed);
    let agents = shared.dataset.generator().agents();
    let agent_type = q.agent_type.0;
    let wanted = |rec_agent: usize| match &q.agent {
        None => true,
        Some(list) if list.is_empty() => true,
        Some(list) => {
            let a = &agents[rec_agent];
            list.iter().map(|s| s.trim()).any(|s| match agent_type {
                Some(0) => s == a.id,
                Some(1) => s == a.uuid,
                _ => s == a.id || s == a.uuid,
            })
        }
    };
    let in_set = |set: &Option<Vec<Lenient>>, v: u8| match set {
        Some(s) if !s.is_empty() => s.iter().any(|x| x.0 == Some(i64::from(v))),
        _ => true,
    };
    let hours = if to <= from {
        Vec::new()
    } else {
        shared.dataset.hours(from, (to - 1).min(ctx.now_ms))
    };
    let mut total = 0;
    let mut page = Vec::new();
    for rec in hours.iter().flat_map(|h| h.histories.iter()) {
        if rec.start_ms < from
            || rec.start_ms >= to
            || rec.visible_at(&ctx.faults) > ctx.now_ms
            || !wanted(rec.agent)
            || !in_set(&q.login_status, rec.login_status)
            || !in_set(&q.work_status, rec.work_status)
        {
            continue;
        }
        if (lo..hi).contains(&total) {
            page.push(shared.dataset.history_json(rec, ctx.tz));
        }
        total += 1;
    }
    success(
        "AgentHistory",
        HistoryPage {
            curr_page: page_num,
            page_size: size,
            total,
            page_data: page,
        },
    )
}

/// `GET /callservice/v6/cc-audios/recordings/{callID}`: a small deterministic stand-in
/// for the MP3 of an answered, visible call.
pub(crate) async fn recording(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    Path(call_id): Path<String>,
) -> Response {
    let call = shared.dataset.find_call(&call_id);
    let Some(call) = call
        .as_ref()
        .map(|(h, i)| &h.calls[*i])
        .filter(|c| !c.talk.record_url.is_empty() && visible(c, &ctx))
    else {
        return failure(StatusCode::NOT_FOUND, 404, "no recording for this callID");
    };
    // Recordings of calls starting in the broken window fail like their other lookups.
    if in_broken_window(&ctx.faults, call.talk.start_time) {
        return failure(StatusCode::INTERNAL_SERVER_ERROR, 500, BROKEN);
    }
    let mut audio = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
    let mut x = hash(&[shared.seed, tag::CALL, call.talk.start_time as u64]);
    for _ in 0..512 {
        x = super::rng::mix64(x);
        audio.extend_from_slice(&x.to_le_bytes());
    }
    let mut r = Response::new(Body::from(audio));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/mpeg"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_select_half_open_slices() {
        assert_eq!(page_window(1, 10, false, 1), (0, 10));
        assert_eq!(page_window(3, 10, false, 1), (20, 30));
        let short = (1..50)
            .filter(|p| page_window(*p, 10, true, 7).1 - page_window(*p, 10, true, 7).0 == 7);
        assert!(short.count() > 5);
        assert!((1..50).all(|p| page_window(p, 10, true, 7).0 == (p as usize - 1) * 10));
    }
}
