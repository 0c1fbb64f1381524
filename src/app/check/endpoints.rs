//! Which endpoints `check` probes and in what order: every one the enabled pipelines
//! use, once, with the calls a search finds handed to its children and recordings.

use super::failure::{Area, Failure, Row};
use super::output::EndpointResult;
use super::probes::{children, metrics, plans, recording, report, search};
use crate::app::settings::Settings;
use crate::core::error::CommandError;
use crate::core::pipeline::{Catalog, Kind, Pipeline};
use crate::io::api::{ApiClient, Credentials};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// The API document's recordings endpoint: recordings are fetched here on the API host,
/// with the token, by the id at the end of a talk's `recordUrl` (issue 13 part 5).
pub const RECORDINGS_PATH: &str = "/callservice/v6/cc-audios/recordings/{id}";

/// Talks asked for when a recordings pipeline is on: the first talk of a window may be
/// an unanswered call without a recording; twenty make finding one likely and still
/// cost one small request.
const PAGE_FOR_RECORDINGS: u32 = 20;

/// Retries of one probe on a transient failure. `check` answers in seconds: a tenant
/// that fails a request twice in a row is reported, not waited out.
const PROBE_RETRIES: usize = 1;

/// The client for the probes: the tenant's own settings with at most [`PROBE_RETRIES`].
pub(super) fn client(settings: &Settings) -> Result<ApiClient, CommandError> {
    let mut api = settings.api_settings()?;
    api.max_retries = api.max_retries.min(PROBE_RETRIES);
    ApiClient::new(api).map_err(|e| CommandError::Config(e.to_string()))
}

/// The probes of every enabled pipeline, in the order of the module documentation.
pub(super) async fn probe_all(
    client: &ApiClient,
    settings: &Settings,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Vec<EndpointResult> {
    let enabled: Vec<&Pipeline> = catalog.pipelines.values().filter(|p| p.enabled).collect();
    let names = |f: &dyn Fn(&Pipeline) -> bool| -> Vec<String> {
        enabled
            .iter()
            .filter(|p| f(p))
            .map(|p| p.name.clone())
            .collect()
    };
    let mut rows = Vec::new();

    // The token: company credentials ask for one; a ready token is proven by the rest.
    let token = Row {
        endpoint: crate::io::api::TOKEN_ENDPOINT.to_string(),
        pipelines: names(&|_| true),
        area: Area::Token,
    };
    let token_failed = match settings.credentials() {
        Ok(Credentials::Company { .. }) => match client.authenticate().await {
            Ok(()) => {
                rows.push(token.ok(Some("token accepted".into())));
                false
            }
            Err(e) => {
                rows.push(token.failed(&Failure::Api(e), settings));
                true
            }
        },
        _ => {
            rows.push(token.ok(Some(
                "not requested: SOBOT_TOKEN is sent as given; the rows below prove it".into(),
            )));
            false
        }
    };

    // Searches: the enabled ones, and the parents the children and recordings need.
    let dependents = |parent: &str| -> Vec<&Pipeline> {
        enabled
            .iter()
            .copied()
            .filter(|c| {
                matches!(c.kind, Kind::Children | Kind::Recordings)
                    && c.parent.as_deref() == Some(parent)
            })
            .collect()
    };
    let mut searches: Vec<&Pipeline> = catalog
        .pipelines
        .values()
        .filter(|p| p.kind == Kind::Search && (p.enabled || !dependents(&p.name).is_empty()))
        .collect();
    // Parents first, as their children's rows follow them.
    searches.sort_by_key(|p| (dependents(&p.name).is_empty(), p.name.clone()));
    let mut pending: Vec<(Row, Result<Option<String>, Failure>)> = Vec::new();
    for p in searches {
        let kids = dependents(&p.name);
        let mut users = names(&|q| q.kind == Kind::Search && q.endpoint == p.endpoint);
        if users.is_empty() {
            users = kids.iter().map(|k| k.name.clone()).collect();
        }
        let row = Row {
            endpoint: p.endpoint.clone(),
            pipelines: users,
            area: Area::of(p),
        };
        if token_failed {
            pending.push((row, Err(no_token())));
            for k in &kids {
                pending.push((child_row(k), Err(no_token())));
            }
            continue;
        }
        let wants_recording = kids.iter().any(|k| k.kind == Kind::Recordings);
        let size = if wants_recording {
            PAGE_FOR_RECORDINGS
        } else {
            1
        };
        let sample = search(client, p, settings, now, size).await;
        match sample {
            Err(f) => {
                pending.push((row, Err(f)));
                for k in &kids {
                    pending.push((
                        child_row(k),
                        Err(Failure::NotProbed {
                            what: "a call",
                            from: p.endpoint.clone(),
                        }),
                    ));
                }
            }
            Ok(records) => {
                pending.push((row, Ok(None)));
                for k in &kids {
                    let r = match k.kind {
                        Kind::Recordings => recording(client, &records).await,
                        _ => children(client, k, &records).await,
                    };
                    pending.push((child_row(k), r));
                }
            }
        }
    }
    rows.extend(pending.into_iter().map(|(row, r)| row.outcome(r, settings)));

    // Reports, one probe per distinct request, then plans and metrics.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut rest: Vec<&Pipeline> = enabled
        .iter()
        .copied()
        .filter(|p| matches!(p.kind, Kind::Report | Kind::Reference | Kind::Snapshot))
        .collect();
    rest.sort_by_key(|p| (p.kind != Kind::Report, p.kind != Kind::Reference));
    for p in rest {
        let key = format!("{} {:?} {:?}", p.endpoint, p.report, p.filters);
        if let Some(&i) = seen.get(&key) {
            if let Some(r) = rows.get_mut(i) {
                r.pipelines.push(p.name.clone());
            }
            continue;
        }
        let row = Row {
            endpoint: p.endpoint.clone(),
            pipelines: vec![p.name.clone()],
            area: Area::of(p),
        };
        let r = if token_failed {
            Err(no_token())
        } else {
            match p.kind {
                Kind::Report => report(client, p, now).await,
                Kind::Reference => plans(client, p).await,
                _ => metrics(client, p, settings).await,
            }
        };
        seen.insert(key, rows.len());
        rows.push(row.outcome(r, settings));
    }
    rows
}

fn no_token() -> Failure {
    Failure::NotProbed {
        what: "an access token",
        from: crate::io::api::TOKEN_ENDPOINT.to_string(),
    }
}

fn child_row(k: &Pipeline) -> Row {
    Row {
        endpoint: if k.kind == Kind::Recordings {
            RECORDINGS_PATH.to_string()
        } else {
            k.endpoint.clone()
        },
        pipelines: vec![k.name.clone()],
        area: Area::of(k),
    }
}
