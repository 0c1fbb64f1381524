//! Pipeline definitions (`pipelines/*.toml`) -> validated pipelines.
//!
//! Parsing and validation are pure (no network, no storage) so that `check` and every
//! command reject a bad definition before doing anything, with the file and key named.

use crate::core::report::indicators::CatalogueSource;
use crate::core::schema::TableSchema;
use crate::core::timeutil;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// How a pipeline reads its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A paged `_search` endpoint filtered by a time range.
    Search,
    /// One request per record of a parent `search` pipeline's window (parties per talk).
    Children,
    /// A statistical report, one window per local day (or week / month period), read by
    /// `report::definition` and run by `engine::report`.
    Report,
    // --- issue 3 snapshots (driven by `crate::engine::snapshots`) ---
    /// A small reference list fetched whole and replaced on each run (`indicator_plans`).
    Reference,
    /// A paged live view stored once per interval of `window_secs` (`agent_metrics`).
    Snapshot,
    /// Files named by a parent's records, downloaded into the object store (`recordings`).
    Recordings,
}

/// How a window's range is sent to a search endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFilter {
    /// `startTime`/`endTime` as epoch milliseconds, inclusive at both ends.
    EpochMs,
    /// `startTime`/`endTime` as local `yyyy-MM-dd HH:mm`, inclusive, minute-grained.
    LocalMinute,
}

/// The file as written. Every key is documented in docs/pipelines.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    kind: Kind,
    #[serde(default)] // none for kind = "recordings" (each talk's recordUrl is the source)
    endpoint: String,
    table: String,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    time_filter: Option<TimeFilter>,
    window_secs: u64,
    lag_secs: u64,
    lookback_secs: u64,
    initial_start: String,
    #[serde(default)]
    page_size: Option<u32>,
    schedule: String,
    #[serde(default)]
    filters: toml::Table,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    child_concurrency: Option<usize>,
    #[serde(default)]
    inherit: BTreeMap<String, String>,
    /// issue 15 (children): re-fetch a parent's children on lookback while it ended less
    /// than this long ago.
    #[serde(default)]
    refetch_within_secs: Option<u64>,
    /// issue 15 (children): the parent field saying when a parent ended.
    #[serde(default)]
    parent_end_field: Option<String>,
    /// issue 4: `/healthz` fails when the watermark lags now by more than this.
    #[serde(default)]
    alert_lag_secs: Option<u64>,
}

impl Pipeline {
    /// issue 15: how this `children` pipeline finds its parents in `parent`'s table.
    pub fn link(&self, parent: &Pipeline) -> Result<crate::core::parents::Link, String> {
        crate::core::parents::link(
            self.parent_field.as_deref().unwrap_or_default(),
            &self.inherit,
            self.parent_end_field.as_deref(),
            &parent.schema,
            &self.schema,
        )
    }
}

fn yes() -> bool {
    true
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub kind: Kind,
    pub endpoint: String,
    pub table: String,
    pub schema: TableSchema,
    pub time_filter: TimeFilter,
    pub window_secs: u64,
    pub lag_secs: u64,
    pub lookback_secs: u64,
    pub initial_start: DateTime<Utc>,
    pub page_size: u32,
    pub schedule: String,
    /// Extra request-body fields for search endpoints (`hideNumber = 2`).
    pub filters: serde_json::Map<String, serde_json::Value>,
    /// For `children`: the parent pipeline, the parent field in the endpoint's
    /// `{placeholder}`, and child fields copied from the parent record.
    pub parent: Option<String>,
    pub parent_field: Option<String>,
    pub child_concurrency: usize,
    pub inherit: BTreeMap<String, String>,
    /// issue 15, for `children`: a lookback re-fetches the children of parents that ended
    /// less than this long ago (their legs may still change), besides new and changed
    /// parents. Default [`DEFAULT_REFETCH_WITHIN_SECS`].
    pub refetch_within_secs: u64,
    /// issue 15, for `children`: the parent field holding when a parent ended; `None`:
    /// the parent's time column.
    pub parent_end_field: Option<String>,
    /// For `report`: the validated `[report]` table (`report::definition`).
    pub report: Option<Box<crate::core::report::definition::ReportDef>>,
    /// issue 4: the health threshold on watermark lag; `None`: the default of
    /// `app::health::default_alert_lag_secs`.
    pub alert_lag_secs: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("pipeline {origin}: {reason}")]
pub struct PipelineError {
    pub origin: String,
    pub reason: String,
}

/// issue 15: an hour after a call ends, its legs are final. After-call work and
/// transfers end with the call, and the legs' bill follows within minutes; the default
/// 30-minute lag means a call's legs are first read at least half an hour after it
/// started, so an hour re-reads only calls that were long or still settling then,
/// without re-reading a whole window every run.
pub const DEFAULT_REFETCH_WITHIN_SECS: u64 = 3600;

const RESERVED_FILTERS: &[&str] = &["startTime", "endTime", "pageNum", "pageSize"];

/// issue 4: `alert_lag_secs`, when given, is at least a minute (a smaller threshold
/// would flap between runs) and at most a year.
pub(crate) fn check_alert_lag(v: Option<u64>) -> Result<Option<u64>, String> {
    match v {
        Some(s) if !(60..=366 * 86_400).contains(&s) => Err(format!(
            "alert_lag_secs = {s}: must be 60..=31622400 (a minute to a year)"
        )),
        other => Ok(other),
    }
}

pub(crate) fn check_schedule(s: &str) -> Result<(), String> {
    // issue 4 (daemon): the daemon's own parser, so what loads here is what it schedules.
    crate::core::schedule::parse_schedule(s).map(|_| ())
}

fn to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.iter().map(to_json).collect(),
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

impl Pipeline {
    /// Parses and validates one definition. `schemas` resolves the schema by name.
    pub fn parse(
        text: &str,
        origin: &str,
        tz: Tz,
        schemas: &dyn Fn(&str) -> Result<TableSchema, String>,
    ) -> Result<Self, PipelineError> {
        Self::parse_with(text, origin, tz, schemas, &CatalogueSource::BuiltIn)
    }

    /// [`Pipeline::parse`], with report indicator catalogues from `indicators`.
    pub fn parse_with(
        text: &str,
        origin: &str,
        tz: Tz,
        schemas: &dyn Fn(&str) -> Result<TableSchema, String>,
        indicators: &CatalogueSource,
    ) -> Result<Self, PipelineError> {
        // Report pipelines have their own keys ([report]); see report::definition.
        if crate::core::report::definition::declares_report(text) {
            return crate::core::report::definition::parse_with(text, origin, tz, indicators);
        }
        let err = |reason: String| PipelineError {
            origin: origin.to_string(),
            reason,
        };
        let f: PipelineFile = toml::from_str(text).map_err(|e| err(e.message().to_string()))?;
        if f.name.is_empty()
            || !f
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(err(format!(
                "name {:?} must be lower-case letters, digits and _",
                f.name
            )));
        }
        if !f.endpoint.starts_with('/') && f.kind != Kind::Recordings {
            return Err(err(format!(
                "endpoint {:?} must be a path starting with /",
                f.endpoint
            )));
        }
        if f.window_secs < 60
            || !f.window_secs.is_multiple_of(60)
            || !86_400u64.is_multiple_of(f.window_secs)
        {
            return Err(err(format!(
                "window_secs = {}: must be a whole number of minutes that divides a day (60, 300, 900, 1800, 3600, 7200, 21600, 86400 ...)",
                f.window_secs
            )));
        }
        if f.lookback_secs > 90 * 86_400 {
            return Err(err(format!(
                "lookback_secs = {} is more than 90 days",
                f.lookback_secs
            )));
        }
        if f.lag_secs > 30 * 86_400 {
            return Err(err(format!(
                "lag_secs = {} is more than 30 days",
                f.lag_secs
            )));
        }
        let initial_start = timeutil::parse_time(&f.initial_start, tz)
            .map_err(|why| err(format!("initial_start: {why}")))?;
        check_schedule(&f.schedule).map_err(err)?;
        let schema_name = f.schema.clone().unwrap_or_else(|| f.table.clone());
        let schema =
            schemas(&schema_name).map_err(|why| err(format!("schema {schema_name:?}: {why}")))?;
        if schema.table != f.table {
            return Err(err(format!(
                "table {:?} does not match schema {schema_name:?}, which is for table {:?}",
                f.table, schema.table
            )));
        }
        let mut filters = serde_json::Map::new();
        for (k, v) in &f.filters {
            if RESERVED_FILTERS.contains(&k.as_str()) {
                return Err(err(format!(
                    "filters.{k} is set by the window planner and pager; remove it"
                )));
            }
            filters.insert(k.clone(), to_json(v));
        }
        let (parent, parent_field, time_filter, page_size) = match f.kind {
            Kind::Search => {
                if f.parent.is_some() || f.child_concurrency.is_some() || !f.inherit.is_empty() {
                    return Err(err(
                        "parent, child_concurrency and inherit are only for kind = \"children\""
                            .into(),
                    ));
                }
                check_children_only(&f).map_err(err)?;
                let page_size = f
                    .page_size
                    .ok_or_else(|| err("page_size is required for kind = \"search\"".into()))?;
                if !(1..=10_000).contains(&page_size) {
                    return Err(err(format!("page_size = {page_size}: must be 1..=10000")));
                }
                let tf = f.time_filter.ok_or_else(|| {
                    err(
                        "time_filter is required for kind = \"search\" (epoch_ms or local_minute)"
                            .into(),
                    )
                })?;
                (None, None, tf, page_size)
            }
            Kind::Children => {
                let parent = f
                    .parent
                    .clone()
                    .ok_or_else(|| err("parent is required for kind = \"children\"".into()))?;
                let open = f.endpoint.find('{');
                let close = f.endpoint.find('}');
                let field = match (open, close) {
                    (Some(o), Some(c)) if c > o + 1 && f.endpoint[c + 1..].find('{').is_none() => {
                        f.endpoint[o + 1..c].to_string()
                    }
                    _ => {
                        return Err(err(format!(
                            "endpoint {:?} must hold exactly one {{field}} placeholder for the parent record",
                            f.endpoint
                        )));
                    }
                };
                if f.page_size.is_some() || f.time_filter.is_some() {
                    return Err(err(
                        "page_size and time_filter belong to the parent pipeline".into(),
                    ));
                }
                (Some(parent), Some(field), TimeFilter::EpochMs, 0)
            }
            Kind::Report => {
                return Err(err("kind = \"report\" needs a [report] table".into()));
            }
            Kind::Reference | Kind::Snapshot | Kind::Recordings => {
                check_children_only(&f).map_err(err)?;
                crate::core::snapshot_definition::check_definition(
                    &crate::core::snapshot_definition::DefinitionView {
                        kind: f.kind,
                        endpoint: &f.endpoint,
                        parent: f.parent.as_deref(),
                        page_size: f.page_size,
                        has_time_filter: f.time_filter.is_some(),
                        filter_keys: f.filters.keys().map(String::as_str).collect(),
                        has_inherit: !f.inherit.is_empty(),
                        has_child_concurrency: f.child_concurrency.is_some(),
                        lag_secs: f.lag_secs,
                        lookback_secs: f.lookback_secs,
                    },
                )
                .map_err(err)?
            }
        };
        let child_concurrency = f.child_concurrency.unwrap_or(8);
        if !(1..=256).contains(&child_concurrency) {
            return Err(err(format!(
                "child_concurrency = {child_concurrency}: must be 1..=256"
            )));
        }
        Ok(Self {
            name: f.name,
            description: f.description,
            enabled: f.enabled,
            kind: f.kind,
            endpoint: f.endpoint,
            table: f.table,
            schema,
            time_filter,
            window_secs: f.window_secs,
            lag_secs: f.lag_secs,
            lookback_secs: f.lookback_secs,
            initial_start,
            page_size,
            schedule: f.schedule,
            filters,
            parent,
            parent_field,
            child_concurrency,
            inherit: f.inherit,
            refetch_within_secs: match f.refetch_within_secs {
                Some(s) if s > 7 * 86_400 => {
                    return Err(err(format!(
                        "refetch_within_secs = {s}: must be 0..=604800 (at most a week)"
                    )));
                }
                Some(s) => s,
                None => DEFAULT_REFETCH_WITHIN_SECS,
            },
            parent_end_field: f.parent_end_field,
            report: None,
            alert_lag_secs: check_alert_lag(f.alert_lag_secs).map_err(err)?,
        })
    }
}

/// issue 15: the keys that only a `children` pipeline reads.
fn check_children_only(f: &PipelineFile) -> Result<(), String> {
    if f.refetch_within_secs.is_some() || f.parent_end_field.is_some() {
        return Err(format!(
            "refetch_within_secs and parent_end_field are only for kind = \"children\" (this is {:?})",
            f.kind
        ));
    }
    Ok(())
}

/// The default pipeline and schema files, compiled in so that `demo` and a bare binary
/// work without the repository checked out.
pub const EMBEDDED_PIPELINES: &[(&str, &str)] = &[
    ("talks.toml", include_str!("../../pipelines/talks.toml")),
    ("parties.toml", include_str!("../../pipelines/parties.toml")),
    (
        "agent_histories.toml",
        include_str!("../../pipelines/agent_histories.toml"),
    ),
    // Report pipelines (kind = "report"; report::definition).
    (
        "report_gateway_numbers.toml",
        include_str!("../../pipelines/report_gateway_numbers.toml"),
    ),
    (
        "report_agents_inbound.toml",
        include_str!("../../pipelines/report_agents_inbound.toml"),
    ),
    (
        "report_agents_outbound.toml",
        include_str!("../../pipelines/report_agents_outbound.toml"),
    ),
    (
        "report_agents_status.toml",
        include_str!("../../pipelines/report_agents_status.toml"),
    ),
    (
        "report_departments_inbound.toml",
        include_str!("../../pipelines/report_departments_inbound.toml"),
    ),
    (
        "report_departments_outbound.toml",
        include_str!("../../pipelines/report_departments_outbound.toml"),
    ),
    // issue 3 snapshots
    (
        "indicator_plans.toml",
        include_str!("../../pipelines/indicator_plans.toml"),
    ),
    (
        "agent_metrics.toml",
        include_str!("../../pipelines/agent_metrics.toml"),
    ),
    (
        "recordings.toml",
        include_str!("../../pipelines/recordings.toml"),
    ),
];

pub const EMBEDDED_SCHEMAS: &[(&str, &str)] = &[
    ("talks.toml", include_str!("../../schemas/talks.toml")),
    ("parties.toml", include_str!("../../schemas/parties.toml")),
    (
        "agent_histories.toml",
        include_str!("../../schemas/agent_histories.toml"),
    ),
    // issue 3 snapshots
    (
        "indicator_plans.toml",
        include_str!("../../schemas/indicator_plans.toml"),
    ),
    (
        "agent_metrics.toml",
        include_str!("../../schemas/agent_metrics.toml"),
    ),
    (
        "recordings.toml",
        include_str!("../../schemas/recordings.toml"),
    ),
];

/// Every pipeline, validated together (parents exist, tables are not shared).
#[derive(Debug, Clone)]
pub struct Catalog {
    pub pipelines: BTreeMap<String, Pipeline>,
    /// Where the definitions came from, for messages.
    pub source: String,
}

/// The embedded files as `(origin, text)`, and the source shown in messages.
fn embedded_files(embedded: &[(&str, &str)]) -> (Vec<(String, String)>, String) {
    (
        embedded
            .iter()
            .map(|(n, t)| (format!("(built-in) {n}"), t.to_string()))
            .collect(),
        "built-in defaults".into(),
    )
}

/// Reads `*.toml` from a folder, or the embedded files when the folder does not exist.
/// issue 13: a folder named by a setting is checked to exist when the settings are read
/// (`settings`), so the embedded files serve only the unset, absent default folder.
fn read_folder(
    dir: &Path,
    embedded: &[(&str, &str)],
) -> Result<(Vec<(String, String)>, String), PipelineError> {
    if !dir.exists() {
        return Ok(embedded_files(embedded));
    }
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| PipelineError {
        origin: shown.clone(),
        reason: format!("cannot read folder: {e}"),
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PipelineError {
            origin: shown.clone(),
            reason: format!("cannot read folder: {e}"),
        })?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| PipelineError {
            origin: path.display().to_string(),
            reason: format!("cannot read: {e}"),
        })?;
        files.push((path.display().to_string(), text));
    }
    files.sort();
    Ok((files, shown))
}

impl Catalog {
    pub fn load(pipelines_dir: &Path, schemas_dir: &Path, tz: Tz) -> Result<Self, PipelineError> {
        let (schema_files, _) = read_folder(schemas_dir, EMBEDDED_SCHEMAS)?;
        let (pipeline_files, source) = read_folder(pipelines_dir, EMBEDDED_PIPELINES)?;
        // Indicator catalogues follow the schemas folder (report::indicators).
        let indicators = CatalogueSource::for_schemas_dir(schemas_dir);
        Self::from_files(&pipeline_files, &schema_files, &indicators, tz, source)
    }

    /// Pipeline files validated against schema files, both as `(origin, text)`.
    fn from_files(
        pipeline_files: &[(String, String)],
        schema_files: &[(String, String)],
        indicators: &CatalogueSource,
        tz: Tz,
        source: String,
    ) -> Result<Self, PipelineError> {
        let lookup = |name: &str| -> Result<TableSchema, String> {
            let wanted = format!("{name}.toml");
            let (origin, text) = schema_files
                .iter()
                .find(|(o, _)| {
                    o.ends_with(&format!("/{wanted}"))
                        || o.ends_with(&format!(" {wanted}"))
                        || *o == wanted
                })
                .ok_or_else(|| format!("no file {wanted} among the schemas"))?;
            TableSchema::parse(text, origin).map_err(|e| e.to_string())
        };
        Self::from_texts_with(pipeline_files, &lookup, indicators, tz, source)
    }

    /// issue 13: the catalogue of the built-in definitions and schemas alone, whatever
    /// folders exist (tests, and what `load` gives when no folder is there).
    pub fn built_in(tz: Tz) -> Result<Self, PipelineError> {
        let (schema_files, _) = embedded_files(EMBEDDED_SCHEMAS);
        let (pipeline_files, source) = embedded_files(EMBEDDED_PIPELINES);
        Self::from_files(
            &pipeline_files,
            &schema_files,
            &CatalogueSource::BuiltIn,
            tz,
            source,
        )
    }

    pub fn from_texts(
        files: &[(String, String)],
        schemas: &dyn Fn(&str) -> Result<TableSchema, String>,
        tz: Tz,
        source: String,
    ) -> Result<Self, PipelineError> {
        Self::from_texts_with(files, schemas, &CatalogueSource::BuiltIn, tz, source)
    }

    /// [`Catalog::from_texts`], with report indicator catalogues from `indicators`.
    pub fn from_texts_with(
        files: &[(String, String)],
        schemas: &dyn Fn(&str) -> Result<TableSchema, String>,
        indicators: &CatalogueSource,
        tz: Tz,
        source: String,
    ) -> Result<Self, PipelineError> {
        let mut pipelines = BTreeMap::new();
        let mut tables: BTreeMap<String, String> = BTreeMap::new();
        // Which file defined each pipeline, so cross-file errors name the file to edit.
        let mut origins: BTreeMap<String, String> = BTreeMap::new();
        for (origin, text) in files {
            let p = Pipeline::parse_with(text, origin, tz, schemas, indicators)?;
            origins.insert(p.name.clone(), origin.clone());
            if let Some(other) = tables.insert(p.table.clone(), p.name.clone()) {
                return Err(PipelineError {
                    origin: origin.clone(),
                    reason: format!(
                        "table {:?} is already written by pipeline {other:?}",
                        p.table
                    ),
                });
            }
            if pipelines.contains_key(&p.name) {
                return Err(PipelineError {
                    origin: origin.clone(),
                    reason: format!("a pipeline named {:?} is defined twice", p.name),
                });
            }
            pipelines.insert(p.name.clone(), p);
        }
        if pipelines.is_empty() {
            return Err(PipelineError {
                origin: source,
                reason: "no pipeline definitions (*.toml) found".into(),
            });
        }
        for p in pipelines.values() {
            if let Some(parent) = &p.parent {
                let origin = origins
                    .get(&p.name)
                    .cloned()
                    .unwrap_or_else(|| p.name.clone());
                match pipelines.get(parent) {
                    Some(pp) if pp.kind == Kind::Search => {
                        if p.kind == Kind::Children {
                            p.link(pp)
                                .map_err(|reason| PipelineError { origin, reason })?;
                        }
                    }
                    Some(_) => {
                        return Err(PipelineError {
                            origin,
                            reason: format!("parent {parent:?} must be a search pipeline"),
                        });
                    }
                    None => {
                        return Err(PipelineError {
                            origin,
                            reason: format!("parent {parent:?} is not a defined pipeline"),
                        });
                    }
                }
            }
        }
        Ok(Self { pipelines, source })
    }

    pub fn get(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines.get(name)
    }

    /// The pipelines a command names, or every enabled one; unknown names are errors.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Pipeline>, String> {
        if names.is_empty() {
            return Ok(self.pipelines.values().filter(|p| p.enabled).collect());
        }
        names
            .iter()
            .map(|n| {
                self.pipelines.get(n).ok_or_else(|| {
                    let known: Vec<&str> = self.pipelines.keys().map(String::as_str).collect();
                    format!("unknown pipeline {n:?}; defined: {}", known.join(", "))
                })
            })
            .collect()
    }
}
