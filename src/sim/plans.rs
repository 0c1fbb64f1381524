//! Get All Indicator Display Schemes (`GET .../gateway_number/check_plan`): a fixed set of
//! display plans per plan type, derived from the seed.
//!
//! The API document shows `data` as one plan object, while real answers carry every plan;
//! the simulator serves a list by default and one object when
//! `SimConfig::check_plan_single_object` (or `SimHandle::set_check_plan_single_object`)
//! says so, so clients are tested against both shapes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::dataset::Dataset;
use super::protocol::{envelope_error, success_zero_in};
use super::rng::{hash, mix64};
use super::state::Shared;
use crate::core::report::indicators::{Catalogue, Direction, Family};

/// A tag for plan ids, disjoint from the generator's tags.
const TAG_PLAN: u64 = 201;

/// The talk fields the talk-record plans show.
const TALK_FIELDS: &str = "callID,callType,startTime,endTime,duration,callResult,gatewayNumber,customerNumber,lastAgentName";

fn names<'a>(cat: &'a Catalogue, only: Option<Direction>) -> String {
    cat.indicators
        .iter()
        .filter(|i| only.is_none_or(|d| i.direction == d))
        .map(|i| i.name.as_str())
        .collect::<Vec<&'a str>>()
        .join(",")
}

impl Dataset {
    /// Ground truth: the indicator display plans, all of them or those of `plan_type`
    /// (1 talk record, 2 relay number, 4 agent, 24 department), default plan first.
    /// One plan id carries the API document's stray spaces.
    pub fn indicator_plans(&self, plan_type: Option<i64>) -> Vec<Value> {
        let seed = self.report_state().seed();
        let gw = Catalogue::embedded(Family::GatewayNumbers);
        let ag = Catalogue::embedded(Family::Agents);
        let dp = Catalogue::embedded(Family::Departments);
        let defs: [(i64, &str, i64, String); 7] = [
            (1, "Default plan", 1, TALK_FIELDS.to_string()),
            (1, "Brief", 0, "callID,startTime,callResult".to_string()),
            (2, "Default plan", 1, names(&gw, None)),
            (
                2,
                "Inbound overview",
                0,
                names(&gw, Some(Direction::Inbound)),
            ),
            (4, "Default plan", 1, names(&ag, None)),
            (4, "Work status", 0, names(&ag, Some(Direction::Status))),
            (24, "Default plan", 1, names(&dp, None)),
        ];
        let created = 1_704_067_200_000i64; // 2024-01-01T00:00:00Z
        defs.into_iter()
            .enumerate()
            .filter(|(_, (t, ..))| plan_type.is_none_or(|p| p == *t))
            .map(|(i, (t, name, checked, fields))| {
                let a = hash(&[seed, TAG_PLAN, i as u64]);
                let id = format!("{a:016x}{:016x}", mix64(a));
                let id = if i == 3 { format!(" {id} ") } else { id };
                json!({
                    "id": id,
                    "planName": name,
                    "planType": t,
                    "checked": checked,
                    "customerFields": fields,
                    "companyId": self.generator().company_id(),
                    "createTime": created,
                    "updateTime": created + (i as i64) * 86_400_000,
                })
            })
            .collect()
    }
}

/// `GET /callservice/tm/tm-reports/gateway_number/check_plan[?planType=N]`
pub(crate) async fn check_plan(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let plan_type = match params.get("planType").map(|s| s.trim()) {
        None | Some("") => None,
        Some(s) => match s.parse::<i64>() {
            Ok(t) => Some(t),
            Err(_) => {
                return envelope_error(400, &format!("planType must be an integer, got {s:?}"));
            }
        },
    };
    let plans = shared.dataset.indicator_plans(plan_type);
    if shared.dataset.report_state().check_plan_single() {
        let first = plans.into_iter().next().unwrap_or(Value::Null);
        success_zero_in(shared.dialect, "IndicatorPlan", first)
    } else {
        success_zero_in(shared.dialect, "IndicatorPlan", plans)
    }
}
