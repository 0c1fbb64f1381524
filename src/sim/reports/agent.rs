//! The Agent and Department Reports: per agent sums of legs and status intervals, and
//! departments as the sums of their agents.

use super::query::ReportQuery;
use super::values::{Acc, Val, avg, ratio};
use crate::sim::config::Faults;
use crate::sim::dataset::Dataset;
use crate::sim::facts::{EFFECTIVE_TALK_SECS, IntervalFact, LegFact};
use crate::sim::periods::Period;

/// Sums behind the Agent and Department Reports. Status durations are in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct AgentAcc {
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
    fn leg(&mut self, call_type: u8, leg: &LegFact) {
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

/// Agent sums of one period, indexed by agent.
pub(super) fn agent_period(
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
pub(super) fn department_period(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimConfig;

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
