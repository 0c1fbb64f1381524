//! The report search body, read and validated as the three endpoints do; its errors name
//! the field, as the server's 400 envelope does.

use std::sync::OnceLock;

use chrono::NaiveDateTime;
use chrono_tz::Tz;
use serde_json::{Map, Value};

use crate::core::report::indicators::{Catalogue, Family, IndicatorKind};
use crate::sim::periods::{DateType, local_bound};

/// The catalogues, parsed once.
pub(super) fn catalogue(family: Family) -> &'static Catalogue {
    static CATS: OnceLock<[Catalogue; 3]> = OnceLock::new();
    let cats = CATS.get_or_init(|| Family::ALL.map(Catalogue::embedded));
    match family {
        Family::GatewayNumbers => &cats[0],
        Family::Agents => &cats[1],
        Family::Departments => &cats[2],
    }
}

/// How rows are keyed (`dimensions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dims {
    /// 1: one row per period, all relay numbers / agents / departments together.
    Time,
    /// 2 / 8 / 11: one row per relay number / agent / department over the whole range.
    Key,
    /// 3 / 9 / 12: period, then key.
    TimeKey,
    /// 4 / 10 / 13: key, then period.
    KeyTime,
}

/// A parsed report search: what `gateway-number-table`, `agent-table` and
/// `depart-table` accept, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportQuery {
    pub(super) family: Family,
    pub(super) dims: Dims,
    pub(super) date_type: DateType,
    pub(super) start: NaiveDateTime,
    pub(super) end: NaiveDateTime,
    /// 2 or 3 limits the talks counted to inbound or outbound; `None` counts both.
    pub(super) call_type: Option<u8>,
    pub(super) fields: Vec<(String, IndicatorKind)>,
    pub(super) curr_page: i64,
    pub(super) page_size: i64,
    /// Relay numbers, agents or department ids to keep (empty: all).
    pub(super) filter: Vec<String>,
    pub(super) agent_type: Option<i64>,
}

/// An integer field that may be a number or a numeric string; `""`/null mean absent.
fn int_field(body: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{name} must be an integer, got {n}")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{name} must be an integer, got {s:?}")),
        Some(other) => Err(format!("{name} must be an integer, got {other}")),
    }
}

fn str_field<'a>(body: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(format!("{name} must be a string, got {other}")),
    }
}

/// A list sent as a JSON array of strings (or numbers) or as one comma-separated string.
fn list_field(body: &Map<String, Value>, name: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = match body.get(name) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split(',').map(str::to_string).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(format!("{name} must hold strings, got {other}")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => Err(format!(
            "{name} must be a list or a comma-separated string, got {other}"
        ))?,
    };
    Ok(items
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

fn required<T>(v: Option<T>, name: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("{name} is required"))
}

impl ReportQuery {
    /// Reads a report search body as the endpoint of `family` does. The error names the
    /// offending field (or the unknown indicator), as the server's 400 envelope does.
    pub fn parse(family: Family, body: &Value) -> Result<Self, String> {
        let Some(body) = body.as_object() else {
            return Err("request body must be a JSON object".to_string());
        };
        let codes: [i64; 4] = match family {
            Family::GatewayNumbers => [1, 2, 3, 4],
            Family::Agents => [1, 8, 9, 10],
            Family::Departments => [1, 11, 12, 13],
        };
        let dims = match required(int_field(body, "dimensions")?, "dimensions")? {
            d if d == codes[0] => Dims::Time,
            d if d == codes[1] => Dims::Key,
            d if d == codes[2] => Dims::TimeKey,
            d if d == codes[3] => Dims::KeyTime,
            d => {
                return Err(format!(
                    "dimensions {d} is not one of {codes:?} for this report"
                ));
            }
        };
        let date_type_code = required(int_field(body, "dateType")?, "dateType")?;
        let week_type = int_field(body, "weekType")?;
        if week_type.is_some_and(|w| w != 0 && w != 1) {
            return Err("weekType must be 0 or 1".to_string());
        }
        let date_type = DateType::from_code(date_type_code, week_type)
            .ok_or_else(|| format!("dateType {date_type_code} is not one of 11-15"))?;
        let start_date = required(str_field(body, "startDate")?, "startDate")?;
        let end_date = required(str_field(body, "endDate")?, "endDate")?;
        let start = local_bound(start_date, str_field(body, "startTime")?, false)
            .map_err(|e| format!("startDate/startTime: {e}"))?;
        let end = local_bound(end_date, str_field(body, "endTime")?, true)
            .map_err(|e| format!("endDate/endTime: {e}"))?;
        if end < start {
            return Err("endDate/endTime is before startDate/startTime".to_string());
        }
        let call_type = match family {
            Family::GatewayNumbers => int_field(body, "callType")?,
            Family::Departments => Some(required(int_field(body, "callType")?, "callType")?),
            Family::Agents => {
                match required(int_field(body, "agentReportType")?, "agentReportType")? {
                    t @ (2 | 3) => Some(t),
                    4 => None,
                    t => return Err(format!("agentReportType {t} is not 2, 3 or 4")),
                }
            }
        };
        let call_type = match call_type {
            None => None,
            Some(2) => Some(2),
            Some(3) => Some(3),
            Some(t) => return Err(format!("callType {t} is not 2 or 3")),
        };
        let names = list_field(body, "customerFields")?;
        if names.is_empty() {
            return Err("customerFields is required".to_string());
        }
        let cat = catalogue(family);
        let mut fields = Vec::with_capacity(names.len());
        for n in names {
            let Some(ind) = cat.get(&n) else {
                return Err(format!(
                    "unknown indicator {n:?} in customerFields for the {} report",
                    family.file_stem()
                ));
            };
            if !fields.iter().any(|(f, _)| *f == n) {
                fields.push((n, ind.kind));
            }
        }
        let curr_page = int_field(body, "currPage")?.unwrap_or(1);
        if curr_page < 1 {
            return Err("currPage must be an integer >= 1".to_string());
        }
        let page_size = int_field(body, "pageSize")?.unwrap_or(15);
        if page_size < 1 {
            return Err("pageSize must be an integer >= 1".to_string());
        }
        let filter = list_field(
            body,
            match family {
                Family::GatewayNumbers => "gatewayNumber",
                Family::Agents => "agents",
                Family::Departments => "departIds",
            },
        )?;
        Ok(Self {
            family,
            dims,
            date_type,
            start,
            end,
            call_type,
            fields,
            curr_page,
            page_size,
            filter,
            agent_type: int_field(body, "agentType")?,
        })
    }

    /// The instants the query covers, in `tz`.
    pub(super) fn range_ms(&self, tz: Tz) -> (i64, i64) {
        (
            crate::core::timeutil::resolve_local(tz, self.start).timestamp_millis(),
            crate::core::timeutil::resolve_local(tz, self.end).timestamp_millis(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(family: Family, body: Value) -> Result<ReportQuery, String> {
        ReportQuery::parse(family, &body)
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let base = json!({"dimensions": 3, "dateType": 13, "startDate": "2024-01-02",
            "endDate": "2024-01-02", "customerFields": "inbound_calls", "currPage": 1, "pageSize": 5});
        assert!(query(Family::GatewayNumbers, base.clone()).is_ok());
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            query(Family::GatewayNumbers, b).err().unwrap_or_default()
        };
        assert!(with("customerFields", json!("inbound_calls,bogus")).contains("\"bogus\""));
        assert!(with("dateType", json!("soon")).contains("dateType"));
        assert!(with("dimensions", json!(9)).contains("dimensions"));
        assert!(with("startDate", json!("yesterday")).contains("startDate"));
        assert!(with("currPage", json!(0)).contains("currPage"));
        let mut agents = base.clone();
        agents["dimensions"] = json!(9);
        assert!(
            query(Family::Agents, agents)
                .err()
                .unwrap_or_default()
                .contains("agentReportType")
        );
    }
}
