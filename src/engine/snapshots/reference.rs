//! `indicator_plans`: Get All Indicator Display Schemes, every plan type.
//!
//! One request per plan type (1, 2, 4, 24) rather than one without `planType`: the
//! parameter is optional in the API document, but what the service answers without it
//! is not documented, and four tiny requests per run cost nothing. Each answer may be a
//! list of plans or, as in the document's example, one plan object
//! (`report::response::read_plans` reads both). Plans are de-duplicated by their
//! trimmed `id`, the first seen kept.

use crate::core::pipeline::Pipeline;
use crate::core::report::request::{PlanType, check_plan_request};
use crate::core::report::response::read_plans;
use crate::engine::extract::ExtractError;
use crate::engine::run::Engine;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Every display scheme the API lists, each once.
pub async fn fetch(engine: &Engine, p: &Pipeline) -> Result<Vec<Map<String, Value>>, ExtractError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut plans = Vec::new();
    for (i, plan_type) in PlanType::ALL.into_iter().enumerate() {
        let request = check_plan_request(Some(plan_type));
        let query: Vec<(String, String)> = request
            .query
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        let page = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let data = engine
            .client
            .get(&p.endpoint, &query)
            .await
            .map_err(|source| ExtractError::Api { page, source })?;
        let list = read_plans(data).map_err(|e| ExtractError::Shape {
            endpoint: format!("{} (planType {})", p.endpoint, plan_type.code()),
            page,
            detail: e.to_string(),
        })?;
        for plan in list {
            let id = plan
                .get("id")
                .and_then(Value::as_str)
                .map(str::trim)
                .unwrap_or_default()
                .to_string();
            if seen.insert(id) {
                plans.push(plan);
            }
        }
    }
    Ok(plans)
}
