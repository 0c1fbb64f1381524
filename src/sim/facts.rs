//! What the statistical reports and the agent metrics count, read one hour slot at a time
//! from the generated data plus any restatements.
//!
//! Reports never see `Talk`/`Party`/`AgentHistory` directly: they see [`TalkFact`]s and
//! [`IntervalFact`]s. That keeps the aggregation code independent of the wire structs
//! and lets restatements (synthetic records that exist for reports only) enter through
//! the same door as generated data, so every report and `amount` counts them alike.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use chrono::{Datelike, Duration, NaiveDate};
use chrono_tz::Tz;

use super::config::{Faults, SimConfig};
use super::dataset::Dataset;
use super::generate::{Call, HOUR_MS};
use super::model::Agent;
use super::rng::hash;
use crate::core::timeutil::local_midnight;

/// The relay numbers the generator gives talks. `generate.rs` keeps its table private,
/// so it is repeated here; a unit test checks generated talks never leave this set.
pub(crate) const GATEWAY_NUMBERS: [&str; 3] = ["95588", "4008001234", "02161234567"];

/// Calls whose talk lasts at least this long count as "effective" (the "Xs" indicators).
pub(crate) const EFFECTIVE_TALK_SECS: i64 = 30;

/// How far before a range an agent-history interval may start and still reach into it.
/// Generated intervals last at most 20 minutes, so one hour is a safe bound.
pub(crate) const HISTORY_REACH_MS: i64 = HOUR_MS;

/// Restatements per day are capped so their synthetic talks stay inside the day.
pub(crate) const MAX_RESTATED_TALKS: u32 = 100;

/// Names for the departments, in the order of their sorted ids.
const DEPARTMENT_NAMES: [&str; 6] = [
    "Customer Service",
    "Sales",
    "Technical Support",
    "Billing",
    "Retention",
    "Back Office",
];

/// A tag for restatement draws, disjoint from the generator's tags.
const TAG_RESTATE: u64 = 101;

/// One agent leg of a talk, reduced to what reports count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LegFact {
    pub agent: usize,
    /// The first leg (a direct ring); later legs are transfers.
    pub first: bool,
    /// Connected to the customer (a bridge time).
    pub bridged: bool,
    /// Seconds from bridge to end, as the party's `duration`.
    pub talk_s: i64,
    /// Seconds from the leg's start to its end.
    pub total_s: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One talk, reduced to what reports count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TalkFact<'a> {
    pub start_ms: i64,
    pub end_ms: i64,
    /// 2 inbound, 3 outbound.
    pub call_type: u8,
    pub gateway: &'a str,
    pub customer: &'a str,
    /// An agent answered (callResult 8).
    pub answered: bool,
    /// Inbound and never answered by the system (callResult 4).
    pub system_missed: bool,
    /// Seconds from bridge to end (the talk's `duration`).
    pub talk_s: i64,
    /// Seconds from start to end (the talk's `totalDuration`).
    pub total_s: i64,
    pub legs: Vec<LegFact>,
}

/// One agent status interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct IntervalFact {
    pub agent: usize,
    pub start_ms: i64,
    pub end_ms: i64,
    pub login: u8,
    pub no_ready: u8,
    pub work: u8,
}

/// Report-side state of a data set: who is who, restatements and the plan-shape switch.
#[derive(Debug)]
pub(crate) struct ReportState {
    seed: u64,
    tz: Tz,
    agent_index: HashMap<String, usize>,
    /// Sorted department ids and their names.
    departments: Vec<(String, String)>,
    /// Agent index -> position in `departments`.
    agent_department: Vec<usize>,
    /// Local day (in the simulator's zone) -> restated talk pairs.
    restated: RwLock<BTreeMap<NaiveDate, u32>>,
    check_plan_single: AtomicBool,
}

impl ReportState {
    pub(crate) fn new(config: &SimConfig, agents: &[Agent]) -> Self {
        let agent_index = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.uuid.clone(), i))
            .collect();
        let mut ids: Vec<String> = agents.iter().map(|a| a.department_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let departments: Vec<(String, String)> = ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                let base = DEPARTMENT_NAMES[i % DEPARTMENT_NAMES.len()];
                let name = if i < DEPARTMENT_NAMES.len() {
                    base.to_string()
                } else {
                    format!("{base} {}", i / DEPARTMENT_NAMES.len() + 1)
                };
                (id, name)
            })
            .collect();
        let agent_department = agents
            .iter()
            .map(|a| {
                departments
                    .iter()
                    .position(|(id, _)| *id == a.department_id)
                    .unwrap_or(0)
            })
            .collect();
        Self {
            seed: config.seed,
            tz: config.timezone,
            agent_index,
            departments,
            agent_department,
            restated: RwLock::new(BTreeMap::new()),
            check_plan_single: AtomicBool::new(config.check_plan_single_object),
        }
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn departments(&self) -> &[(String, String)] {
        &self.departments
    }

    pub(crate) fn department_of(&self, agent: usize) -> usize {
        self.agent_department.get(agent).copied().unwrap_or(0)
    }

    pub(crate) fn check_plan_single(&self) -> bool {
        self.check_plan_single.load(Ordering::Relaxed)
    }

    pub(crate) fn set_check_plan_single(&self, single: bool) {
        self.check_plan_single.store(single, Ordering::Relaxed);
    }

    /// Sets the restated talk pairs of `date` (0 removes the restatement); returns the
    /// count actually applied (capped at [`MAX_RESTATED_TALKS`]).
    pub(crate) fn restate(&self, date: NaiveDate, pairs: u32) -> u32 {
        let pairs = pairs.min(MAX_RESTATED_TALKS);
        let mut m = self
            .restated
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if pairs == 0 {
            m.remove(&date);
        } else {
            m.insert(date, pairs);
        }
        pairs
    }

    pub(crate) fn restatements(&self) -> BTreeMap<NaiveDate, u32> {
        self.restated
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The synthetic records of every restatement whose day overlaps `[from_ms, to_ms)`
    /// (generous: callers filter by time). Each unit is an answered inbound talk, an
    /// answered outbound talk and the agent's talking interval during the inbound one.
    fn synthetic(&self, from_ms: i64, to_ms: i64, agents: usize) -> Vec<Synthetic> {
        if agents == 0 {
            return Vec::new();
        }
        let days = self.restatements();
        let mut out = Vec::new();
        for (date, pairs) in days {
            let start = local_midnight(self.tz, date);
            let end = local_midnight(self.tz, date + Duration::days(1));
            if end.timestamp_millis() <= from_ms || start.timestamp_millis() >= to_ms {
                continue;
            }
            let day_no = u64::try_from(date.num_days_from_ce()).unwrap_or(0);
            for k in 0..pairs {
                let base = start.timestamp_millis() + 12 * HOUR_MS + i64::from(k) * 300_000;
                let h = hash(&[self.seed, TAG_RESTATE, day_no, u64::from(k)]);
                out.push(Synthetic {
                    base_ms: base,
                    agent: (h % agents as u64) as usize,
                    gateway: GATEWAY_NUMBERS[((h >> 20) % 3) as usize],
                    customer: format!("186{:08}", (h >> 32) % 100_000_000),
                });
            }
        }
        out
    }
}

/// One restatement unit; its records are derived from these few numbers.
struct Synthetic {
    base_ms: i64,
    agent: usize,
    gateway: &'static str,
    customer: String,
}

impl Synthetic {
    const IN_BRIDGE_MS: i64 = 6_000;
    const IN_TALK_MS: i64 = 90_000;
    const OUT_OFFSET_MS: i64 = 120_000;
    const OUT_BRIDGE_MS: i64 = 10_000;
    const OUT_TALK_MS: i64 = 45_000;

    fn talks(&self) -> [TalkFact<'_>; 2] {
        let talk = |start: i64, bridge_after: i64, talk_ms: i64, call_type: u8| {
            let end = start + bridge_after + talk_ms;
            TalkFact {
                start_ms: start,
                end_ms: end,
                call_type,
                gateway: self.gateway,
                customer: &self.customer,
                answered: true,
                system_missed: false,
                talk_s: talk_ms / 1000,
                total_s: (end - start) / 1000,
                legs: vec![LegFact {
                    agent: self.agent,
                    first: true,
                    bridged: true,
                    talk_s: talk_ms / 1000,
                    total_s: (end - start) / 1000,
                    start_ms: start,
                    end_ms: end,
                }],
            }
        };
        [
            talk(self.base_ms, Self::IN_BRIDGE_MS, Self::IN_TALK_MS, 2),
            talk(
                self.base_ms + Self::OUT_OFFSET_MS,
                Self::OUT_BRIDGE_MS,
                Self::OUT_TALK_MS,
                3,
            ),
        ]
    }

    fn interval(&self) -> IntervalFact {
        let start = self.base_ms + Self::IN_BRIDGE_MS;
        IntervalFact {
            agent: self.agent,
            start_ms: start,
            end_ms: start + Self::IN_TALK_MS,
            login: 1,
            no_ready: 0,
            work: 7,
        }
    }
}

fn talk_fact<'a>(call: &'a Call, index: &HashMap<String, usize>) -> TalkFact<'a> {
    let t = &call.talk;
    let legs = call
        .parties
        .iter()
        .filter_map(|p| {
            let agent = *index.get(&p.agent_uuid)?;
            Some(LegFact {
                agent,
                first: p.dial_type == 1,
                bridged: p.bridge_time.is_some(),
                talk_s: p.duration,
                total_s: (p.end_time - p.start_time) / 1000,
                start_ms: p.start_time,
                end_ms: p.end_time,
            })
        })
        .collect();
    TalkFact {
        start_ms: t.start_time,
        end_ms: t.end_time,
        call_type: t.call_type,
        gateway: t.gateway_number,
        customer: &t.customer_number,
        answered: t.call_result == 8,
        system_missed: t.call_type == 2 && t.call_result == 4,
        talk_s: t.duration.parse().unwrap_or(0),
        total_s: t.total_duration.parse().unwrap_or(0),
        legs,
    }
}

impl Dataset {
    /// Calls `f` with every talk that starts in `[from_ms, to_ms)` and is visible at
    /// `now_ms` under `faults`, hour by hour (memory stays one hour's worth), then with
    /// the restated talks of that range.
    pub(crate) fn each_talk(
        &self,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
        faults: &Faults,
        mut f: impl FnMut(&TalkFact<'_>),
    ) {
        if to_ms <= from_ms {
            return;
        }
        let state = self.report_state();
        let range = from_ms..to_ms;
        for h in self.generator().hours_between(from_ms, to_ms - 1) {
            let hour = self.hour(h);
            for call in &hour.calls {
                if range.contains(&call.talk.start_time) && call.visible_at(faults) <= now_ms {
                    f(&talk_fact(call, &state.agent_index));
                }
            }
        }
        for s in state.synthetic(from_ms, to_ms, self.generator().agents().len()) {
            for t in s.talks() {
                if range.contains(&t.start_ms) && t.end_ms <= now_ms {
                    f(&t);
                }
            }
        }
    }

    /// Calls `f` with every agent-status interval overlapping `[from_ms, to_ms)` that is
    /// visible at `now_ms` (or, with `in_progress`, has started by then), restatements
    /// included.
    pub(crate) fn each_interval(
        &self,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
        faults: &Faults,
        in_progress: bool,
        mut f: impl FnMut(&IntervalFact),
    ) {
        if to_ms <= from_ms {
            return;
        }
        let shown = |start: i64, visible_at: i64| {
            if in_progress {
                start <= now_ms
            } else {
                visible_at <= now_ms
            }
        };
        let state = self.report_state();
        for h in self
            .generator()
            .hours_between(from_ms - HISTORY_REACH_MS, to_ms - 1)
        {
            let hour = self.hour(h);
            for r in &hour.histories {
                if r.start_ms < to_ms
                    && r.end_ms > from_ms
                    && shown(r.start_ms, r.visible_at(faults))
                {
                    f(&IntervalFact {
                        agent: r.agent,
                        start_ms: r.start_ms,
                        end_ms: r.end_ms,
                        login: r.login_status,
                        no_ready: r.no_ready_status,
                        work: r.work_status,
                    });
                }
            }
        }
        for s in state.synthetic(
            from_ms - HISTORY_REACH_MS,
            to_ms,
            self.generator().agents().len(),
        ) {
            let i = s.interval();
            if i.start_ms < to_ms && i.end_ms > from_ms && shown(i.start_ms, i.end_ms) {
                f(&i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_gateways_and_history_lengths_stay_within_the_assumptions() {
        let ds = Dataset::new(&SimConfig::default(), "http://sim/rec/".to_string());
        for h in [0u32, 9, 33, 200] {
            let hour = ds.hour(h);
            assert!(
                hour.calls
                    .iter()
                    .all(|c| GATEWAY_NUMBERS.contains(&c.talk.gateway_number))
            );
            assert!(
                hour.histories
                    .iter()
                    .all(|r| r.end_ms - r.start_ms <= HISTORY_REACH_MS)
            );
        }
    }

    #[test]
    fn restatements_add_one_talk_pair_per_unit_inside_the_day() {
        let config = SimConfig::default();
        let ds = Dataset::new(&config, "http://sim/rec/".to_string());
        let day = NaiveDate::from_ymd_opt(2024, 1, 3).unwrap_or_default();
        let from = local_midnight(config.timezone, day).timestamp_millis();
        let to = from + 24 * HOUR_MS;
        let count = |ds: &Dataset| {
            let mut n = 0;
            ds.each_talk(from, to, i64::MAX, &Faults::default(), |_| n += 1);
            n
        };
        let before = count(&ds);
        assert_eq!(ds.report_state().restate(day, 3), 3);
        assert_eq!(count(&ds), before + 6);
        assert_eq!(ds.report_state().restate(day, 0), 0);
        assert_eq!(count(&ds), before);
        assert_eq!(ds.report_state().restate(day, 10_000), MAX_RESTATED_TALKS);
        // Even the largest restatement keeps all its talks inside the day.
        assert_eq!(count(&ds), before + 2 * MAX_RESTATED_TALKS as usize);
    }
}
