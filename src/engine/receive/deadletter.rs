//! Dead letters: the raw bytes of a push that could not be read, kept in the object
//! store so nothing Sobot sent is lost, at
//! `<warehouse>/_dead_letters/<push>/dt=YYYY-MM-DD/<uuid>.json` (the body exactly as
//! received) and `<uuid>.headers.json` (the request's headers, for a later retry or
//! investigation). The body is written first: it is what matters.

use crate::core::push::PushKind;
use crate::io::store::Location;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use object_store::{ObjectStoreExt, PutPayload};

pub const FOLDER: &str = "_dead_letters";

/// Stores a dead letter; returns the body's path relative to the warehouse.
pub async fn store(
    loc: &Location,
    kind: PushKind,
    body: bytes::Bytes,
    headers: &HeaderMap,
    reason: &str,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<String, String> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dt = now.with_timezone(&tz).date_naive();
    let base = format!(
        "{FOLDER}/{}/{id}",
        crate::core::layout::partition(kind.path(), dt)
    );
    let body_rel = format!("{base}.json");
    loc.store()
        .put(&loc.path(&body_rel), PutPayload::from_bytes(body))
        .await
        .map_err(|e| format!("cannot store dead letter {}: {e}", loc.display(&body_rel)))?;
    let mut shown = serde_json::Map::new();
    for (name, value) in headers {
        shown.insert(
            name.as_str().to_string(),
            serde_json::Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        );
    }
    let meta = serde_json::json!({
        "push": kind.path(),
        "received_at": now.to_rfc3339(),
        "reason": reason,
        "headers": shown,
    });
    let meta_rel = format!("{base}.headers.json");
    loc.store()
        .put(&loc.path(&meta_rel), PutPayload::from(meta.to_string()))
        .await
        .map_err(|e| format!("cannot store dead letter {}: {e}", loc.display(&meta_rel)))?;
    Ok(body_rel)
}
