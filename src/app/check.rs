//! `sobot-sync check` (issue 13 part 8): the first command a new user runs against a
//! real tenant, so its output has to say which setting or permission to fix.
//!
//! Validation first, purely (settings, pipeline definitions and schemas, privacy), then
//! storage (a probe object written and removed, the warehouse listed), then one cheap
//! request to every endpoint the enabled pipelines use, each read the way the pipeline
//! reads it. A settings validation that passes says little about a tenant: the token may
//! lack a permission, one endpoint may answer in a form we do not read. Only a request
//! to each endpoint proves them.
//!
//! The probes, in order: the token; each search (one page of one record over the window
//! the pipeline's next run would load, so that a call to probe its children with is likely
//! to be found); the children of one call of that page (the party list); each report with
//! the parameters its pipeline sends, over one period; the indicator display schemes;
//! the agent metrics; and, when a recordings pipeline is on, one recording of that page.
//! A probe that needs a call and finds none is ok with a note ("no call to probe").
//!
//! Exit status: 2 when the configuration is wrong (nothing is requested then), 1 when
//! storage or any endpoint fails, 0 when all is proven.

use crate::app::settings::Settings;
use crate::core::error::CommandError;
use crate::core::pipeline::{Catalog, Kind, Pipeline, TimeFilter};
use crate::core::record::{Scalar, scalar};
use crate::io::api::{ApiClient, ApiError, Credentials};
use chrono::{DateTime, Duration, Utc};
use object_store::ObjectStoreExt;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

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

/// One step before the endpoints: `settings`, `pipelines`, `privacy`, `storage` or
/// `credentials`.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The tenant (`null` without tenants).
    pub tenant: Option<String>,
    pub check: &'static str,
    pub ok: bool,
    pub detail: Option<String>,
    pub error: Option<String>,
    pub hint: Option<String>,
}

/// What one endpoint's probe proved.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointResult {
    /// The tenant (`null` without tenants).
    pub tenant: Option<String>,
    /// The path as the pipeline files write it (`{callID}` for a call's id).
    pub endpoint: String,
    /// The enabled pipelines that use it.
    pub pipelines: Vec<String>,
    pub ok: bool,
    /// Why an `ok` row proved less than a full answer ("no call to probe").
    pub note: Option<String>,
    /// The error in one line, without secrets.
    pub error: Option<String>,
    /// The setting or permission to fix.
    pub hint: Option<String>,
}

/// The `--json` document: every step and endpoint of every tenant checked.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub checks: Vec<Step>,
    pub endpoints: Vec<EndpointResult>,
}

/// Where lines go: printed as they come, or gathered for one JSON object at the end.
struct Output {
    json: bool,
    report: CheckReport,
}

impl Output {
    fn step(&mut self, step: Step) {
        if !self.json {
            match (&step.ok, &step.error) {
                (true, _) => println!(
                    "ok   {}{}",
                    step.check,
                    step.detail
                        .as_deref()
                        .map_or(String::new(), |d| format!(": {d}"))
                ),
                (false, error) => println!(
                    "FAIL {}: {}{}",
                    step.check,
                    error.as_deref().unwrap_or("failed"),
                    step.hint
                        .as_deref()
                        .map_or(String::new(), |h| format!("; fix: {h}"))
                ),
            }
        }
        self.report.ok &= step.ok;
        self.report.checks.push(step);
    }

    fn endpoints(&mut self, rows: Vec<EndpointResult>) {
        if !self.json {
            print!("{}", render(&rows));
        }
        self.report.ok &= rows.iter().all(|r| r.ok);
        self.report.endpoints.extend(rows);
    }

    fn line(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }

    fn finish(self) -> Result<(), CommandError> {
        if self.json {
            let text = serde_json::to_string_pretty(&self.report)
                .map_err(|e| CommandError::Failed(format!("check --json: {e}")))?;
            println!("{text}");
        }
        Ok(())
    }
}

fn step(tenant: &Option<String>, check: &'static str, detail: String) -> Step {
    Step {
        tenant: tenant.clone(),
        check,
        ok: true,
        detail: Some(detail),
        error: None,
        hint: None,
    }
}

fn failed_step(tenant: &Option<String>, check: &'static str, error: &str, hint: &str) -> Step {
    Step {
        tenant: tenant.clone(),
        check,
        ok: false,
        detail: None,
        error: Some(one_line(error)),
        hint: Some(hint.to_string()),
    }
}

/// `check [--tenant NAME] [--json] [--now TIME]`.
pub async fn run(
    config: Option<&Path>,
    tenant: Option<&str>,
    json: bool,
    now: Option<&str>,
) -> Result<(), CommandError> {
    let mut out = Output {
        json,
        report: CheckReport {
            ok: true,
            checks: Vec::new(),
            endpoints: Vec::new(),
        },
    };
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            out.step(failed_step(
                &None,
                "settings",
                &e.to_string(),
                "fix the setting named in the error",
            ));
            out.finish()?;
            return Err(e.into());
        }
    };
    out.step(step(
        &None,
        "settings",
        config.map_or("environment only".into(), |p| p.display().to_string()),
    ));
    // issue 4: every selected tenant in turn, each proving its own storage and endpoints.
    let selected = match crate::app::tenant::select(&settings, tenant) {
        Ok(s) => s,
        Err(e) => {
            out.step(failed_step(
                &None,
                "settings",
                &e.to_string(),
                "check --tenant",
            ));
            out.finish()?;
            return Err(e);
        }
    };
    if selected.len() == 1 && selected[0].tenant.is_none() {
        let result = check_tenant(&mut out, settings, now).await;
        out.finish()?;
        return result;
    }
    let mut failures = Vec::new();
    for settings in selected {
        let label = crate::app::tenant::label(settings.tenant.as_deref());
        out.line(&format!("---- {}", label.trim_end_matches([':', ' '])));
        if let Err(e) = check_tenant(&mut out, settings, now).await {
            out.line(&format!("FAIL {label}{e}"));
            failures.push(e);
        }
    }
    out.finish()?;
    match failures.len() {
        0 => Ok(()),
        n if failures
            .iter()
            .all(|e| matches!(e, CommandError::Config(_))) =>
        {
            Err(CommandError::Config(format!(
                "{n} tenant(s) failed the check"
            )))
        }
        n => Err(CommandError::Failed(format!(
            "{n} tenant(s) failed the check"
        ))),
    }
}

/// One tenant's settings (or the only settings without tenants): validation, storage,
/// credentials, then every endpoint.
async fn check_tenant(
    out: &mut Output,
    settings: Settings,
    now: Option<&str>,
) -> Result<(), CommandError> {
    let tenant = settings.tenant.clone();
    let config_step = |out: &mut Output, check, e: CommandError| {
        out.step(failed_step(
            &tenant,
            check,
            &e.to_string(),
            "fix the setting or file named in the error",
        ));
        e
    };
    let now = match crate::app::setup::clock(&settings, now) {
        Ok(c) => c.now(),
        Err(e) => return Err(config_step(out, "settings", e)),
    };
    let catalog = match crate::app::setup::load_catalog(&settings) {
        Ok(c) => c,
        Err(e) => return Err(config_step(out, "pipelines", e)),
    };
    out.step(step(
        &tenant,
        "pipelines",
        format!(
            "{} pipeline definitions and their schemas ({}): {}",
            catalog.pipelines.len(),
            catalog.source,
            catalog
                .pipelines
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ));
    if let Err(e) = crate::core::privacy::validate(&catalog, settings.pii_key.as_ref()) {
        return Err(config_step(out, "privacy", e.into()));
    }
    out.step(step(
        &tenant,
        "privacy",
        crate::core::privacy::describe(&catalog, settings.pii_key.as_ref()),
    ));
    let storage = match prove_storage(&settings).await {
        Ok(detail) => {
            out.step(step(&tenant, "storage", detail));
            None
        }
        Err(CommandError::Config(m)) => {
            return Err(config_step(out, "storage", CommandError::Config(m)));
        }
        Err(e) => {
            out.step(failed_step(
                &tenant,
                "storage",
                &e.to_string(),
                "check SOBOT_SYNC_WAREHOUSE and SOBOT_SYNC_STATE, and the storage credentials \
                 (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for s3://): write access is needed",
            ));
            Some(e)
        }
    };
    let client = match client(&settings) {
        Ok(c) => c,
        Err(e) => return Err(config_step(out, "credentials", e)),
    };
    let who = match settings.credentials() {
        Ok(Credentials::Company { app_id, .. }) => format!("company app {app_id}"),
        _ => "the access token in SOBOT_TOKEN".to_string(),
    };
    out.step(step(
        &tenant,
        "credentials",
        format!("{who} at {}", settings.base_url),
    ));
    let mut rows = probe_all(&client, &settings, &catalog, now).await;
    for r in &mut rows {
        r.tenant = tenant.clone();
    }
    let mut failed: Vec<&str> = Vec::new();
    for r in rows.iter().filter(|r| !r.ok) {
        if !failed.contains(&r.endpoint.as_str()) {
            failed.push(&r.endpoint);
        }
    }
    // The first real failure in full: the others are in the table.
    let first = rows
        .iter()
        .find(|r| !r.ok && !r.error.as_deref().is_some_and(not_probed))
        .and_then(|r| r.error.clone());
    let token_error = rows
        .iter()
        .find(|r| !r.ok && r.endpoint == crate::io::api::TOKEN_ENDPOINT)
        .and_then(|r| r.error.clone());
    let message = (!failed.is_empty()).then(|| match &token_error {
        // Nothing else could be asked: the credentials are what to fix.
        Some(e) => format!("API credentials: {e}"),
        None => format!(
            "{} of {} endpoint(s) not proven ({}){}",
            rows.iter().filter(|r| !r.ok).count(),
            rows.len(),
            failed.join(", "),
            first.map_or(String::new(), |e| format!("; first: {e}"))
        ),
    });
    out.endpoints(rows);
    if let Some(message) = message {
        return Err(CommandError::Failed(message));
    }
    match storage {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The client for the probes: the tenant's own settings with at most [`PROBE_RETRIES`].
fn client(settings: &Settings) -> Result<ApiClient, CommandError> {
    let mut api = settings.api_settings()?;
    api.max_retries = api.max_retries.min(PROBE_RETRIES);
    ApiClient::new(api).map_err(|e| CommandError::Config(e.to_string()))
}

/// Writes and removes a probe object where state lives and lists the warehouse.
async fn prove_storage(settings: &Settings) -> Result<String, CommandError> {
    let (warehouse, state) = crate::app::setup::locations(settings)?;
    let probe = state.location().path("_check/probe");
    let store = state.location().store().clone();
    store
        .put(
            &probe,
            bytes::Bytes::from_static(b"sobot-sync check").into(),
        )
        .await
        .map_err(|e| {
            CommandError::Failed(format!(
                "state storage {}: cannot write: {e}",
                state.location().url()
            ))
        })?;
    let _ = store.delete(&probe).await;
    if let Err(e) = warehouse
        .store()
        .list_with_delimiter(Some(warehouse.prefix()))
        .await
    {
        return Err(CommandError::Failed(format!(
            "warehouse {}: cannot list: {e}",
            warehouse.url()
        )));
    }
    Ok(format!(
        "warehouse {} and state {}",
        warehouse.url(),
        state.location().url()
    ))
}

/// What an endpoint serves, for the hints: which permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Token,
    Calls,
    WorkStatus,
    Reports,
    Plans,
    Metrics,
    Recordings,
}

impl Area {
    fn of(p: &Pipeline) -> Area {
        match p.kind {
            Kind::Search if p.endpoint.contains("/agent-histories/") => Area::WorkStatus,
            Kind::Search | Kind::Children => Area::Calls,
            Kind::Report => Area::Reports,
            Kind::Reference => Area::Plans,
            Kind::Snapshot => Area::Metrics,
            Kind::Recordings => Area::Recordings,
        }
    }

    /// What the permission is called, for "the token lacks permission for ...".
    fn permission(self) -> &'static str {
        match self {
            Area::Token => "the token endpoint",
            Area::Calls => "call records (Query Main Talk List)",
            Area::WorkStatus => "agent work-status logs",
            Area::Reports => "Statistical Reports",
            Area::Plans => "Statistical Reports (indicator display schemes)",
            Area::Metrics => "agent monitoring (View Agent Indicator)",
            Area::Recordings => "call recordings",
        }
    }

    /// Where the API document names an "Agent token" (SOBOT_AGENT_TOKEN).
    fn agent_token(self) -> bool {
        matches!(
            self,
            Area::WorkStatus | Area::Reports | Area::Plans | Area::Recordings
        )
    }
}

/// Why a probe did not prove its endpoint.
#[derive(Debug)]
enum Failure {
    Api(ApiError),
    /// A well-formed answer in a shape the pipeline cannot read: field names only.
    Shape(String),
    /// Not requested because what it needed (`what`, from the endpoint `from`) failed.
    NotProbed {
        what: &'static str,
        from: String,
    },
}

const NOT_PROBED: &str = "not probed: ";

fn not_probed(error: &str) -> bool {
    error.starts_with(NOT_PROBED)
}

/// One row waiting for its probe.
struct Row {
    endpoint: String,
    pipelines: Vec<String>,
    area: Area,
}

impl Row {
    fn ok(self, note: Option<String>) -> EndpointResult {
        EndpointResult {
            tenant: None,
            endpoint: self.endpoint,
            pipelines: self.pipelines,
            ok: true,
            note,
            error: None,
            hint: None,
        }
    }

    fn failed(self, failure: &Failure, settings: &Settings) -> EndpointResult {
        let (error, hint) = match failure {
            Failure::Api(e) => (e.to_string(), hint(self.area, e, settings)),
            Failure::Shape(detail) => (
                format!("{}: the answer cannot be read: {detail}", self.endpoint),
                SHAPE_HINT.to_string(),
            ),
            Failure::NotProbed { what, from } => (
                format!("{NOT_PROBED}needs {what} from {from}"),
                format!("fix {from} first"),
            ),
        };
        EndpointResult {
            tenant: None,
            endpoint: self.endpoint,
            pipelines: self.pipelines,
            ok: false,
            note: None,
            error: Some(one_line(&error)),
            hint: Some(hint),
        }
    }

    fn outcome(self, r: Result<Option<String>, Failure>, settings: &Settings) -> EndpointResult {
        match r {
            Ok(note) => self.ok(note),
            Err(f) => self.failed(&f, settings),
        }
    }
}

const SHAPE_HINT: &str =
    "the tenant answers in a form we do not read; report it with `check --json`";

/// The probes of every enabled pipeline, in the order of the module documentation.
async fn probe_all(
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

/// A record of a search page: its scalar fields as text.
type Sample = Vec<HashMap<String, String>>;

/// One page of `size` records of the window the pipeline's next run would load.
async fn search(
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
async fn children(
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
async fn recording(client: &ApiClient, sample: &Sample) -> Result<Option<String>, Failure> {
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
async fn report(
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
async fn plans(client: &ApiClient, p: &Pipeline) -> Result<Option<String>, Failure> {
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
async fn metrics(
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

/// The innermost error of a retried request.
fn root(e: &ApiError) -> &ApiError {
    match e {
        ApiError::Exhausted { last, .. } => root(last),
        other => other,
    }
}

/// The setting or permission to fix, for a failed request to an endpoint of `area`.
fn hint(area: Area, e: &ApiError, settings: &Settings) -> String {
    let static_token = matches!(settings.credentials(), Ok(Credentials::Token(_)));
    let denied = || {
        if area == Area::Token {
            return "check SOBOT_APP_ID and SOBOT_APP_SECRET (or set SOBOT_TOKEN)".to_string();
        }
        let mut h = format!("the token lacks permission for {}", area.permission());
        if area.agent_token() {
            h.push_str("; an agent token may be needed (SOBOT_AGENT_TOKEN)");
        } else if area == Area::Metrics {
            h.push_str(
                "; under a company token set SOBOT_OPERATOR_USER_ID (sent as operatorUserId)",
            );
        } else {
            h.push_str("; ask Sobot to enable this API for the app (SOBOT_APP_ID)");
        }
        if static_token {
            h.push_str("; SOBOT_TOKEN may also have expired: set a fresh one");
        }
        h
    };
    match root(e) {
        ApiError::Auth { .. } => denied(),
        ApiError::Http {
            status: 401 | 403, ..
        } => denied(),
        ApiError::Envelope { code, .. } if matches!(*code, 401 | 403) => denied(),
        ApiError::Http { status: 429, .. } | ApiError::Envelope { code: 429, .. } => format!(
            "the tenant limits the request rate: lower SOBOT_MAX_RPS (now {})",
            settings.max_rps
        ),
        ApiError::Http { status: 404, .. } => format!(
            "the tenant has no such endpoint: check SOBOT_BASE_URL ({}), the API root with no \
             path (e.g. https://sg.sobot.io), and the pipeline file's endpoint",
            settings.base_url
        ),
        ApiError::Http { status, .. } if *status >= 500 => format!(
            "the tenant failed on this endpoint (HTTP {status}); try again later and report \
             it to Sobot if it lasts"
        ),
        ApiError::Transport { .. } => format!(
            "cannot reach the API: check SOBOT_BASE_URL ({}) and that this machine can reach \
             it (proxy, firewall); a slow tenant may need a larger SOBOT_REQUEST_TIMEOUT_SECS",
            settings.base_url
        ),
        ApiError::Envelope { code, .. } if area == Area::Metrics => format!(
            "the tenant refused the request (code {code}); under a company token set \
             SOBOT_OPERATOR_USER_ID (sent as operatorUserId), and check the pipeline's [filters]"
        ),
        ApiError::Envelope { code, .. } => format!(
            "the tenant refused the request (code {code}): check the pipeline file's \
             [filters] or [report] parameters; if they are the shipped ones, report it with \
             `check --json`"
        ),
        ApiError::Config(_) => "fix the setting named in the error".to_string(),
        _ => SHAPE_HINT.to_string(),
    }
}

/// A message on one line (the table has one line per endpoint).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The table: endpoint, pipelines, and `ok` or the error with its fix.
pub fn render(rows: &[EndpointResult]) -> String {
    let pipelines = |r: &EndpointResult| r.pipelines.join(",");
    let w_end = rows
        .iter()
        .map(|r| r.endpoint.len())
        .chain(["ENDPOINT".len()])
        .max()
        .unwrap_or(8);
    let w_pipe = rows
        .iter()
        .map(|r| pipelines(r).len().min(40))
        .chain(["PIPELINES".len()])
        .max()
        .unwrap_or(9);
    let mut out = format!("{:w_end$}  {:w_pipe$}  RESULT\n", "ENDPOINT", "PIPELINES");
    for r in rows {
        let result = match (r.ok, &r.note, &r.error) {
            (true, None, _) => "ok".to_string(),
            (true, Some(note), _) => format!("ok ({note})"),
            (false, _, error) => format!(
                "FAIL {}{}",
                error.as_deref().unwrap_or("failed"),
                r.hint
                    .as_deref()
                    .map_or(String::new(), |h| format!("; fix: {h}"))
            ),
        };
        let mut names = pipelines(r);
        if names.len() > 40 {
            names = format!("({} pipelines)", r.pipelines.len());
        }
        out.push_str(&format!(
            "{:w_end$}  {:w_pipe$}  {result}\n",
            r.endpoint, names
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_folds_newlines() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }

    #[test]
    fn table_rows_say_ok_or_the_error_and_its_fix() {
        let row =
            |endpoint: &str, ok: bool, note: Option<&str>, error: Option<&str>| EndpointResult {
                tenant: None,
                endpoint: endpoint.into(),
                pipelines: vec!["talks".into()],
                ok,
                note: note.map(str::to_string),
                error: error.map(str::to_string),
                hint: error.map(|_| "check SOBOT_BASE_URL".to_string()),
            };
        let text = render(&[
            row("/a", true, None, None),
            row("/bb", true, Some("no call to probe"), None),
            row("/c", false, None, Some("request to /c failed")),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("ENDPOINT"));
        assert!(
            lines[1].starts_with("/a ") && lines[1].ends_with("  ok"),
            "{text}"
        );
        assert!(lines[2].ends_with("ok (no call to probe)"), "{text}");
        assert!(
            lines[3].ends_with("FAIL request to /c failed; fix: check SOBOT_BASE_URL"),
            "{text}"
        );
    }
}
