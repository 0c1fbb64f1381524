//! Report pipeline files (`kind = "report"`): `pipelines/report_*.toml` -> a validated
//! [`Pipeline`] carrying a [`ReportDef`].
//!
//! A report pipeline has its own, smaller set of keys, because most keys of a search
//! pipeline have no meaning for it: the window is not chosen but follows the report's
//! period (see [`ReportDef::window_grid`]), there is no `time_filter` and no
//! `lookback_secs` (re-reading recent periods is what `report.settle_secs` is for).
//! `[filters]` holds only the report endpoint's own optional parameters (issue 13,
//! `request::filter_keys`): `gatewayNumber`, `numberScope`, `agents`, `agentType`,
//! `departIds`.
//!
//! ```toml
//! name = "report_agents_inbound"
//! kind = "report"
//! table = "report_agents_inbound"          # default: the table CONTRACT section 4 names
//! # endpoint = "/callservice/..."         # default: the family's report endpoint
//! lag_secs = 1800                          # a day is first loaded this long after it ends
//! initial_start = "2024-01-01"
//! schedule = "0 20 * * * *"
//! [report]                                 # see report::spec
//! family = "agents"
//! direction = "inbound"
//! date_type = "day"
//! ```
//!
//! Parsing is pure: no network, no files. Errors name the file and the key.

use super::indicators::CatalogueSource;
use super::period::{DateType, PeriodGrid};
use super::spec::ReportSpec;
use crate::core::pipeline::{Kind, Pipeline, PipelineError, TimeFilter};
use crate::core::schema::TableSchema;
use crate::core::timeutil;
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The nominal `window_secs` of every report pipeline: windows are local days (or, for
/// week and month reports, the period itself), never cut by `window_secs`. Kept at one
/// day so that code reading `Pipeline::window_secs` sees a valid grid value.
pub const REPORT_WINDOW_SECS: u64 = 86_400;

/// Longest accepted `lag_secs`, as for search pipelines.
const MAX_LAG_SECS: u64 = 30 * 86_400;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportFile {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    kind: Kind,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    table: Option<String>,
    lag_secs: u64,
    initial_start: String,
    schedule: String,
    report: toml::Table,
    /// issue 13: the report endpoint's optional request parameters
    /// (`request::filter_keys`), sent with every page.
    #[serde(default)]
    filters: toml::Table,
    /// issue 4: the `/healthz` threshold (docs/observability.md).
    #[serde(default)]
    alert_lag_secs: Option<u64>,
}

fn yes() -> bool {
    true
}

/// What a report pipeline adds to a [`Pipeline`]: the validated `[report]` table and
/// the zone its periods live in (SOBOT_TIMEZONE when the catalogue was loaded).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportDef {
    pub spec: ReportSpec,
    pub tz: Tz,
}

impl ReportDef {
    /// The grid of the report's own periods (half hours, hours, days, weeks, months).
    pub fn period_grid(&self) -> PeriodGrid {
        self.spec.grid(self.tz)
    }

    /// The grid of the pipeline's windows: one local day for half-hour, hour and day
    /// reports (one file per table and `dt`, as CONTRACT section 3 lays out), and the
    /// period itself for week and month reports (a week or month cannot be cut into days
    /// without asking the API for partial periods under their full name; its file lands
    /// in the `dt` of its first day). Either way a window is a whole number of periods,
    /// so the request range is always on the period grid.
    pub fn window_grid(&self) -> PeriodGrid {
        let date_type = match self.spec.date_type {
            DateType::HalfHour | DateType::Hour | DateType::Day => DateType::Day,
            other => other,
        };
        PeriodGrid::new(date_type, self.spec.week_start, self.tz)
    }
}

/// Whether a definition declares `kind = "report"` (read before the search/children
/// reader, whose keys differ).
pub fn declares_report(text: &str) -> bool {
    toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| {
            t.get("kind")
                .and_then(|k| k.as_str())
                .map(|k| k == "report")
        })
        .unwrap_or(false)
}

fn snake_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses and validates a report pipeline against the built-in indicator catalogues.
pub fn parse(text: &str, origin: &str, tz: Tz) -> Result<Pipeline, PipelineError> {
    parse_with(text, origin, tz, &CatalogueSource::BuiltIn)
}

/// Parses and validates a report pipeline. The table schema is built from the spec
/// (`report::table::schema`) and the family's indicator catalogue from `indicators`
/// (`schemas/indicators/<family>.toml`), not from a table schema file.
pub fn parse_with(
    text: &str,
    origin: &str,
    tz: Tz,
    indicators: &CatalogueSource,
) -> Result<Pipeline, PipelineError> {
    let err = |reason: String| PipelineError {
        origin: origin.to_string(),
        reason,
    };
    let f: ReportFile = toml::from_str(text).map_err(|e| err(e.message().trim().to_string()))?;
    if f.kind != Kind::Report {
        return Err(err("kind must be \"report\" for a [report] pipeline".into()));
    }
    if !snake_name(&f.name) {
        return Err(err(format!(
            "name {:?} must be lower-case letters, digits and _",
            f.name
        )));
    }
    let spec = ReportSpec::from_table(&f.report, origin, &|family| indicators.load(family))
        .map_err(|e| err(format!("{}: {}", e.key, e.reason)))?;
    let table = f.table.clone().unwrap_or_else(|| spec.default_table());
    if !snake_name(&table) {
        return Err(err(format!(
            "table {table:?} must be lower-case letters, digits and _"
        )));
    }
    let endpoint = f
        .endpoint
        .clone()
        .unwrap_or_else(|| super::request::endpoint(spec.family).to_string());
    if !endpoint.starts_with('/') {
        return Err(err(format!(
            "endpoint {endpoint:?} must be a path starting with /"
        )));
    }
    if f.lag_secs > MAX_LAG_SECS {
        return Err(err(format!(
            "lag_secs = {} is more than 30 days",
            f.lag_secs
        )));
    }
    let initial_start = timeutil::parse_time(&f.initial_start, tz)
        .map_err(|why| err(format!("initial_start: {why}")))?;
    crate::core::pipeline::check_schedule(&f.schedule).map_err(err)?;
    let schema: TableSchema = super::table::schema(&spec, &table);
    let page_size = spec.page_size;
    let filters = super::request::filters(spec.family, &f.filters)
        .map_err(|why| err(format!("pipeline {}: {why}", f.name)))?;
    Ok(Pipeline {
        name: f.name,
        description: f.description,
        enabled: f.enabled,
        kind: Kind::Report,
        endpoint,
        table,
        schema,
        time_filter: TimeFilter::EpochMs,
        window_secs: REPORT_WINDOW_SECS,
        lag_secs: f.lag_secs,
        lookback_secs: 0,
        initial_start,
        page_size,
        schedule: f.schedule,
        filters,
        parent: None,
        parent_field: None,
        child_concurrency: 1,
        inherit: BTreeMap::new(),
        refetch_within_secs: 0,
        parent_end_field: None,
        report: Some(Box::new(ReportDef { spec, tz })),
        alert_lag_secs: crate::core::pipeline::check_alert_lag(f.alert_lag_secs).map_err(err)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Singapore;

    const BASE: &str = "name = \"r\"\nkind = \"report\"\nlag_secs = 1800\ninitial_start = \"2024-03-01\"\nschedule = \"0 20 * * * *\"\n";

    fn parse_body(extra: &str, report: &str) -> Result<Pipeline, PipelineError> {
        let text = format!("{BASE}{extra}[report]\n{report}");
        parse(&text, "pipelines/r.toml", Singapore)
    }

    #[test]
    fn a_report_file_becomes_a_pipeline_with_its_schema() {
        let p = parse_body(
            "",
            "family = \"agents\"\ndirection = \"status\"\ndate_type = \"half_hour\"\n",
        )
        .unwrap();
        assert_eq!(p.kind, Kind::Report);
        assert_eq!(p.table, "report_agents_status");
        assert_eq!(p.endpoint, "/callservice/tm/tm-reports/agent-table/_search");
        assert_eq!(p.window_secs, REPORT_WINDOW_SECS);
        let def = p.report.as_deref().unwrap();
        assert_eq!(def.window_grid().date_type, DateType::Day);
        assert_eq!(def.period_grid().date_type, DateType::HalfHour);
        let key: Vec<&str> = p
            .schema
            .key
            .iter()
            .map(|&i| p.schema.columns[i].name.as_str())
            .collect();
        assert_eq!(key, ["period_start", "service_id"]);
        assert_eq!(p.schema.time_column().name, "period_start");
        assert!(declares_report(&format!(
            "{BASE}[report]\nfamily = \"agents\"\n"
        )));
        assert!(!declares_report("kind = \"search\"\n"));

        let m = parse_body(
            "table = \"monthly_departments\"\n",
            "family = \"departments\"\ndirection = \"inbound\"\ndate_type = \"month\"\n",
        )
        .unwrap();
        assert_eq!(m.table, "monthly_departments");
        let def = m.report.as_deref().unwrap();
        assert_eq!(def.window_grid().date_type, DateType::Month);
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        for (extra, report, word) in [
            (
                "",
                "family = \"agents\"\ndate_type = \"day\"\n",
                "report.direction",
            ),
            (
                "window_secs = 3600\n",
                "family = \"gateway_numbers\"\ndate_type = \"day\"\n",
                "window_secs",
            ),
            (
                "table = \"Bad\"\n",
                "family = \"gateway_numbers\"\ndate_type = \"day\"\n",
                "table",
            ),
            (
                "endpoint = \"nope\"\n",
                "family = \"gateway_numbers\"\ndate_type = \"day\"\n",
                "endpoint",
            ),
            (
                "",
                "family = \"gateway_numbers\"\ndate_type = \"day\"\npage_size = 0\n",
                "report.page_size",
            ),
        ] {
            let e = parse_body(extra, report).unwrap_err().to_string();
            assert!(e.contains("pipelines/r.toml") && e.contains(word), "{e}");
        }
        let e = parse(
            "name = \"r\"\nkind = \"report\"\nlag_secs = 1\ninitial_start = \"x\"\nschedule = \"0 * * * * *\"\n[report]\nfamily = \"gateway_numbers\"\ndate_type = \"day\"\n",
            "r.toml",
            Singapore,
        )
        .unwrap_err();
        assert!(e.to_string().contains("initial_start"), "{e}");
    }
}

#[cfg(test)]
mod filters {
    use super::*;
    use chrono_tz::Asia::Singapore;

    const HEAD: &str = "name = \"r\"\nkind = \"report\"\nlag_secs = 1800\ninitial_start = \"2024-03-01\"\nschedule = \"0 20 * * * *\"\n";

    fn parse_with_filters(report: &str, filters: &str) -> Result<Pipeline, PipelineError> {
        let text = format!("{HEAD}[report]\n{report}[filters]\n{filters}");
        parse(&text, "pipelines/r.toml", Singapore)
    }

    /// issue 13: each report's documented optional parameters are read into the body's
    /// JSON; wrong keys and types name the key, the pipeline and the file.
    #[test]
    fn report_filters_are_checked_and_typed() {
        let agents = "family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"day\"\n";
        let p = parse_with_filters(agents, "agents = [\"a1\", \"a2\"]\nagentType = 1\n").unwrap();
        assert_eq!(p.filters["agents"], serde_json::json!(["a1", "a2"]));
        assert_eq!(p.filters["agentType"], serde_json::json!(1));
        let g = "family = \"gateway_numbers\"\ndate_type = \"day\"\n";
        let p = parse_with_filters(g, "gatewayNumber = \"0108, 0109\"\nnumberScope = 3\n").unwrap();
        assert_eq!(
            p.filters["gatewayNumber"],
            serde_json::json!(["0108", "0109"])
        );
        assert_eq!(p.filters["numberScope"], serde_json::json!("3"));
        let d = "family = \"departments\"\ndirection = \"outbound\"\ndate_type = \"day\"\n";
        let p = parse_with_filters(d, "departIds = [\"d1\"]\n").unwrap();
        assert_eq!(p.filters["departIds"], serde_json::json!(["d1"]));
        for (report, filters, word) in [
            (
                agents,
                "agentType = 3\nagents = [\"a\"]\n",
                "filters.agentType",
            ),
            (agents, "agentType = 1\n", "set agents too"),
            (agents, "agents = 5\n", "filters.agents"),
            (agents, "agents = [true]\n", "filters.agents"),
            (agents, "departIds = [\"d\"]\n", "filters.departIds"),
            (g, "numberScope = \"x\"\n", "filters.numberScope"),
            (g, "gatewayNumber = []\n", "filters.gatewayNumber"),
            (d, "currPage = 2\n", "filters.currPage"),
        ] {
            let e = parse_with_filters(report, filters).unwrap_err().to_string();
            assert!(
                e.contains(word) && e.contains("pipelines/r.toml") && e.contains("pipeline r"),
                "{filters}: {e}"
            );
        }
    }
}

#[cfg(test)]
mod shipped {
    use crate::core::pipeline::{Catalog, EMBEDDED_PIPELINES, EMBEDDED_SCHEMAS, Kind};
    use crate::core::schema::TableSchema;

    /// The shipped report pipelines parse, fill the tables CONTRACT section 4 names, and
    /// carry every indicator of their report.
    #[test]
    fn shipped_report_pipelines_are_valid() {
        let files: Vec<(String, String)> = EMBEDDED_PIPELINES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let lookup = |name: &str| -> Result<TableSchema, String> {
            let (_, text) = EMBEDDED_SCHEMAS
                .iter()
                .find(|(n, _)| *n == format!("{name}.toml"))
                .ok_or("missing")?;
            TableSchema::parse(text, name).map_err(|e| e.to_string())
        };
        let c =
            Catalog::from_texts(&files, &lookup, chrono_tz::Asia::Singapore, "t".into()).unwrap();
        let mut tables: Vec<&str> = c
            .pipelines
            .values()
            .filter(|p| p.kind == Kind::Report)
            .map(|p| {
                let def = p.report.as_deref().unwrap();
                assert_eq!(p.table, def.spec.default_table());
                assert!(p.enabled);
                p.table.as_str()
            })
            .collect();
        tables.sort_unstable();
        assert_eq!(
            tables,
            [
                "report_agents_inbound",
                "report_agents_outbound",
                "report_agents_status",
                "report_departments_inbound",
                "report_departments_outbound",
                "report_gateway_numbers"
            ]
        );
    }
}
