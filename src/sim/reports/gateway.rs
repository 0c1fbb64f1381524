//! The Relay Number Report: per relay number sums of one period's talks.

use std::collections::HashSet;

use super::query::ReportQuery;
use super::values::{Acc, Val, avg, ratio};
use crate::sim::config::Faults;
use crate::sim::dataset::Dataset;
use crate::sim::facts::{EFFECTIVE_TALK_SECS, GATEWAY_NUMBERS, TalkFact};
use crate::sim::periods::Period;

/// Sums behind the Relay Number Report.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct GatewayAcc {
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

/// Relay-number sums of one period, indexed like `GATEWAY_NUMBERS`.
pub(super) fn gateway_period(
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
