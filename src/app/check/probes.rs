//! One probe per pipeline kind, each reading its endpoint the way that pipeline reads
//! it, so a pass means the pipeline can run.

use super::failure::Failure;
use crate::app::settings::Settings;
use crate::core::pipeline::{Pipeline, TimeFilter};
use crate::core::record::{Scalar, scalar};
use crate::io::api::ApiClient;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// A record of a search page: its scalar fields as text.
pub(super) type Sample = Vec<HashMap<String, String>>;

/// One page of `size` records of the window the pipeline's next run would load.
pub(super) async fn search(
    client: &ApiClient,
    p: &Pipeline,
    settings: &Settings,
    now: DateTime<Utc>,
    size: u32,
) -> Result<Sample, Failure> {
    let window = i64::try_from(p.window_secs.max(60)).unwrap_or(3600);
    let lag = i64::try_from(p.lag_secs).unwrap_or(0);
    let ready = now.timestamp() - lag;
    let end = DateTime::<Utc>::from_timestamp(ready - ready.rem_euclid(window), 0).unwrap_or(now);
    let start = end - Duration::seconds(window);
    let mut body = p.filters.clone();
    match p.time_filter {
        TimeFilter::EpochMs => {
            body.insert("startTime".into(), start.timestamp_millis().into());
            body.insert("endTime".into(), (end.timestamp_millis() - 1).into());
        }
        TimeFilter::LocalMinute => {
            let tz = settings.timezone;
            let local = |t| crate::core::timeutil::format_local_minute(tz, t);
            body.insert("startTime".into(), local(start).into());
            body.insert("endTime".into(), local(end).into());
        }
    }
    body.insert("pageNum".into(), 1.into());
    body.insert("pageSize".into(), size.into());
    let (text, index) = client
        .post_page(&p.endpoint, &Value::Object(body))
        .await
        .map_err(Failure::Api)?
        .into_parts();
    let page = index.map_err(Failure::Shape)?.into_page(&text);
    if page.total.is_none() {
        return Err(Failure::Shape(
            "no total in data: completeness cannot be checked".into(),
        ));
    }
    Ok(page
        .records
        .iter()
        .map(|r| {
            r.fields
                .iter()
                .filter_map(|(k, v)| text_of(v).map(|v| (k.to_string(), v)))
                .collect()
        })
        .collect())
}

/// A scalar field as text (ids may come as numbers).
fn text_of(raw: &str) -> Option<String> {
    match scalar(raw) {
        Scalar::Str(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Scalar::Num(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The children (party list) of the first call of the sample.
pub(super) async fn children(
    client: &ApiClient,
    k: &Pipeline,
    sample: &Sample,
) -> Result<Option<String>, Failure> {
    let field = k.parent_field.clone().unwrap_or_default();
    let Some(id) = sample.iter().find_map(|r| r.get(&field)) else {
        return Ok(Some("no call to probe in the window searched".into()));
    };
    let path = crate::engine::extract::child_path(&k.endpoint, &field, id);
    let (_, index) = client
        .get_page(&path, &[])
        .await
        .map_err(Failure::Api)?
        .into_parts();
    index.map_err(Failure::Shape)?;
    Ok(None)
}

/// One recording of the sample, fetched as the recordings pipeline fetches it: by the id
/// at the end of its `recordUrl`, through the document's recordings endpoint.
pub(super) async fn recording(
    client: &ApiClient,
    sample: &Sample,
) -> Result<Option<String>, Failure> {
    if sample.is_empty() {
        return Ok(Some("no call to probe in the window searched".into()));
    }
    let Some(url) = sample
        .iter()
        .filter_map(|r| r.get("recordUrl"))
        .find(|u| crate::io::api::recording_id(u).is_some())
    else {
        return Ok(Some("no recording to probe in the window searched".into()));
    };
    client.recording(url).await.map_err(Failure::Api)?;
    Ok(None)
}

/// One report page of one row over the last whole period before `now - lag`, with
/// every parameter the pipeline sends.
pub(super) async fn report(
    client: &ApiClient,
    p: &Pipeline,
    now: DateTime<Utc>,
) -> Result<Option<String>, Failure> {
    let Some(def) = p.report.as_deref() else {
        return Err(Failure::Shape("a report pipeline without [report]".into()));
    };
    let grid = def.period_grid();
    let lag = Duration::seconds(i64::try_from(p.lag_secs).unwrap_or(0));
    let current = grid.period_of(now - lag);
    let last = grid.period_of(current.start - Duration::milliseconds(1));
    let mut body =
        crate::core::report::request::page_body(&def.spec, def.tz, last.start, last.end, 1)
            .map_err(|e| Failure::Shape(e.to_string()))?;
    if let Value::Object(m) = &mut body {
        m.insert("pageSize".into(), 1.into());
    }
    let data = client
        .post(&p.endpoint, &body)
        .await
        .map_err(Failure::Api)?;
    crate::core::report::response::read_page(data).map_err(|e| Failure::Shape(e.to_string()))?;
    Ok(None)
}

/// The indicator display schemes of the first plan type the pipeline asks for.
pub(super) async fn plans(client: &ApiClient, p: &Pipeline) -> Result<Option<String>, Failure> {
    use crate::core::report::request::{PlanType, check_plan_request};
    let request = check_plan_request(Some(PlanType::ALL[0]));
    let query: Vec<(String, String)> = request
        .query
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    let data = client
        .get(&p.endpoint, &query)
        .await
        .map_err(Failure::Api)?;
    crate::core::report::response::read_plans(data).map_err(|e| Failure::Shape(e.to_string()))?;
    Ok(None)
}

/// One agent of View Agent Indicator, with the pipeline's filters.
pub(super) async fn metrics(
    client: &ApiClient,
    p: &Pipeline,
    settings: &Settings,
) -> Result<Option<String>, Failure> {
    // The query is the metrics pipeline's (`snapshots::snapshot`), operator included.
    let mut query = crate::engine::snapshots::snapshot::filter_query(p);
    crate::engine::snapshots::snapshot::push_operator(
        settings.operator_user_id.as_ref(),
        &mut query,
    );
    query.push(("product".into(), "scc".into()));
    query.push(("pageNum".into(), "1".into()));
    query.push(("pageSize".into(), "1".into()));
    let key = uuid::Uuid::new_v4().to_string();
    let raw = client
        .get_raw_with_headers(&p.endpoint, &query, &[("Idempotency-Key", key)])
        .await
        .map_err(Failure::Api)?;
    let data: Map<String, Value> = match serde_json::from_str::<Value>(raw.get()) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(Failure::Shape("data is not an object".into())),
        Err(e) => return Err(Failure::Shape(format!("data cannot be read: {e}"))),
    };
    let metrics = match data.get("agentsMetrics") {
        Some(Value::Object(m)) => m,
        _ => &data,
    };
    let total = crate::engine::snapshots::count_of(metrics.get("total"))
        .ok_or_else(|| Failure::Shape("no total in agentsMetrics".into()))?;
    if total > 0 && crate::engine::snapshots::list_of(metrics).is_none() {
        return Err(Failure::Shape("no list in agentsMetrics".into()));
    }
    Ok(None)
}
