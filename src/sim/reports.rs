//! The Statistical Report searches: Relay Number Report (`gateway-number-table`), Agent
//! Report (`agent-table`) and Department Report (`depart-table`).
//!
//! Figures are aggregated from the same talks, parties and agent histories the data
//! endpoints serve (plus restatements, see `facts.rs`), one period at a time: a query
//! over months keeps only the current period's accumulators, the running `amount`, and
//! the rows of the requested page. The server and the `Dataset::report` ground truth run
//! this same code; tests that want an independent check recompute figures straight from
//! `Dataset::talks` and `Dataset::agent_histories` (see `tests/it/sim_reports.rs`).
//!
//! How indicators derive from the data (all counts by the talk's start time, all
//! durations integer seconds summed per record, so row sums are exact):
//! - relay numbers: talks of that `gatewayNumber`; answered = callResult 8; system
//!   missed = inbound callResult 4; offered to an agent = the talk has agent legs;
//!   "Xs" = talk of at least 30 s.
//! - agents: the agent's legs (parties); answered = the leg has a bridge time; direct =
//!   the first leg, transfer = later legs; status durations = each visible interval's
//!   overlap with the period in whole-second clock ticks (`floor(end/1000) -
//!   floor(start/1000)` of the clipped interval, so half hours add up to their day
//!   exactly); first login / first ready / last
//!   logout = the earliest start of a logged-in / ready interval and the latest start of
//!   an offline interval within the period (epoch ms, `""` when none).
//! - departments: the sum of their agents' accumulators.
//! - averages and ratios are computed from the sums (0 when nothing to divide by), also
//!   in `amount`, whose counters and durations are the sums over all rows.
//!
//! Indicators the data cannot support (routing to third-party numbers or agent memory,
//! non-human answers, consultations, system lock) are 0.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::config::{Dialect, Faults};
use super::dataset::Dataset;
use super::facts::{EFFECTIVE_TALK_SECS, GATEWAY_NUMBERS, IntervalFact, TalkFact};
use super::handlers::page_window;
use super::periods::{DateType, Period, local_bound, periods, result_date};
use super::protocol::{envelope_error, failure, success_zero_in};
use super::rng::hash;
use super::state::{RequestCtx, Shared};
use crate::core::report::indicators::{Catalogue, Family, IndicatorKind};

/// The catalogues, parsed once.
fn catalogue(family: Family) -> &'static Catalogue {
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
enum Dims {
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
    family: Family,
    dims: Dims,
    date_type: DateType,
    start: NaiveDateTime,
    end: NaiveDateTime,
    /// 2 or 3 limits the talks counted to inbound or outbound; `None` counts both.
    call_type: Option<u8>,
    fields: Vec<(String, IndicatorKind)>,
    curr_page: i64,
    page_size: i64,
    /// Relay numbers, agents or department ids to keep (empty: all).
    filter: Vec<String>,
    agent_type: Option<i64>,
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
    fn range_ms(&self, tz: Tz) -> (i64, i64) {
        (
            crate::core::timeutil::resolve_local(tz, self.start).timestamp_millis(),
            crate::core::timeutil::resolve_local(tz, self.end).timestamp_millis(),
        )
    }
}

/// All rows of a report query with their `amount`: the ground truth of one search.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportTable {
    /// Every row in the served order (the `metric` lists of all pages, concatenated).
    pub rows: Vec<Value>,
    /// issue 13: each row's period as the server meant it, `[start, end)` in epoch ms of
    /// the whole period (`None` for rows by key alone): the truth against which a
    /// client's reading of `result_date` is checked, e.g. across a DST fall-back, where
    /// two periods share their labels.
    pub periods: Vec<Option<(i64, i64)>>,
    pub amount: Value,
    pub total: usize,
}

/// One indicator value before it is put on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val {
    Int(i64),
    Ratio(f64),
    Time(Option<i64>),
}

fn ratio(a: i64, b: i64) -> Val {
    if b == 0 {
        Val::Ratio(0.0)
    } else {
        Val::Ratio((a as f64 / b as f64 * 10_000.0).round() / 10_000.0)
    }
}

fn avg(sum: i64, n: i64) -> Val {
    Val::Int(if n == 0 { 0 } else { sum / n })
}

trait Acc: Default + Clone {
    fn add(&mut self, other: &Self);
    /// The indicator's value, or `None` for a name this family does not know.
    fn value(&self, name: &str) -> Option<Val>;
}

/// Sums behind the Relay Number Report.
#[derive(Debug, Clone, Default, PartialEq)]
struct GatewayAcc {
    in_calls: i64,
    in_system_missed: i64,
    in_offered: i64,
    in_answered: i64,
    in_talk_s: i64,
    in_total_s: i64,
    out_calls: i64,
    out_customers: i64,
    out_answered: i64,
    out_answered_customers: i64,
    out_xs: i64,
    out_total_s: i64,
    out_talk_s: i64,
    out_xs_talk_s: i64,
}

impl Acc for GatewayAcc {
    fn add(&mut self, o: &Self) {
        self.in_calls += o.in_calls;
        self.in_system_missed += o.in_system_missed;
        self.in_offered += o.in_offered;
        self.in_answered += o.in_answered;
        self.in_talk_s += o.in_talk_s;
        self.in_total_s += o.in_total_s;
        self.out_calls += o.out_calls;
        self.out_customers += o.out_customers;
        self.out_answered += o.out_answered;
        self.out_answered_customers += o.out_answered_customers;
        self.out_xs += o.out_xs;
        self.out_total_s += o.out_total_s;
        self.out_talk_s += o.out_talk_s;
        self.out_xs_talk_s += o.out_xs_talk_s;
    }

    fn value(&self, name: &str) -> Option<Val> {
        use Val::Int;
        Some(match name {
            "inbound_calls" => Int(self.in_calls),
            "inbound_no_answered_calls" => Int(self.in_system_missed),
            "inbound_answered_calls" => Int(self.in_calls - self.in_system_missed),
            "inbound_route_to_agent_calls"
            | "inbound_toAgent_calls"
            | "inbound_offer_agent_calls"
            | "inbound_agent_ring_calls" => Int(self.in_offered),
            "inbound_route_to_thirdPSTN_calls"
            | "inbound_route_to_agentMemory_calls"
            | "inbound_notHumanAgent_answered_calls" => Int(0),
            "inbound_agent_answered_calls" | "inbound_humanAgent_answered_calls" => {
                Int(self.in_answered)
            }
            "inbound_agentTalk_duration" => Int(self.in_talk_s),
            "inbound_agentTalk_average_duration" => avg(self.in_talk_s, self.in_answered),
            "inbound_calls_duration" => Int(self.in_total_s),
            "inbound_calls_average_duration" => avg(self.in_total_s, self.in_calls),
            "outbound_calls" => Int(self.out_calls),
            "outbound_customer_numbers" => Int(self.out_customers),
            "outbound_customer_noAnswer_calls" => Int(self.out_calls - self.out_answered),
            "outbound_customer_answer_calls" => Int(self.out_answered),
            "outbound_answer_gateway_numbers" => Int(self.out_answered_customers),
            "outbound_answer_ratio" => ratio(self.out_answered, self.out_calls),
            "outbound_gateway_numbers_ratio" => {
                ratio(self.out_answered_customers, self.out_customers)
            }
            "outbound_agentTalkXs_ratio" => ratio(self.out_xs, self.out_calls),
            "outbound_agentTalkXs_calls" => Int(self.out_xs),
            "outbound_calls_duration" => Int(self.out_total_s),
            "outbound_calls_talk_duration" => Int(self.out_talk_s),
            "outbound_calls_average_duration" => avg(self.out_talk_s, self.out_answered),
            "outbound_effective_inXs_sum_duration" => Int(self.out_xs_talk_s),
            "outbound_effective_inXs_average_duration" => avg(self.out_xs_talk_s, self.out_xs),
            _ => return None,
        })
    }
}

/// Sums behind the Agent and Department Reports. Status durations are in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
struct AgentAcc {
    in_legs: i64,
    in_bridged: i64,
    in_first: i64,
    in_first_bridged: i64,
    in_transfer: i64,
    in_transfer_bridged: i64,
    in_talk_s: i64,
    out_legs: i64,
    out_bridged: i64,
    out_xs: i64,
    out_total_s: i64,
    out_talk_s: i64,
    out_xs_talk_s: i64,
    login: i64,
    online: i64,
    syslock: i64,
    busy: i64,
    dnd: i64,
    rest: i64,
    /// Break reasons 11-18.
    rest_by: [i64; 8],
    ready: i64,
    busying: i64,
    acw: i64,
    calling: i64,
    dialing: i64,
    ringing: i64,
    talking: i64,
    held: i64,
    dnd_busy: i64,
    rest_busy: i64,
    rest_busy_by: [i64; 8],
    first_login: Option<i64>,
    first_online: Option<i64>,
    last_logout: Option<i64>,
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

impl AgentAcc {
    fn leg(&mut self, call_type: u8, leg: &super::facts::LegFact) {
        let b = i64::from(leg.bridged);
        if call_type == 2 {
            self.in_legs += 1;
            self.in_bridged += b;
            if leg.first {
                self.in_first += 1;
                self.in_first_bridged += b;
            } else {
                self.in_transfer += 1;
                self.in_transfer_bridged += b;
            }
            self.in_talk_s += leg.talk_s;
        } else {
            let xs = leg.bridged && leg.talk_s >= EFFECTIVE_TALK_SECS;
            self.out_legs += 1;
            self.out_bridged += b;
            self.out_xs += i64::from(xs);
            self.out_total_s += leg.total_s;
            self.out_talk_s += leg.talk_s;
            if xs {
                self.out_xs_talk_s += leg.talk_s;
            }
        }
    }

    /// Adds the part of `i` inside `[from_ms, to_ms)`.
    fn interval(&mut self, i: &IntervalFact, from_ms: i64, to_ms: i64) {
        // Whole-second clock ticks inside the overlap: period boundaries are whole
        // seconds, so an interval split across periods adds up to its own length.
        let secs = (i.end_ms.min(to_ms).div_euclid(1000)
            - i.start_ms.max(from_ms).div_euclid(1000))
        .max(0);
        let starts_inside = (from_ms..to_ms).contains(&i.start_ms);
        let reason = usize::from(i.no_ready).checked_sub(11).filter(|r| *r < 8);
        if i.login != 0 {
            self.login += secs;
            if starts_inside {
                self.first_login = min_opt(self.first_login, Some(i.start_ms));
            }
        } else if starts_inside {
            self.last_logout = max_opt(self.last_logout, Some(i.start_ms));
        }
        match i.login {
            1 => self.online += secs,
            2 => {
                self.busy += secs;
                if i.no_ready == 2 {
                    self.dnd += secs;
                }
                if let Some(r) = reason {
                    self.rest += secs;
                    self.rest_by[r] += secs;
                }
            }
            98 => self.syslock += secs,
            _ => {}
        }
        if i.login == 0 {
            return;
        }
        match i.work {
            1 => {
                self.ready += secs;
                if starts_inside {
                    self.first_online = min_opt(self.first_online, Some(i.start_ms));
                }
            }
            2 => {
                self.busying += secs;
                if i.no_ready == 2 {
                    self.dnd_busy += secs;
                }
                if let Some(r) = reason {
                    self.rest_busy += secs;
                    self.rest_busy_by[r] += secs;
                }
            }
            4 => self.acw += secs,
            5..=8 => {
                self.calling += secs;
                match i.work {
                    5 => self.dialing += secs,
                    6 => self.ringing += secs,
                    7 => self.talking += secs,
                    _ => self.held += secs,
                }
            }
            _ => {}
        }
    }
}

impl Acc for AgentAcc {
    fn add(&mut self, o: &Self) {
        self.in_legs += o.in_legs;
        self.in_bridged += o.in_bridged;
        self.in_first += o.in_first;
        self.in_first_bridged += o.in_first_bridged;
        self.in_transfer += o.in_transfer;
        self.in_transfer_bridged += o.in_transfer_bridged;
        self.in_talk_s += o.in_talk_s;
        self.out_legs += o.out_legs;
        self.out_bridged += o.out_bridged;
        self.out_xs += o.out_xs;
        self.out_total_s += o.out_total_s;
        self.out_talk_s += o.out_talk_s;
        self.out_xs_talk_s += o.out_xs_talk_s;
        self.login += o.login;
        self.online += o.online;
        self.syslock += o.syslock;
        self.busy += o.busy;
        self.dnd += o.dnd;
        self.rest += o.rest;
        self.ready += o.ready;
        self.busying += o.busying;
        self.acw += o.acw;
        self.calling += o.calling;
        self.dialing += o.dialing;
        self.ringing += o.ringing;
        self.talking += o.talking;
        self.held += o.held;
        self.dnd_busy += o.dnd_busy;
        self.rest_busy += o.rest_busy;
        for k in 0..8 {
            self.rest_by[k] += o.rest_by[k];
            self.rest_busy_by[k] += o.rest_busy_by[k];
        }
        self.first_login = min_opt(self.first_login, o.first_login);
        self.first_online = min_opt(self.first_online, o.first_online);
        self.last_logout = max_opt(self.last_logout, o.last_logout);
    }

    fn value(&self, name: &str) -> Option<Val> {
        use Val::Int;
        if let Some(v) = self.break_value(name) {
            return Some(v);
        }
        Some(match name {
            "inbound_agent_partits" | "inbound_agent_dialing_partits" => Int(self.in_legs),
            "inbound_agent_answer_partits" | "inbound_agent_callByAnswer_partits" => {
                Int(self.in_bridged)
            }
            "inbound_agent_unAnswer_partits" => Int(self.in_legs - self.in_bridged),
            "inbound_agent_ringing_partits" => Int(self.in_first),
            "inbound_agent_ringingAnswer_partits" => Int(self.in_first_bridged),
            "inbound_agent_ringingUnAnswer_partits" => Int(self.in_first - self.in_first_bridged),
            "inbound_agent_transferBy_partits" => Int(self.in_transfer),
            "inbound_agent_transferByAnswer_partits" => Int(self.in_transfer_bridged),
            "inbound_agent_transferByUnAnswer_partits" => {
                Int(self.in_transfer - self.in_transfer_bridged)
            }
            "inbound_agent_consultBy_partits"
            | "inbound_agent_consultByAnswer_partits"
            | "inbound_agent_consultByUnAnswer_partits" => Int(0),
            "inbound_agentTalk_duration" => Int(self.in_talk_s),
            "inbound_agentTalk_average_duration" => avg(self.in_talk_s, self.in_bridged),
            "outbound_calls" => Int(self.out_legs),
            "outbound_customer_noAnswer_calls" => Int(self.out_legs - self.out_bridged),
            "outbound_customer_answer_calls" => Int(self.out_bridged),
            "outbound_answer_ratio" => ratio(self.out_bridged, self.out_legs),
            "outbound_agent_effectiveTalkInXs_partits" => Int(self.out_xs),
            "outbound_agent_effectiveTalkInXs_radio" => ratio(self.out_xs, self.out_legs),
            "outbound_calls_duration" => Int(self.out_total_s),
            "outbound_calls_talk_duration" => Int(self.out_talk_s),
            "outbound_calls_average_duration" => avg(self.out_talk_s, self.out_bridged),
            "outbound_effective_inXs_sum_duration" => Int(self.out_xs_talk_s),
            "outbound_effective_inXs_average_duration" => avg(self.out_xs_talk_s, self.out_xs),
            "agent_login_sum_duration" => Int(self.login),
            "agent_online_sum_duration" => Int(self.online),
            "agent_syslock_sum_duration" => Int(self.syslock),
            "agent_busy_sum_duration" => Int(self.busy),
            "agent_DND_sum_duration" => Int(self.dnd),
            "agent_rest_sum_duration" => Int(self.rest),
            "agent_readying_sum_duration" => Int(self.ready),
            "agent_busying_sum_duration" => Int(self.busying),
            "agent_acwing_sum_duration" => Int(self.acw),
            "agent_calling_sum_duration" => Int(self.calling),
            "agent_dialing_sum_duration" => Int(self.dialing),
            "agent_ringing_sum_duration" => Int(self.ringing),
            "agent_talking_sum_duration" => Int(self.talking),
            "agent_helding_sum_duration" => Int(self.held),
            "agent_DND_busy_duration" => Int(self.dnd_busy),
            "agent_rest_busy_sum_duration" => Int(self.rest_busy),
            "agentOnline_percent" => ratio(self.online, self.login),
            "agentBusy_percent" => ratio(self.busy, self.login),
            "agentDND_percent" => ratio(self.dnd, self.login),
            "agentRest_percent" => ratio(self.rest, self.login),
            "workReady_percent" => ratio(self.ready, self.login),
            "workBusy_percent" => ratio(self.busying, self.login),
            "workinCall_percent" => ratio(self.calling, self.login),
            "workACW_percent" => ratio(self.acw, self.login),
            // Work-occupied reason codes A and B are break reasons 11 and 12.
            "workReasonCodeA_sum_duration" => Int(self.rest_busy_by[0]),
            "workReasonCodeB_sum_duration" => Int(self.rest_busy_by[1]),
            "workReasonCodeA_percent" => ratio(self.rest_busy_by[0], self.login),
            "workReasonCodeB_percent" => ratio(self.rest_busy_by[1], self.login),
            "agent_DND_busy_sum_duration_radio" => ratio(self.dnd_busy, self.login),
            "agent_rest_busy_sum_duration_redio" => ratio(self.rest_busy, self.login),
            "agentFirstLogin_timestamp" => Val::Time(self.first_login),
            "agentFirstOnline_timestamp" => Val::Time(self.first_online),
            "agentLastLogout_timestamp" => Val::Time(self.last_logout),
            _ => return None,
        })
    }
}

impl AgentAcc {
    /// `agent_restNN_sum_duration` and `agent_restNN_busy_sum_duration`, NN in 11-18.
    fn break_value(&self, name: &str) -> Option<Val> {
        let rest = name.strip_prefix("agent_rest")?;
        let (code, busy) = if let Some(c) = rest.strip_suffix("_busy_sum_duration") {
            (c, true)
        } else {
            (rest.strip_suffix("_sum_duration")?, false)
        };
        let k = code
            .parse::<usize>()
            .ok()?
            .checked_sub(11)
            .filter(|k| *k < 8)?;
        Some(Val::Int(if busy {
            self.rest_busy_by[k]
        } else {
            self.rest_by[k]
        }))
    }
}

/// The fields a row carries for its relay number, agent or department.
type KeyFields = Vec<(&'static str, String)>;

/// The dimension values of a query (all the simulator knows, less the filter), in key
/// order, each with its row fields.
fn keys(ds: &Dataset, q: &ReportQuery) -> Vec<(usize, KeyFields)> {
    let keep = |candidates: &[&str]| {
        q.filter.is_empty() || candidates.iter().any(|c| q.filter.iter().any(|f| f == c))
    };
    let mut out: Vec<(usize, KeyFields)> = match q.family {
        Family::GatewayNumbers => GATEWAY_NUMBERS
            .iter()
            .enumerate()
            .filter(|(_, g)| keep(&[g]))
            .map(|(i, g)| (i, vec![("gateway_number", g.to_string())]))
            .collect(),
        Family::Agents => ds
            .generator()
            .agents()
            .iter()
            .enumerate()
            .filter(|(_, a)| match q.agent_type {
                Some(1) => keep(&[&a.uuid]),
                Some(2) => keep(&[&a.id]),
                _ => keep(&[&a.uuid, &a.id]),
            })
            .map(|(i, a)| {
                (
                    i,
                    vec![
                        ("serviceId", a.uuid.clone()),
                        ("serviceNo", a.id.clone()),
                        ("serviceName", a.name.clone()),
                    ],
                )
            })
            .collect(),
        Family::Departments => ds
            .report_state()
            .departments()
            .iter()
            .enumerate()
            .filter(|(_, (id, _))| keep(&[id]))
            .map(|(i, (id, name))| {
                (
                    i,
                    vec![("departId", id.clone()), ("departName", name.clone())],
                )
            })
            .collect(),
    };
    out.sort_by(|a, b| a.1[0].1.cmp(&b.1[0].1));
    out
}

/// Relay-number sums of one period, indexed like `GATEWAY_NUMBERS`.
fn gateway_period(
    ds: &Dataset,
    q: &ReportQuery,
    p: &Period,
    now_ms: i64,
    faults: &Faults,
) -> Vec<GatewayAcc> {
    let mut accs = vec![GatewayAcc::default(); GATEWAY_NUMBERS.len()];
    let mut customers: HashSet<(usize, String)> = HashSet::new();
    let mut answered_customers: HashSet<(usize, String)> = HashSet::new();
    ds.each_talk(p.start_ms, p.end_ms, now_ms, faults, |t: &TalkFact<'_>| {
        if q.call_type.is_some_and(|c| c != t.call_type) {
            return;
        }
        let Some(g) = GATEWAY_NUMBERS.iter().position(|g| *g == t.gateway) else {
            return;
        };
        let a = &mut accs[g];
        if t.call_type == 2 {
            a.in_calls += 1;
            a.in_system_missed += i64::from(t.system_missed);
            a.in_offered += i64::from(!t.legs.is_empty());
            a.in_answered += i64::from(t.answered);
            a.in_talk_s += t.talk_s;
            a.in_total_s += t.total_s;
        } else {
            a.out_calls += 1;
            if customers.insert((g, t.customer.to_string())) {
                a.out_customers += 1;
            }
            if t.answered {
                a.out_answered += 1;
                if answered_customers.insert((g, t.customer.to_string())) {
                    a.out_answered_customers += 1;
                }
                if t.talk_s >= EFFECTIVE_TALK_SECS {
                    a.out_xs += 1;
                    a.out_xs_talk_s += t.talk_s;
                }
            }
            a.out_total_s += t.total_s;
            a.out_talk_s += t.talk_s;
        }
    });
    accs
}

/// Agent sums of one period, indexed by agent.
fn agent_period(
    ds: &Dataset,
    call_type: Option<u8>,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
    faults: &Faults,
) -> Vec<AgentAcc> {
    let mut accs = vec![AgentAcc::default(); ds.generator().agents().len()];
    ds.each_talk(from_ms, to_ms, now_ms, faults, |t| {
        if call_type.is_some_and(|c| c != t.call_type) {
            return;
        }
        for leg in &t.legs {
            if let Some(a) = accs.get_mut(leg.agent) {
                a.leg(t.call_type, leg);
            }
        }
    });
    ds.each_interval(from_ms, to_ms, now_ms, faults, false, |i| {
        if let Some(a) = accs.get_mut(i.agent) {
            a.interval(i, from_ms, to_ms);
        }
    });
    accs
}

/// Department sums of one period, indexed like `ReportState::departments`.
fn department_period(
    ds: &Dataset,
    q: &ReportQuery,
    p: &Period,
    now_ms: i64,
    faults: &Faults,
) -> Vec<AgentAcc> {
    let state = ds.report_state();
    let mut accs = vec![AgentAcc::default(); state.departments().len()];
    for (agent, acc) in agent_period(ds, q.call_type, p.start_ms, p.end_ms, now_ms, faults)
        .iter()
        .enumerate()
    {
        if let Some(d) = accs.get_mut(state.department_of(agent)) {
            d.add(acc);
        }
    }
    accs
}

/// Whether a value goes out as a numeric string: about one in four, fixed by indicator,
/// period and key so that refetching a period gives the same bytes.
fn as_string(name: &str, period_start: i64, key: usize) -> bool {
    let name_word = name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    hash(&[name_word, period_start as u64, key as u64]).is_multiple_of(4)
}

fn put(row: &mut Map<String, Value>, name: &str, kind: IndicatorKind, v: Val, stringly: bool) {
    let value = match (kind, v) {
        (IndicatorKind::Ratio, Val::Ratio(r)) => json!(r),
        (IndicatorKind::Ratio, Val::Int(i)) => json!(i as f64),
        (_, Val::Time(Some(t))) => json!(t),
        (_, Val::Time(None)) => json!(""),
        (_, Val::Int(i)) if stringly => Value::String(i.to_string()),
        (_, Val::Int(i)) => json!(i),
        (_, Val::Ratio(r)) => json!(r),
    };
    row.insert(name.to_string(), value);
}

/// A row's period: `[start, end)` in epoch ms of the whole period, `None` by key alone.
type Span = Option<(i64, i64)>;

/// The rows of a page and the totals: the one code path of server and ground truth.
struct Assembled {
    rows: Vec<Value>,
    periods: Vec<Span>,
    amount: Value,
    total: usize,
}

fn assemble<A: Acc>(
    q: &ReportQuery,
    tz: Tz,
    instants: bool,
    keys: &[(usize, KeyFields)],
    window: (usize, usize),
    mut per_period: impl FnMut(&Period) -> Vec<A>,
) -> Assembled {
    let n_keys = keys.len();
    let n_periods = match q.dims {
        Dims::KeyTime => periods(tz, q.date_type, q.start, q.end).count(),
        _ => 0,
    };
    let mut amount = A::default();
    let mut per_key = vec![A::default(); n_keys];
    let mut page: Vec<(usize, Value, Span)> = Vec::new();
    let mut total = 0usize;
    let want = |i: usize| (window.0..window.1).contains(&i);
    let row = |p: Option<&Period>, key: Option<(usize, &KeyFields)>, acc: &A| {
        let mut m = Map::new();
        let t = p.map(|p| p.local_start.and_utc().timestamp()).unwrap_or(0);
        let k = key.map(|(k, _)| k).unwrap_or(0);
        if let Some(p) = p {
            let spaced = ((t / 1800) as usize + k) % 3 == 2;
            m.insert(
                "result_date".to_string(),
                Value::String(result_date(q.date_type, p, spaced, instants)),
            );
        }
        if let Some((_, fields)) = key {
            for (name, v) in fields {
                m.insert((*name).to_string(), Value::String(v.clone()));
            }
        }
        for (name, kind) in &q.fields {
            let v = acc.value(name).unwrap_or(Val::Int(0));
            put(&mut m, name, *kind, v, as_string(name, t, k));
        }
        (
            Value::Object(m),
            p.map(|p| (p.full_start_ms, p.full_end_ms)),
        )
    };
    for p in periods(tz, q.date_type, q.start, q.end) {
        let accs = per_period(&p);
        let mut period_total = A::default();
        for (pos, (idx, fields)) in keys.iter().enumerate() {
            let Some(acc) = accs.get(*idx) else { continue };
            period_total.add(acc);
            match q.dims {
                Dims::TimeKey => {
                    let i = p.index * n_keys + pos;
                    if want(i) {
                        let (r, span) = row(Some(&p), Some((pos, fields)), acc);
                        page.push((i, r, span));
                    }
                }
                Dims::KeyTime => {
                    let i = pos * n_periods + p.index;
                    if want(i) {
                        let (r, span) = row(Some(&p), Some((pos, fields)), acc);
                        page.push((i, r, span));
                    }
                }
                Dims::Key => per_key[pos].add(acc),
                Dims::Time => {}
            }
        }
        match q.dims {
            Dims::Time => {
                if want(p.index) {
                    let (r, span) = row(Some(&p), None, &period_total);
                    page.push((p.index, r, span));
                }
                total += 1;
            }
            Dims::TimeKey | Dims::KeyTime => total += n_keys,
            Dims::Key => {}
        }
        amount.add(&period_total);
    }
    if q.dims == Dims::Key {
        for (pos, fields) in keys.iter().map(|(_, f)| f).enumerate() {
            if want(pos) {
                let (r, span) = row(None, Some((pos, fields)), &per_key[pos]);
                page.push((pos, r, span));
            }
        }
        total = n_keys;
    }
    page.sort_by_key(|(i, _, _)| *i);
    let mut amount_json = Map::new();
    for (name, kind) in &q.fields {
        let v = amount.value(name).unwrap_or(Val::Int(0));
        put(&mut amount_json, name, *kind, v, false);
    }
    let periods = page.iter().map(|(_, _, span)| *span).collect();
    Assembled {
        rows: page.into_iter().map(|(_, r, _)| r).collect(),
        periods,
        amount: Value::Object(amount_json),
        total,
    }
}

fn run(
    ds: &Dataset,
    q: &ReportQuery,
    tz: Tz,
    instants: bool,
    now_ms: i64,
    faults: &Faults,
    window: (usize, usize),
) -> Assembled {
    let keys = keys(ds, q);
    match q.family {
        Family::GatewayNumbers => assemble(q, tz, instants, &keys, window, |p| {
            gateway_period(ds, q, p, now_ms, faults)
        }),
        Family::Agents => assemble(q, tz, instants, &keys, window, |p| {
            agent_period(ds, q.call_type, p.start_ms, p.end_ms, now_ms, faults)
        }),
        Family::Departments => assemble(q, tz, instants, &keys, window, |p| {
            department_period(ds, q, p, now_ms, faults)
        }),
    }
}

impl Dataset {
    /// Ground truth: every row of report query `q` (all pages, in served order) and its
    /// `amount`, as the server computes them for a request with `timezoneid` `tz`, at
    /// simulated now `now`, under `faults` (which decide late records). This is the
    /// server's own code path; see the module docs of `sim::reports` for independent
    /// checks.
    pub fn report(
        &self,
        q: &ReportQuery,
        tz: Tz,
        now: DateTime<Utc>,
        faults: &Faults,
    ) -> ReportTable {
        let instants = self.dialect() == Dialect::Literal;
        let a = run(
            self,
            q,
            tz,
            instants,
            now.timestamp_millis(),
            faults,
            (0, usize::MAX),
        );
        ReportTable {
            rows: a.rows,
            periods: a.periods,
            amount: a.amount,
            total: a.total,
        }
    }
}

const BROKEN: &str = "simulated permanent failure for this time range";

/// Shared body of the three report endpoints.
async fn serve(shared: Arc<Shared>, ctx: RequestCtx, body: Bytes, family: Family) -> Response {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return envelope_error(400, &format!("invalid request body: {e}")),
        }
    };
    let q = match ReportQuery::parse(family, &body) {
        Ok(q) => q,
        Err(m) => return envelope_error(400, &m),
    };
    let (from, to) = q.range_ms(ctx.tz);
    if ctx.faults.broken_overlaps(from, to) {
        return failure(StatusCode::INTERNAL_SERVER_ERROR, 500, BROKEN);
    }
    let size = usize::try_from(q.page_size)
        .unwrap_or(usize::MAX)
        .min(shared.max_page_size);
    let window = page_window(
        q.curr_page,
        size,
        ctx.faults.shifting_page_size,
        shared.seed,
    );
    // A month of half hours is real work: keep it off the async workers.
    let ds = shared.dataset.clone();
    let curr_page = q.curr_page;
    // issue 13: the `Literal` dialect labels half hours and hours by their instants.
    let instants = shared.dialect == Dialect::Literal;
    let job = tokio::task::spawn_blocking(move || {
        run(&ds, &q, ctx.tz, instants, ctx.now_ms, &ctx.faults, window)
    });
    match job.await {
        Ok(a) => success_zero_in(
            shared.dialect,
            "JSONObject",
            json!({
                "metric": a.rows,
                "amount": a.amount,
                "total": a.total,
                "currPage": curr_page,
                "pageSize": size,
            }),
        ),
        Err(e) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            500,
            &format!("simulator report failed: {e}"),
        ),
    }
}

/// `POST /callservice/tm/tm-reports/gateway-number-table/_search`
pub(crate) async fn gateway_numbers(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    serve(shared, ctx, body, Family::GatewayNumbers).await
}

/// `POST /callservice/tm/tm-reports/agent-table/_search`
pub(crate) async fn agents(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    serve(shared, ctx, body, Family::Agents).await
}

/// `POST /callservice/tm/tm-reports/depart-table/_search`
pub(crate) async fn departments(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    body: Bytes,
) -> Response {
    serve(shared, ctx, body, Family::Departments).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimConfig;

    #[test]
    fn every_catalogue_indicator_has_a_value_of_its_kind() {
        let g = GatewayAcc::default();
        let a = AgentAcc::default();
        for family in Family::ALL {
            for ind in &catalogue(family).indicators {
                let v = match family {
                    Family::GatewayNumbers => g.value(&ind.name),
                    _ => a.value(&ind.name),
                };
                let ok = matches!(
                    (ind.kind, v),
                    (
                        IndicatorKind::Counter | IndicatorKind::Duration,
                        Some(Val::Int(_))
                    ) | (IndicatorKind::Ratio, Some(Val::Ratio(_)))
                        | (IndicatorKind::Timestamp, Some(Val::Time(_)))
                );
                assert!(ok, "{family:?} {} gives {v:?}", ind.name);
            }
        }
    }

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

    #[test]
    fn agent_period_splits_status_by_overlap() {
        let ds = Dataset::new(&SimConfig::default(), "http://sim/rec/".to_string());
        let from = SimConfig::default().epoch.timestamp_millis() + 5 * 3_600_000;
        let to = from + 1_800_000;
        let accs = agent_period(&ds, None, from, to, i64::MAX, &Faults::default());
        let mut expect = 0;
        ds.each_interval(from, to, i64::MAX, &Faults::default(), false, |i| {
            if i.agent == 0 && i.login != 0 {
                expect += i.end_ms.min(to) / 1000 - i.start_ms.max(from) / 1000;
            }
        });
        assert_eq!(accs[0].login, expect);
        assert!(expect > 0);
    }
}
