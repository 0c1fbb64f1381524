//! Liberal readers for report pages and indicator display schemes.
//!
//! The API document is loose about report answers: rows are in `data.metric` in every
//! example but the parameter table says `list`, other endpoints use `pageData`; numbers
//! arrive as numbers or numeric strings; strings arrive padded (`" 765b...dc "`). These
//! readers accept every such variant and fail, with a message naming the field, only
//! when a page cannot be used: no rows where `total` says there are some, a row that is
//! not an object, no usable `total`.
//!
//! Input is the envelope's `data` (what `api` hands back); a whole envelope is accepted
//! too. Top-level string values of rows, amounts and plans are trimmed, because padding
//! is noise that would otherwise split one relay number or agent id into two keys.
//! Values are not converted here: that is the converter's job, with `_errors`.

use serde_json::{Map, Value};

/// The names the row list goes by, in the order they are looked for.
pub const ROW_FIELDS: [&str; 3] = ["metric", "list", "pageData"];

/// One page of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPage {
    pub rows: Vec<Map<String, Value>>,
    /// `data.amount`: the report's totals over the whole query (every page), when sent.
    pub amount: Option<Map<String, Value>>,
    /// `data.total`: rows of the whole query.
    pub total: u64,
    pub curr_page: Option<u64>,
    pub page_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("report response: {0}")]
pub struct ResponseError(pub String);

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A count from a number or a numeric string (`15`, `"15"`, `" 15 "`, `15.0`).
pub fn count_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 9.0e15)
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 9.0e15)
                    .map(|f| f as u64)
            })
        }
        _ => None,
    }
}

fn trim_strings(mut m: Map<String, Value>) -> Map<String, Value> {
    for v in m.values_mut() {
        if let Value::String(s) = v {
            let t = s.trim();
            if t.len() != s.len() {
                *s = t.to_string();
            }
        }
    }
    m
}

/// The `data` object of a body that may be `data` itself or a whole envelope.
fn data_object(data: Value, wanted: &[&str]) -> Result<Map<String, Value>, ResponseError> {
    match data {
        Value::Object(mut o) => {
            let is_envelope = !wanted.iter().any(|k| o.contains_key(*k))
                && o.get("data").is_some_and(Value::is_object)
                && (o.contains_key("code") || o.contains_key("status"));
            if is_envelope && let Some(Value::Object(inner)) = o.remove("data") {
                return Ok(inner);
            }
            Ok(o)
        }
        other => Err(ResponseError(format!(
            "data is {}, not an object",
            kind_of(&other)
        ))),
    }
}

fn optional_count(o: &Map<String, Value>, key: &str) -> Result<Option<u64>, ResponseError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => count_of(v).map(Some).ok_or_else(|| {
            ResponseError(format!(
                "data.{key} is {v}, not a whole number (a number or numeric string)"
            ))
        }),
    }
}

fn objects(name: &str, list: Vec<Value>) -> Result<Vec<Map<String, Value>>, ResponseError> {
    list.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Object(o) => Ok(trim_strings(o)),
            other => Err(ResponseError(format!(
                "{name}[{i}] is {}, not an object",
                kind_of(&other)
            ))),
        })
        .collect()
}

/// Reads one report page.
pub fn read_page(data: Value) -> Result<ReportPage, ResponseError> {
    let mut o = data_object(data, &ROW_FIELDS)?;
    let total = optional_count(&o, "total")?;
    let curr_page = optional_count(&o, "currPage")?;
    let page_size = optional_count(&o, "pageSize")?;

    let mut rows = None;
    for name in ROW_FIELDS {
        match o.remove(name) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(a)) => {
                rows = Some(objects(&format!("data.{name}"), a)?);
                break;
            }
            Some(other) => {
                return Err(ResponseError(format!(
                    "data.{name} is {}, not an array of rows",
                    kind_of(&other)
                )));
            }
        }
    }
    let total = total.ok_or_else(|| {
        ResponseError("data.total is missing: cannot tell when the report is complete".into())
    })?;
    let rows = match rows {
        Some(r) => r,
        None if total == 0 => Vec::new(),
        None => {
            return Err(ResponseError(format!(
                "no rows (data.metric, data.list or data.pageData) although data.total is {total}"
            )));
        }
    };
    let amount = match o.remove("amount") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::Object(a)) => Some(trim_strings(a)),
        Some(other) => {
            return Err(ResponseError(format!(
                "data.amount is {}, not an object of totals",
                kind_of(&other)
            )));
        }
    };
    Ok(ReportPage {
        rows,
        amount,
        total,
        curr_page,
        page_size,
    })
}

/// Reads the answer of Get All Indicator Display Schemes: `data` is a list of plans, a
/// single plan (as in the API document's example), null (no plans), or an object holding
/// the list under one of [`ROW_FIELDS`]. Every plan must have an `id` (the key of
/// `indicator_plans`); a numeric id becomes its text.
pub fn read_plans(data: Value) -> Result<Vec<Map<String, Value>>, ResponseError> {
    let list = match data {
        Value::Null => Vec::new(),
        Value::Array(a) => objects("data", a)?,
        Value::Object(_) => {
            let mut o = data_object(data, &["id", "planName", "planType"])?;
            let listed = ROW_FIELDS
                .iter()
                .find(|k| o.get(**k).is_some_and(Value::is_array))
                .copied();
            match listed.and_then(|k| o.remove(k).map(|v| (k, v))) {
                Some((k, Value::Array(a))) => objects(&format!("data.{k}"), a)?,
                _ if o.is_empty() => Vec::new(),
                _ => vec![trim_strings(o)],
            }
        }
        other => {
            return Err(ResponseError(format!(
                "data is {}, not a plan or a list of plans",
                kind_of(&other)
            )));
        }
    };
    list.into_iter()
        .enumerate()
        .map(|(i, mut plan)| {
            let id = match plan.get("id") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(ResponseError(format!(
                        "plan {i} has no id (the key of indicator_plans)"
                    )));
                }
            };
            plan.insert("id".into(), Value::String(id));
            Ok(plan)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metric_list_and_page_data() {
        let page = read_page(json!({
            "metric": [{"result_date": " 2022-03-17 16 : 30 2022-03-17 17 : 00 ", "gateway_number": " 01088881234 ", "inbound_calls": 3}],
            "amount": {"inbound_calls": "3"},
            "pageSize": 1, "currPage": "1", "total": " 15 "
        }))
        .unwrap();
        assert_eq!(page.total, 15);
        assert_eq!((page.curr_page, page.page_size), (Some(1), Some(1)));
        assert_eq!(page.rows.len(), 1);
        assert_eq!(page.rows[0]["gateway_number"], "01088881234");
        assert_eq!(
            page.rows[0]["result_date"],
            "2022-03-17 16 : 30 2022-03-17 17 : 00"
        );
        assert_eq!(page.rows[0]["inbound_calls"], 3);
        assert_eq!(page.amount.unwrap()["inbound_calls"], "3");

        let list = read_page(json!({"list": [{"a": 1}, {"a": 2}], "total": 2.0})).unwrap();
        assert_eq!((list.rows.len(), list.total, list.amount), (2, 2, None));
        let pd =
            read_page(json!({"metric": null, "pageData": [{"a": 1}], "total": 1, "amount": null}))
                .unwrap();
        assert_eq!(pd.rows.len(), 1);
        let empty = read_page(json!({"total": 0, "amount": {}})).unwrap();
        assert!(empty.rows.is_empty());
        assert_eq!(empty.amount, Some(Map::new()));
        // A whole envelope is unwrapped.
        let env =
            read_page(json!({"code": 200, "status": "ok", "data": {"metric": [], "total": 0}}))
                .unwrap();
        assert_eq!(env.total, 0);
    }

    #[test]
    fn unusable_pages_say_why() {
        for (data, words) in [
            (json!([1, 2]), "not an object"),
            (json!({"metric": [], "total": "many"}), "data.total"),
            (json!({"metric": []}), "data.total is missing"),
            (json!({"total": 3}), "no rows"),
            (
                json!({"metric": {"a": 1}, "total": 1}),
                "data.metric is an object",
            ),
            (
                json!({"metric": [{"a": 1}, "x"], "total": 2}),
                "data.metric[1] is a string",
            ),
            (
                json!({"metric": [], "total": 0, "amount": [1]}),
                "data.amount is an array",
            ),
            (json!({"metric": [], "total": -1}), "data.total"),
            (
                json!({"metric": [], "total": 0, "currPage": "x"}),
                "data.currPage",
            ),
        ] {
            let e = read_page(data.clone()).unwrap_err();
            assert!(e.to_string().contains(words), "{data}: {e}");
        }
    }

    #[test]
    fn plans_as_list_or_single_object() {
        let one = read_plans(json!({"planType": 2, "planName": "Default plan", "checked": 1, "id": " 765b29d607da42a3b57a8e4e868a31dc "})).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0]["id"], "765b29d607da42a3b57a8e4e868a31dc");
        let many =
            read_plans(json!([{"id": "a", "planType": 4}, {"id": 7, "planType": 24}])).unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[1]["id"], "7");
        let wrapped = read_plans(json!({"list": [{"id": "a"}], "total": 1})).unwrap();
        assert_eq!(wrapped.len(), 1);
        assert!(read_plans(Value::Null).unwrap().is_empty());
        assert!(read_plans(json!({})).unwrap().is_empty());
        let env =
            read_plans(json!({"code": 200, "status": "ok", "data": {"id": "z", "planName": "P"}}))
                .unwrap();
        assert_eq!(env[0]["id"], "z");
        assert!(
            read_plans(json!([{"planName": "no id"}]))
                .unwrap_err()
                .to_string()
                .contains("plan 0 has no id")
        );
        assert!(read_plans(json!([{"id": "  "}])).is_err());
        assert!(read_plans(json!("x")).is_err());
        assert!(
            read_plans(json!([3]))
                .unwrap_err()
                .to_string()
                .contains("data[0]")
        );
    }

    #[test]
    fn counts() {
        assert_eq!(count_of(&json!(15)), Some(15));
        assert_eq!(count_of(&json!(" 15 ")), Some(15));
        assert_eq!(count_of(&json!("15.0")), Some(15));
        assert_eq!(count_of(&json!(1.5)), None);
        assert_eq!(count_of(&json!(-1)), None);
        assert_eq!(count_of(&json!(true)), None);
    }
}
