//! Request bodies for the report endpoints and the indicator-scheme query.
//!
//! # The range and `24:00`
//!
//! A report request names a local range with `startDate`/`startTime` and
//! `endDate`/`endTime`. The API document's own example for a whole day is
//! `startDate 2021-01-01, startTime 00:00, endDate 2021-01-01, endTime 24:00`: the end is
//! the *end* of the range, and midnight at the end of a day is written `24:00` of that
//! day, not `00:00` of the next. So a range `[from, to)` aligned to the period grid is sent
//! as its first label and its end label, the end label at midnight becoming `24:00` of
//! the day before. This also reads correctly if the API filters day, week and month
//! reports by date only and inclusively: `endDate` is the last day wanted, never the day
//! after it.
//!
//! Whether the API treats a mid-day `endTime` as inclusive (returning the period that
//! starts at `endTime` as well) is not documented. The caller therefore keeps only the
//! rows whose parsed period lies inside `[from, to)` ([`wanted`]), as CONTRACT section 5
//! asks of every window.

use super::indicators::Family;
use super::period::{Period, PeriodGrid, end_of_range};
use super::spec::ReportSpec;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

/// The report endpoint of a family (paths of the API document, appended to
/// `SOBOT_BASE_URL`). All are `POST` with a JSON body.
pub fn endpoint(family: Family) -> &'static str {
    match family {
        Family::GatewayNumbers => "/callservice/tm/tm-reports/gateway-number-table/_search",
        Family::Agents => "/callservice/tm/tm-reports/agent-table/_search",
        Family::Departments => "/callservice/tm/tm-reports/depart-table/_search",
    }
}

/// Get All Indicator Display Schemes (`GET`, query `planType`).
pub const CHECK_PLAN_PATH: &str = "/callservice/tm/tm-reports/gateway_number/check_plan";

/// The `planType` of an indicator display scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanType {
    TalkRecord,
    RelayNumberReport,
    AgentReport,
    DepartmentReport,
}

impl PlanType {
    pub const ALL: [PlanType; 4] = [
        Self::TalkRecord,
        Self::RelayNumberReport,
        Self::AgentReport,
        Self::DepartmentReport,
    ];

    /// 1 talk record, 2 relay number report, 4 agent report, 24 department report.
    pub fn code(self) -> u8 {
        match self {
            Self::TalkRecord => 1,
            Self::RelayNumberReport => 2,
            Self::AgentReport => 4,
            Self::DepartmentReport => 24,
        }
    }

    pub fn for_family(family: Family) -> Self {
        match family {
            Family::GatewayNumbers => Self::RelayNumberReport,
            Family::Agents => Self::AgentReport,
            Family::Departments => Self::DepartmentReport,
        }
    }
}

/// A `GET` request: path and query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRequest {
    pub path: &'static str,
    pub query: Vec<(&'static str, String)>,
}

/// The indicator-scheme query; `None` asks for every plan type (the parameter is
/// optional in the API document).
pub fn check_plan_request(plan_type: Option<PlanType>) -> GetRequest {
    GetRequest {
        path: CHECK_PLAN_PATH,
        query: plan_type
            .map(|p| vec![("planType", p.code().to_string())])
            .unwrap_or_default(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("report request: {0}")]
pub struct RequestError(pub String);

/// A range in the API's local terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRange {
    pub start_date: NaiveDate,
    /// `HH:mm`.
    pub start_time: String,
    pub end_date: NaiveDate,
    /// `HH:mm`, `24:00` when the range ends at midnight.
    pub end_time: String,
}

/// `[from, to)` as the API's local range. Both ends must be period boundaries of
/// `grid`: a range cut inside a period would make the API return a partial period under
/// the period's full name.
pub fn local_range(
    grid: &PeriodGrid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<LocalRange, RequestError> {
    if from >= to {
        return Err(RequestError(format!(
            "empty range {} .. {}",
            from.to_rfc3339(),
            to.to_rfc3339()
        )));
    }
    for (what, t) in [("start", from), ("end", to)] {
        if !grid.is_boundary(t) {
            return Err(RequestError(format!(
                "range {what} {} is not the start of a {} period in {}; the period there starts at {}",
                t.to_rfc3339(),
                grid.date_type,
                grid.tz,
                grid.period_of(t).start.to_rfc3339()
            )));
        }
    }
    let start = grid.boundary_label(from);
    let (end_date, end_time) = end_of_range(grid.boundary_label(to));
    Ok(LocalRange {
        start_date: start.date(),
        start_time: start.format("%H:%M").to_string(),
        end_date,
        end_time,
    })
}

/// The JSON body of page `curr_page` (from 1) of the report `spec` over `[from, to)` in
/// the zone `tz` (which must also go in the `timezoneid` header).
///
/// `weekType` goes with every week report: the API document lists it only for the relay
/// number report, but the agent and department reports take the same `dateType` 14, and
/// sending the week's first day explicitly is what makes their `result_date` match the
/// grid; a server that does not know the field ignores it.
pub fn page_body(
    spec: &ReportSpec,
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    curr_page: u32,
) -> Result<Value, RequestError> {
    if curr_page == 0 {
        return Err(RequestError("currPage starts at 1".into()));
    }
    let range = local_range(&spec.grid(tz), from, to)?;
    let mut body = Map::new();
    body.insert("dimensions".into(), json!(spec.dimensions));
    body.insert("dateType".into(), json!(spec.date_type.code()));
    if spec.date_type == super::period::DateType::Week {
        body.insert("weekType".into(), json!(spec.week_start.code()));
    }
    body.insert("startDate".into(), json!(range.start_date.to_string()));
    body.insert("startTime".into(), json!(range.start_time));
    body.insert("endDate".into(), json!(range.end_date.to_string()));
    body.insert("endTime".into(), json!(range.end_time));
    if let Some(c) = spec.call_type() {
        body.insert("callType".into(), json!(c));
    }
    if let Some(a) = spec.agent_report_type() {
        body.insert("agentReportType".into(), json!(a));
    }
    body.insert("customerFields".into(), json!(spec.customer_fields()));
    body.insert("currPage".into(), json!(curr_page));
    body.insert("pageSize".into(), json!(spec.page_size));
    Ok(Value::Object(body))
}

/// issue 13: the report endpoints' optional request parameters a pipeline file may set
/// under `[filters]`, by family, as the API document lists them: the Relay Number
/// Report's `gatewayNumber` (a list of numbers) and `numberScope` (2 telemarketing, 3
/// bot), the Agent Report's `agents` (a list) and `agentType` (1 agent id, 2 work no.),
/// the Department Report's `departIds` (a list). Everything else in the body is the
/// pipeline's own (range, paging, indicators, direction) and cannot be set here.
pub fn filter_keys(family: Family) -> &'static [&'static str] {
    match family {
        Family::GatewayNumbers => &["gatewayNumber", "numberScope"],
        Family::Agents => &["agents", "agentType"],
        Family::Departments => &["departIds"],
    }
}

/// issue 13: checks a report pipeline's `[filters]` and returns them as the JSON the
/// body carries. Lists are lists of text (a single text is split at commas); numbers
/// are checked against the values the document gives. Errors name the key.
pub fn filters(family: Family, table: &toml::Table) -> Result<Map<String, Value>, String> {
    let allowed = filter_keys(family);
    let mut out = Map::new();
    for (key, value) in table {
        if !allowed.contains(&key.as_str()) {
            return Err(format!(
                "filters.{key} is not a request parameter of the {} report (it takes {})",
                family.file_stem(),
                allowed.join(", ")
            ));
        }
        let list = |v: &toml::Value| -> Result<Value, String> {
            let items: Vec<String> = match v {
                toml::Value::String(s) => s
                    .split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect(),
                toml::Value::Array(a) => a
                    .iter()
                    .map(|x| match x {
                        toml::Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                        toml::Value::Integer(n) => Ok(n.to_string()),
                        _ => Err(format!(
                            "filters.{key} must be a list of non-empty texts, and holds a {}",
                            x.type_str()
                        )),
                    })
                    .collect::<Result<_, _>>()?,
                other => {
                    return Err(format!(
                        "filters.{key} must be a list of texts, not a {}",
                        other.type_str()
                    ));
                }
            };
            if items.is_empty() {
                return Err(format!(
                    "filters.{key} is empty; leave it out to ask for all"
                ));
            }
            Ok(Value::from(items))
        };
        let code = |v: &toml::Value, ok: &[i64], what: &str| -> Result<i64, String> {
            let n = match v {
                toml::Value::Integer(n) => Some(*n),
                toml::Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            n.filter(|n| ok.contains(n))
                .ok_or_else(|| format!("filters.{key} must be {what}, got {v}"))
        };
        let json = match key.as_str() {
            "gatewayNumber" | "agents" | "departIds" => list(value)?,
            // The document types it as text.
            "numberScope" => {
                Value::from(code(value, &[2, 3], "2 (telemarketing) or 3 (bot)")?.to_string())
            }
            "agentType" => Value::from(code(value, &[1, 2], "1 (agent id) or 2 (work no.)")?),
            _ => continue,
        };
        out.insert(key.clone(), json);
    }
    if family == Family::Agents && out.contains_key("agentType") && !out.contains_key("agents") {
        return Err("filters.agentType says how filters.agents is read; set agents too".into());
    }
    Ok(out)
}

/// issue 13: puts a report pipeline's `[filters]` into a page body.
pub fn apply_filters(body: &mut Value, filters: &Map<String, Value>) {
    if let Value::Object(m) = body {
        for (k, v) in filters {
            m.insert(k.clone(), v.clone());
        }
    }
}

/// Whether a row's period belongs to the window `[from, to)`: rows the API returns around
/// the edges of the range are dropped by the caller (see the module documentation).
pub fn wanted(period: &Period, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    from <= period.start && period.end <= to
}

/// How many pages `total` rows take at `page_size` rows a page (at least 1: the first
/// page is always read, it carries `total`).
pub fn page_count(total: u64, page_size: u32) -> u64 {
    total.div_ceil(u64::from(page_size.max(1))).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::report::period::{DateType, WeekStart};
    use chrono_tz::America::New_York;
    use chrono_tz::Asia::Singapore;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(body: &str) -> ReportSpec {
        ReportSpec::from_pipeline_text(&format!("[report]\n{body}"), "p.toml").unwrap()
    }

    #[test]
    fn agent_day_body() {
        let s = spec(
            "family = \"agents\"\ndirection = \"outbound\"\ndate_type = \"day\"\nindicators = [\"outbound_calls\", \"outbound_answer_ratio\"]\npage_size = 50\n",
        );
        let body = page_body(
            &s,
            Singapore,
            t("2024-02-21T00:00:00+08:00"),
            t("2024-02-23T00:00:00+08:00"),
            3,
        )
        .unwrap();
        assert_eq!(
            body,
            json!({
                "dimensions": 9, "dateType": 13,
                "startDate": "2024-02-21", "startTime": "00:00",
                "endDate": "2024-02-22", "endTime": "24:00",
                "agentReportType": 3,
                "customerFields": "outbound_calls,outbound_answer_ratio",
                "currPage": 3, "pageSize": 50
            })
        );
        assert_eq!(
            endpoint(s.family),
            "/callservice/tm/tm-reports/agent-table/_search"
        );
    }

    #[test]
    fn half_hours_weeks_and_call_types() {
        let g = spec(
            "family = \"gateway_numbers\"\ndirection = \"inbound\"\ndate_type = \"half_hour\"\n",
        );
        let body = page_body(
            &g,
            Singapore,
            t("2024-02-21T16:30:00+08:00"),
            t("2024-02-21T18:00:00+08:00"),
            1,
        )
        .unwrap();
        assert_eq!(body["startTime"], "16:30");
        assert_eq!(
            (body["endDate"].as_str(), body["endTime"].as_str()),
            (Some("2024-02-21"), Some("18:00"))
        );
        assert_eq!(
            (
                body["callType"].as_u64(),
                body["dateType"].as_u64(),
                body["dimensions"].as_u64()
            ),
            (Some(2), Some(11), Some(3))
        );
        assert!(body.get("weekType").is_none() && body.get("agentReportType").is_none());
        assert_eq!(
            body["customerFields"].as_str().unwrap().split(',').count(),
            16
        );
        let both = spec("family = \"gateway_numbers\"\ndate_type = \"hour\"\n");
        let body = page_body(
            &both,
            Singapore,
            t("2024-02-21T23:00:00+08:00"),
            t("2024-02-22T00:00:00+08:00"),
            1,
        )
        .unwrap();
        assert!(body.get("callType").is_none());
        assert_eq!(
            (body["endDate"].as_str(), body["endTime"].as_str()),
            (Some("2024-02-21"), Some("24:00"))
        );

        let w = spec(
            "family = \"departments\"\ndirection = \"inbound\"\ndate_type = \"week\"\nweek_starts = \"sunday\"\n",
        );
        let body = page_body(
            &w,
            Singapore,
            t("2024-02-18T00:00:00+08:00"),
            t("2024-03-03T00:00:00+08:00"),
            1,
        )
        .unwrap();
        assert_eq!(
            (
                body["weekType"].as_u64(),
                body["dateType"].as_u64(),
                body["callType"].as_u64()
            ),
            (Some(1), Some(14), Some(2))
        );
        assert_eq!(
            (body["startDate"].as_str(), body["endDate"].as_str()),
            (Some("2024-02-18"), Some("2024-03-02"))
        );
        assert_eq!(
            endpoint(w.family),
            "/callservice/tm/tm-reports/depart-table/_search"
        );
        assert_eq!(
            endpoint(Family::GatewayNumbers),
            "/callservice/tm/tm-reports/gateway-number-table/_search"
        );
    }

    #[test]
    fn unaligned_or_empty_ranges_are_refused() {
        let d = spec("family = \"agents\"\ndirection = \"status\"\ndate_type = \"day\"\n");
        let a = t("2024-02-21T00:00:00+08:00");
        let e = page_body(
            &d,
            Singapore,
            a + chrono::Duration::hours(1),
            a + chrono::Duration::days(1),
            1,
        )
        .unwrap_err();
        assert!(
            e.0.contains("range start") && e.0.contains("not the start of a day period"),
            "{e}"
        );
        assert!(
            e.0.contains("2024-02-20T16:00:00+00:00"),
            "names the period start: {e}"
        );
        assert!(page_body(&d, Singapore, a, a, 1).is_err());
        assert!(page_body(&d, Singapore, a, a + chrono::Duration::days(1), 0).is_err());
    }

    #[test]
    fn dst_days_use_local_labels() {
        // New York, clocks forward at 02:00 on 2024-03-10: the day is [05:00Z, 04:00Z+1).
        let grid = PeriodGrid::new(DateType::Day, WeekStart::Monday, New_York);
        let r = local_range(&grid, t("2024-03-10T05:00:00Z"), t("2024-03-11T04:00:00Z")).unwrap();
        assert_eq!(
            (r.start_time.as_str(), r.end_time.as_str()),
            ("00:00", "24:00")
        );
        assert_eq!(
            (r.start_date.to_string(), r.end_date.to_string()),
            ("2024-03-10".into(), "2024-03-10".into())
        );
        let hh = PeriodGrid::new(DateType::HalfHour, WeekStart::Monday, New_York);
        let r = local_range(&hh, t("2024-03-10T06:30:00Z"), t("2024-03-10T07:30:00Z")).unwrap();
        assert_eq!(
            (r.start_time.as_str(), r.end_time.as_str()),
            ("01:30", "03:30")
        );
    }

    #[test]
    fn check_plan_and_paging() {
        assert_eq!(
            check_plan_request(Some(PlanType::for_family(Family::Departments))),
            GetRequest {
                path: CHECK_PLAN_PATH,
                query: vec![("planType", "24".into())]
            }
        );
        assert!(check_plan_request(None).query.is_empty());
        let codes: Vec<u8> = PlanType::ALL.iter().map(|p| p.code()).collect();
        assert_eq!(codes, [1, 2, 4, 24]);
        assert_eq!(
            (page_count(0, 15), page_count(15, 15), page_count(16, 15)),
            (1, 1, 2)
        );
        assert_eq!(page_count(5, 0), 5);
        let p = Period {
            start: t("2024-02-21T00:00:00Z"),
            end: t("2024-02-22T00:00:00Z"),
        };
        assert!(wanted(&p, p.start, p.end));
        assert!(!wanted(&p, p.start, p.end - chrono::Duration::seconds(1)));
    }
}
