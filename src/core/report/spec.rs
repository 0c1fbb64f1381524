//! The report part of a pipeline definition: the `[report]` table of
//! `pipelines/report_*.toml`, validated against the indicator catalogue.
//!
//! ```toml
//! [report]
//! family = "agents"          # gateway_numbers | agents | departments
//! direction = "inbound"      # inbound | outbound | status (agents only)
//! date_type = "day"          # half_hour | hour | day | week | month
//! # week_starts = "monday"   # monday | sunday, only with date_type = "week"
//! # dimensions = 9           # default: time + the family's dimension (3 / 9 / 12)
//! # indicators = ["inbound_agent_partits", "inbound_agentTalk_duration"]
//! # settle_secs = 172800     # how long after its end a period may still change
//! # page_size = 100
//! ```
//!
//! Parsing is pure (no network, no files besides what the caller hands in) so `check`
//! can reject a bad definition up front; every error names the file and the key.

use super::indicators::{Catalogue, Direction, Family, Indicator, IndicatorKind};
use super::period::{DateType, PeriodGrid, WeekStart};
use chrono_tz::Tz;
use serde::Deserialize;

/// Default [`ReportSpec::settle_secs`]: two days. Sobot's reports are computed from talks
/// and agent histories that may arrive late (late records, agents logging out after
/// midnight); two days covers what the API document's late-record behaviour and the
/// simulator's fault injection produce, and re-fetching two days of a report is cheap.
pub const DEFAULT_SETTLE_SECS: u64 = 2 * 86_400;

/// Default [`ReportSpec::page_size`]. The API's own default is 15, which makes a day of
/// half hours x agents hundreds of requests; 100 rows is still a small response.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// The longest settle time accepted: a report re-fetched for more than 90 days is a
/// mistake in the file, and it would make every run re-read months.
pub const MAX_SETTLE_SECS: u64 = 90 * 86_400;

/// The `[report]` table as written. Every key is documented on [`ReportSpec`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportTable {
    family: Family,
    #[serde(default)]
    direction: Option<Direction>,
    date_type: DateType,
    #[serde(default)]
    week_starts: Option<WeekStart>,
    #[serde(default)]
    dimensions: Option<u8>,
    #[serde(default)]
    indicators: Option<Vec<String>>,
    #[serde(default)]
    settle_secs: Option<u64>,
    #[serde(default)]
    page_size: Option<u32>,
}

/// A validated report definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSpec {
    pub family: Family,
    /// Which report of the family. Required for agents (inbound, outbound, status: the
    /// API's `agentReportType` 2 / 3 / 4) and departments (inbound, outbound: `callType`
    /// 2 / 3). Optional for gateway numbers: absent, the report covers both directions and
    /// sends no `callType`; present, it becomes the `callType` filter.
    pub direction: Option<Direction>,
    pub date_type: DateType,
    /// First day of a week (`weekType`); Monday unless `week_starts` says otherwise.
    pub week_start: WeekStart,
    /// The API's `dimensions` code. Only codes that include time are accepted, because
    /// every report row is keyed by its period: gateway numbers 1 / 3 / 4, agents 1 / 9 /
    /// 10, departments 1 / 12 / 13 (1 is time alone: one row per period, the dimension
    /// columns stay null).
    pub dimensions: u8,
    /// The indicators asked for (`customerFields`), in catalogue order.
    pub indicators: Vec<Indicator>,
    /// A period stays provisional (re-fetched on every run) until `settle_secs` after its
    /// end; see `report::settle`.
    pub settle_secs: u64,
    /// Rows per page (`pageSize`), 1..=10000.
    pub page_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pipeline {origin}: {key}: {reason}")]
pub struct SpecError {
    /// The pipeline file.
    pub origin: String,
    /// The key at fault, as written in the file (`report.indicators`).
    pub key: String,
    pub reason: String,
}

/// How a report column is typed and filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// TIMESTAMP(ms, UTC) computed from `result_date`: the period's first instant.
    PeriodStart,
    /// TIMESTAMP(ms, UTC) computed from `result_date`: the first instant after the period.
    PeriodEnd,
    /// Text as the API sent it, padding trimmed (`result_date`, dimension values).
    Text,
    /// 64-bit integer from a number or numeric string (counters, durations in seconds).
    Int,
    /// 64-bit float from a number or numeric string (ratios and percentages).
    Float,
    /// TIMESTAMP(ms, UTC) from an indicator value (first login, last logout). The API
    /// document lists these as "Duration" without a format; the converter should accept
    /// epoch milliseconds and local `yyyy-MM-dd HH:mm[:ss]` strings in SOBOT_TIMEZONE.
    Timestamp,
}

impl From<IndicatorKind> for ColumnKind {
    fn from(k: IndicatorKind) -> Self {
        match k {
            IndicatorKind::Counter | IndicatorKind::Duration => Self::Int,
            IndicatorKind::Ratio => Self::Float,
            IndicatorKind::Timestamp => Self::Timestamp,
        }
    }
}

/// One column of a report table: the API field it comes from (for the period columns,
/// `result_date`, which they are computed from), the column name and how it is typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportColumn {
    pub field: String,
    pub name: String,
    pub kind: ColumnKind,
}

fn col(field: &str, name: &str, kind: ColumnKind) -> ReportColumn {
    ReportColumn {
        field: field.to_string(),
        name: name.to_string(),
        kind,
    }
}

/// The dimension columns of a family as `(API field, column)`: the API spells agent and
/// department dimensions in camelCase (`serviceId`), the relay number in snake_case.
pub fn dimension_fields(family: Family) -> &'static [(&'static str, &'static str)] {
    match family {
        Family::GatewayNumbers => &[("gateway_number", "gateway_number")],
        Family::Agents => &[
            ("serviceId", "service_id"),
            ("serviceNo", "service_no"),
            ("serviceName", "service_name"),
        ],
        Family::Departments => &[("departId", "depart_id"), ("departName", "depart_name")],
    }
}

/// The `dimensions` codes of a family that include time, the default first.
fn allowed_dimensions(family: Family) -> [u8; 3] {
    match family {
        Family::GatewayNumbers => [3, 4, 1],
        Family::Agents => [9, 10, 1],
        Family::Departments => [12, 13, 1],
    }
}

/// What each family's `dimensions` codes mean, for error messages.
fn dimension_help(family: Family) -> &'static str {
    match family {
        Family::GatewayNumbers => "1 time, 3 time+relay number, 4 relay number+time",
        Family::Agents => "1 time, 9 time+agent, 10 agent+time",
        Family::Departments => "1 time, 12 time+department, 13 department+time",
    }
}

fn family_name(f: Family) -> &'static str {
    f.file_stem()
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
        Direction::Status => "status",
    }
}

/// A serde error as a [`SpecError`]: toml names the inner key of a bad value on a
/// last line (`... \nin `date_type``); that becomes the key (`report.date_type`).
fn serde_error(origin: &str, shown: &str) -> SpecError {
    let (reason, key) = match shown.trim().rsplit_once("\nin `") {
        Some((reason, rest)) => (reason, format!("report.{}", rest.trim_end_matches('`'))),
        None => (shown, "report".to_string()),
    };
    SpecError {
        origin: origin.to_string(),
        key,
        reason: reason.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

impl ReportSpec {
    /// Validates a `[report]` table. `origin` names the pipeline file in errors;
    /// `catalogue` gives the indicator catalogue of a family (the `schemas/indicators`
    /// file, or [`Catalogue::embedded`]).
    pub fn from_table(
        table: &toml::Table,
        origin: &str,
        catalogue: &dyn Fn(Family) -> Result<Catalogue, String>,
    ) -> Result<Self, SpecError> {
        let err = |key: &str, reason: String| SpecError {
            origin: origin.to_string(),
            key: key.to_string(),
            reason,
        };
        let t: ReportTable = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| serde_error(origin, &e.to_string()))?;
        let family = t.family;
        let fam = family_name(family);

        let direction = match (family, t.direction) {
            (_, Some(Direction::Status)) if family != Family::Agents => {
                return Err(err(
                    "report.direction",
                    format!("\"status\" is only for family = \"agents\", not {fam:?}"),
                ));
            }
            (Family::Agents | Family::Departments, None) => {
                let choices = if family == Family::Agents {
                    "inbound, outbound or status"
                } else {
                    "inbound or outbound"
                };
                return Err(err(
                    "report.direction",
                    format!("required for family = {fam:?}: {choices}"),
                ));
            }
            (_, d) => d,
        };

        if t.week_starts.is_some() && t.date_type != DateType::Week {
            return Err(err(
                "report.week_starts",
                format!(
                    "only with date_type = \"week\", not {:?}",
                    t.date_type.as_str()
                ),
            ));
        }

        let allowed = allowed_dimensions(family);
        let dimensions = t.dimensions.unwrap_or(allowed[0]);
        if !allowed.contains(&dimensions) {
            return Err(err(
                "report.dimensions",
                format!(
                    "{dimensions} is not a {fam} dimension that includes time ({}); rows are keyed by their period",
                    dimension_help(family)
                ),
            ));
        }

        let cat = catalogue(family)
            .map_err(|why| err("report.family", format!("indicator catalogue {fam}: {why}")))?;
        let applies = |i: &Indicator| direction.is_none_or(|d| i.direction == d);
        let indicators: Vec<Indicator> = match &t.indicators {
            None => cat
                .indicators
                .iter()
                .filter(|i| applies(i))
                .cloned()
                .collect(),
            Some(names) => {
                if names.is_empty() {
                    return Err(err(
                        "report.indicators",
                        "is empty: leave it out for every indicator of the report".into(),
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                for name in names {
                    let Some(ind) = cat.get(name) else {
                        return Err(err(
                            "report.indicators",
                            format!(
                                "{name:?} is not in the {fam} indicator catalogue (schemas/indicators/{fam}.toml)"
                            ),
                        ));
                    };
                    if !applies(ind) {
                        return Err(err(
                            "report.indicators",
                            format!(
                                "{name:?} belongs to the {} report, not the {} one",
                                direction_name(ind.direction),
                                direction.map_or("", direction_name)
                            ),
                        ));
                    }
                    if !seen.insert(name.as_str()) {
                        return Err(err(
                            "report.indicators",
                            format!("{name:?} is listed twice"),
                        ));
                    }
                }
                cat.indicators
                    .iter()
                    .filter(|i| seen.contains(i.name.as_str()))
                    .cloned()
                    .collect()
            }
        };
        if indicators.is_empty() {
            return Err(err(
                "report.family",
                format!("the {fam} catalogue has no indicator for this report"),
            ));
        }

        let settle_secs = t.settle_secs.unwrap_or(DEFAULT_SETTLE_SECS);
        if settle_secs > MAX_SETTLE_SECS {
            return Err(err(
                "report.settle_secs",
                format!("{settle_secs} is more than 90 days ({MAX_SETTLE_SECS})"),
            ));
        }
        let page_size = t.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=10_000).contains(&page_size) {
            return Err(err(
                "report.page_size",
                format!("{page_size}: must be 1..=10000"),
            ));
        }

        Ok(Self {
            family,
            direction,
            date_type: t.date_type,
            week_start: t.week_starts.unwrap_or_default(),
            dimensions,
            indicators,
            settle_secs,
            page_size,
        })
    }

    /// Reads the `[report]` table of a whole pipeline file (other keys are the pipeline's
    /// business and ignored here), with the built-in catalogues.
    pub fn from_pipeline_text(text: &str, origin: &str) -> Result<Self, SpecError> {
        let err = |key: &str, reason: String| SpecError {
            origin: origin.to_string(),
            key: key.to_string(),
            reason,
        };
        let doc: toml::Table = toml::from_str(text)
            .map_err(|e: toml::de::Error| err("(file)", e.message().trim().to_string()))?;
        match doc.get("report") {
            Some(toml::Value::Table(t)) => {
                Self::from_table(t, origin, &|f| Ok(Catalogue::embedded(f)))
            }
            Some(_) => Err(err("report", "must be a table ([report])".into())),
            None => Err(err(
                "report",
                "missing: a report pipeline needs a [report] table".into(),
            )),
        }
    }

    /// The period grid of this report in the zone `tz`.
    pub fn grid(&self, tz: Tz) -> PeriodGrid {
        PeriodGrid::new(self.date_type, self.week_start, tz)
    }

    /// `callType` of the request: departments always, gateway numbers when a direction is
    /// chosen; 2 inbound, 3 outbound.
    pub fn call_type(&self) -> Option<u8> {
        if self.family == Family::Agents {
            return None;
        }
        match self.direction {
            Some(Direction::Inbound) => Some(2),
            Some(Direction::Outbound) => Some(3),
            _ => None,
        }
    }

    /// `agentReportType` of an agent report: 2 inbound, 3 outbound, 4 work status.
    pub fn agent_report_type(&self) -> Option<u8> {
        if self.family != Family::Agents {
            return None;
        }
        self.direction.map(|d| match d {
            Direction::Inbound => 2,
            Direction::Outbound => 3,
            Direction::Status => 4,
        })
    }

    /// The table this report fills by default (CONTRACT section 4):
    /// `report_gateway_numbers`, `report_agents_<direction>`, `report_departments_<direction>`.
    pub fn default_table(&self) -> String {
        match (self.family, self.direction) {
            (Family::GatewayNumbers, _) | (_, None) => {
                format!("report_{}", family_name(self.family))
            }
            (f, Some(d)) => format!("report_{}_{}", family_name(f), direction_name(d)),
        }
    }

    /// `customerFields`: the indicator names, comma-joined.
    pub fn customer_fields(&self) -> String {
        self.indicators
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The table's columns, in order: `period_start`, `period_end` (computed from
    /// `result_date`), `result_date` (the raw string), the family's dimension columns, then
    /// one column per indicator, named as the API spells it. The dimension columns are
    /// there whatever `dimensions` says, so that changing it does not change the schema.
    /// The metadata columns (`_extra`, `_errors`, ...) are added by the schema layer.
    pub fn columns(&self) -> Vec<ReportColumn> {
        let mut out = vec![
            col("result_date", "period_start", ColumnKind::PeriodStart),
            col("result_date", "period_end", ColumnKind::PeriodEnd),
            col("result_date", "result_date", ColumnKind::Text),
        ];
        out.extend(
            dimension_fields(self.family)
                .iter()
                .map(|(f, n)| col(f, n, ColumnKind::Text)),
        );
        out.extend(
            self.indicators
                .iter()
                .map(|i| col(&i.name, &i.name, i.kind.into())),
        );
        out
    }

    /// The table key (CONTRACT section 4): `period_start` and the family's identifying
    /// dimension column.
    pub fn key_columns(&self) -> [&'static str; 2] {
        let id = match self.family {
            Family::GatewayNumbers => "gateway_number",
            Family::Agents => "service_id",
            Family::Departments => "depart_id",
        };
        ["period_start", id]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(body: &str) -> Result<ReportSpec, SpecError> {
        let text = format!("name = \"x\"\nwindow_secs = 86400\n[report]\n{body}");
        ReportSpec::from_pipeline_text(&text, "pipelines/x.toml")
    }

    #[test]
    fn defaults_per_family() {
        let a =
            spec("family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"day\"\n").unwrap();
        assert_eq!(a.dimensions, 9);
        assert_eq!(a.indicators.len(), 16);
        assert_eq!(a.settle_secs, DEFAULT_SETTLE_SECS);
        assert_eq!(a.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(a.week_start, WeekStart::Monday);
        assert_eq!((a.agent_report_type(), a.call_type()), (Some(2), None));
        assert_eq!(a.default_table(), "report_agents_inbound");
        assert_eq!(a.key_columns(), ["period_start", "service_id"]);

        let s = spec("family = \"agents\"\ndirection = \"status\"\ndate_type = \"week\"\nweek_starts = \"sunday\"\n").unwrap();
        assert_eq!(s.indicators.len(), 49);
        assert_eq!(s.agent_report_type(), Some(4));
        assert_eq!(s.week_start, WeekStart::Sunday);
        assert_eq!(s.default_table(), "report_agents_status");

        let g = spec("family = \"gateway_numbers\"\ndate_type = \"half_hour\"\n").unwrap();
        assert_eq!((g.dimensions, g.indicators.len()), (3, 30));
        assert_eq!((g.call_type(), g.agent_report_type()), (None, None));
        assert_eq!(g.default_table(), "report_gateway_numbers");
        let gi =
            spec("family = \"gateway_numbers\"\ndirection = \"outbound\"\ndate_type = \"hour\"\n")
                .unwrap();
        assert_eq!(gi.call_type(), Some(3));
        assert!(gi.indicators.iter().all(|i| i.name.starts_with("outbound")));

        let d = spec("family = \"departments\"\ndirection = \"outbound\"\ndate_type = \"month\"\ndimensions = 13\nsettle_secs = 3600\npage_size = 50\n").unwrap();
        assert_eq!(
            (d.dimensions, d.call_type(), d.settle_secs, d.page_size),
            (13, Some(3), 3600, 50)
        );
        assert_eq!(d.indicators.len(), 11);
        assert_eq!(d.default_table(), "report_departments_outbound");
    }

    #[test]
    fn chosen_indicators_keep_catalogue_order_and_columns_are_typed() {
        let a = spec(
            "family = \"agents\"\ndirection = \"status\"\ndate_type = \"day\"\nindicators = [\"agentOnline_percent\", \"agentFirstLogin_timestamp\", \"agent_login_sum_duration\"]\n",
        )
        .unwrap();
        assert_eq!(
            a.customer_fields(),
            "agent_login_sum_duration,agentOnline_percent,agentFirstLogin_timestamp"
        );
        let cols: Vec<(String, String, ColumnKind)> = a
            .columns()
            .into_iter()
            .map(|c| (c.field, c.name, c.kind))
            .collect();
        let want = [
            ("result_date", "period_start", ColumnKind::PeriodStart),
            ("result_date", "period_end", ColumnKind::PeriodEnd),
            ("result_date", "result_date", ColumnKind::Text),
            ("serviceId", "service_id", ColumnKind::Text),
            ("serviceNo", "service_no", ColumnKind::Text),
            ("serviceName", "service_name", ColumnKind::Text),
            (
                "agent_login_sum_duration",
                "agent_login_sum_duration",
                ColumnKind::Int,
            ),
            (
                "agentOnline_percent",
                "agentOnline_percent",
                ColumnKind::Float,
            ),
            (
                "agentFirstLogin_timestamp",
                "agentFirstLogin_timestamp",
                ColumnKind::Timestamp,
            ),
        ];
        let want: Vec<(String, String, ColumnKind)> = want
            .iter()
            .map(|(f, n, k)| (f.to_string(), n.to_string(), *k))
            .collect();
        assert_eq!(cols, want);
        let d = spec("family = \"departments\"\ndirection = \"inbound\"\ndate_type = \"day\"\n")
            .unwrap();
        let names: Vec<String> = d.columns().into_iter().map(|c| c.name).take(5).collect();
        assert_eq!(
            names,
            [
                "period_start",
                "period_end",
                "result_date",
                "depart_id",
                "depart_name"
            ]
        );
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let cases = [
            (
                "family = \"agents\"\ndate_type = \"day\"\n",
                "report.direction",
            ),
            (
                "family = \"departments\"\ndirection = \"status\"\ndate_type = \"day\"\n",
                "report.direction",
            ),
            (
                "family = \"gateway_numbers\"\ndirection = \"status\"\ndate_type = \"day\"\n",
                "report.direction",
            ),
            (
                "family = \"gateway_numbers\"\ndate_type = \"day\"\nweek_starts = \"monday\"\n",
                "report.week_starts",
            ),
            (
                "family = \"gateway_numbers\"\ndate_type = \"day\"\ndimensions = 2\n",
                "report.dimensions",
            ),
            (
                "family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"day\"\ndimensions = 3\n",
                "report.dimensions",
            ),
            (
                "family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"day\"\nindicators = []\n",
                "report.indicators",
            ),
            (
                "family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"day\"\nindicators = [\"outbound_calls\"]\n",
                "report.indicators",
            ),
            (
                "family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"day\"\nindicators = [\"inbound_agent_partits\", \"inbound_agent_partits\"]\n",
                "report.indicators",
            ),
            (
                "family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"day\"\nsettle_secs = 99999999\n",
                "report.settle_secs",
            ),
            (
                "family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"day\"\npage_size = 0\n",
                "report.page_size",
            ),
        ];
        for (body, key) in cases {
            let e = spec(body).unwrap_err();
            assert_eq!(e.key, key, "{body}");
            let shown = e.to_string();
            assert!(
                shown.contains("pipelines/x.toml") && shown.contains(key),
                "{shown}"
            );
        }
        let e = spec("family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"day\"\nindicators = [\"no_such_thing\"]\n").unwrap_err();
        assert!(
            e.to_string().contains("no_such_thing") && e.to_string().contains("agents.toml"),
            "{e}"
        );
        // serde's own errors: the inner key is in the message.
        for (body, word) in [
            (
                "family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"weekly\"\n",
                "date_type",
            ),
            (
                "family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"day\"\nbogus = 1\n",
                "bogus",
            ),
            ("family = \"teams\"\ndate_type = \"day\"\n", "family"),
            ("direction = \"inbound\"\ndate_type = \"day\"\n", "family"),
            (
                "family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"day\"\npage_size = -5\n",
                "page_size",
            ),
        ] {
            let e = spec(body).unwrap_err();
            assert!(
                e.to_string().contains(word) && e.to_string().contains("pipelines/x.toml"),
                "{e}"
            );
            assert!(e.key.starts_with("report"), "{e}");
        }
        let e = spec("family = \"agents\"\ndirection = \"inbound\"\ndate_type = \"weekly\"\n")
            .unwrap_err();
        assert_eq!(e.key, "report.date_type");
        let e = ReportSpec::from_pipeline_text("name = \"x\"\n", "p.toml").unwrap_err();
        assert_eq!(e.key, "report");
        let e = ReportSpec::from_pipeline_text("report = 3\n", "p.toml").unwrap_err();
        assert_eq!(e.key, "report");
        assert!(ReportSpec::from_pipeline_text("[report\n", "p.toml").is_err());
    }

    #[test]
    fn a_custom_catalogue_is_used_and_its_failure_reported() {
        let mut t = toml::Table::new();
        t.insert("family".into(), "gateway_numbers".into());
        t.insert("date_type".into(), "day".into());
        let e = ReportSpec::from_table(&t, "p.toml", &|_| Err("cannot read".into())).unwrap_err();
        assert!(e.reason.contains("cannot read"));
        let small = Catalogue::parse(
            "c",
            "family = \"gateway_numbers\"\n[[indicators]]\nname=\"inbound_calls\"\nlabel=\"In\"\nkind=\"counter\"\ndirection=\"inbound\"\n",
        )
        .unwrap();
        let s = ReportSpec::from_table(&t, "p.toml", &|_| Ok(small.clone())).unwrap();
        assert_eq!(s.customer_fields(), "inbound_calls");
    }
}
