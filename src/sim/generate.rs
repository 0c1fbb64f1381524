//! The synthetic call centre: a pure function from (config, hour slot) to that hour's
//! calls, parties and agent status intervals.
//!
//! Hours are independent (each has its own random stream), so any hour can be produced
//! on demand without a global index, and call ids carry their hour and sequence number
//! so a partycdrs lookup finds its call by regenerating one hour.

use chrono::{TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::config::SimConfig;
use super::model::{Agent, AgentHistory, AttachedData, MaybeTime, Party, Talk};
use super::rng::{Rng, hash, tag, unit_from};

pub(crate) const HOUR_MS: i64 = 3_600_000;

/// Relative call volume per local hour of day: busy in office hours, quiet at night.
const DAY_CURVE: [f64; 24] = [
    0.15, 0.10, 0.08, 0.08, 0.08, 0.12, 0.30, 0.60, 1.20, 2.00, 2.20, 2.20, 1.80, 2.00, 2.20, 2.20,
    2.00, 1.80, 1.40, 0.90, 0.60, 0.45, 0.30, 0.20,
];

const AREAS: [(&str, &str, &str); 5] = [
    ("0871", "yunnan", "kunming"),
    ("010", "beijing", "beijing"),
    ("021", "shanghai", "shanghai"),
    ("020", "guangdong", "guangzhou"),
    ("0755", "guangdong", "shenzhen"),
];
const PHONE_PREFIXES: [&str; 4] = ["13", "15", "17", "18"];
const GATEWAYS: [&str; 3] = ["95588", "4008001234", "02161234567"];
const ROUTES: [(&str, &str); 3] = [
    ("3b36d0a056404a48b644c39ed82e22fe", "Main menu"),
    ("7f1c2a9e0b3d4c5e8f6a7b8c9d0e1f2a", "Billing"),
    ("a1b2c3d4e5f60718293a4b5c6d7e8f90", "Support"),
];
const FIRST_NAMES: [&str; 8] = ["Tom", "Lucy", "Wei", "Mei", "Jun", "Anna", "Ravi", "Sara"];
const LAST_NAMES: [&str; 6] = ["Zhang", "Li", "Tan", "Wong", "Lim", "Chen"];
const CUSTOMERS: [&str; 5] = ["ZhangSan", "LiSi", "WangWu", "Ah Hock", "Siti"];
const QUEUE_TAGS: [&str; 3] = ["vip", "standard", "callback"];

/// Bounds on what ids can encode: the hour in 8 hex digits, the sequence in 4.
const MAX_CALLS_PER_HOUR: usize = 0xFFFF;
pub(crate) const MAX_AGENTS: usize = 0xFFFF;

/// One call with its legs, as generated.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub talk: Talk,
    /// Position in generation order, which the call id encodes.
    pub seq: u16,
    pub parties: Vec<Party>,
    /// The call id without padding, for lookups and ordering.
    pub id: String,
    /// Draw in `[0, 1)` deciding whether the call arrives late (see `Faults::late_fraction`).
    pub late_u: f64,
    /// issue 15: draw in `[0, 1)` deciding whether the call is served preliminary first
    /// (see `Faults::revise_fraction`). Hashed from the call's place, not drawn from the
    /// call's stream, so adding it left every other value of the data set as it was.
    pub revise_u: f64,
}

/// Everything that starts in one hour slot, sorted as the API sorts it.
#[derive(Debug, Clone)]
pub(crate) struct Hour {
    pub calls: Vec<Call>,
    /// `calls` index by sequence number, for partycdrs lookups.
    pub by_seq: Vec<u32>,
    pub histories: Vec<AgentHistory>,
}

#[derive(Debug)]
pub(crate) struct Generator {
    seed: u64,
    epoch_ms: i64,
    calls_per_hour: f64,
    curve_mean: f64,
    tz: Tz,
    company_id: String,
    platform_id: String,
    /// `http://HOST:PORT/callservice/v6/cc-audios/recordings/`: a record URL is this, the
    /// call id and `record_suffix`.
    record_base: String,
    /// issue 13: what follows the id (the Literal dialect's trailing space).
    record_suffix: String,
    agents: Vec<Agent>,
}

impl Generator {
    /// `record_base` may hold `{id}` where the call id goes (issue 13); otherwise the id
    /// is appended.
    pub(crate) fn new(config: &SimConfig, record_base: String) -> Self {
        let (record_base, record_suffix) = match record_base.split_once("{id}") {
            Some((head, tail)) => (head.to_string(), tail.to_string()),
            None => (record_base, String::new()),
        };
        let seed = config.seed;
        let departments: Vec<String> = (0..3)
            .map(|d| hex128(&[seed, tag::AGENT, 1_000_000 + d]))
            .collect();
        let agents = (0..config.agents.min(MAX_AGENTS))
            .map(|i| {
                let i = i as u64;
                let mut r = Rng::new(&[seed, tag::AGENT, i]);
                let first = FIRST_NAMES[(i as usize) % FIRST_NAMES.len()];
                let last = LAST_NAMES[(i as usize / FIRST_NAMES.len()) % LAST_NAMES.len()];
                Agent {
                    uuid: hex128(&[seed, tag::AGENT, i, 1]),
                    id: (1001 + i).to_string(),
                    name: format!("{first} {last}"),
                    dn: (8001 + i).to_string(),
                    phone_type: r.pick(&[1u8, 1, 1, 3, 4]),
                    department_id: departments[r.index(departments.len())].clone(),
                }
            })
            .collect();
        Self {
            seed,
            epoch_ms: config.epoch.timestamp_millis(),
            calls_per_hour: config.calls_per_hour.max(0.0),
            curve_mean: DAY_CURVE.iter().sum::<f64>() / 24.0,
            tz: config.timezone,
            company_id: config.company_id.clone(),
            platform_id: hex128(&[seed, tag::COMPANY, 1]),
            record_base,
            record_suffix,
            agents,
        }
    }

    pub(crate) fn agents(&self) -> &[Agent] {
        &self.agents
    }

    pub(crate) fn company_id(&self) -> &str {
        &self.company_id
    }

    pub(crate) fn tz(&self) -> Tz {
        self.tz
    }

    /// The hour slot holding instant `ms`, or `None` before the epoch (or absurdly late).
    pub(crate) fn hour_of(&self, ms: i64) -> Option<u32> {
        if ms < self.epoch_ms {
            return None;
        }
        u32::try_from((ms - self.epoch_ms) / HOUR_MS).ok()
    }

    /// The hour slots that can hold instants in `[from_ms, to_ms]` (inclusive).
    pub(crate) fn hours_between(&self, from_ms: i64, to_ms: i64) -> impl Iterator<Item = u32> {
        let range = if to_ms < self.epoch_ms || to_ms < from_ms {
            None
        } else {
            let hi = self.hour_of(to_ms).unwrap_or(u32::MAX);
            self.hour_of(from_ms.max(self.epoch_ms)).map(|lo| lo..=hi)
        };
        range.into_iter().flatten()
    }

    pub(crate) fn hour_start_ms(&self, hour: u32) -> i64 {
        self.epoch_ms + i64::from(hour) * HOUR_MS
    }

    fn call_count(&self, hour: u32, rng: &mut Rng) -> usize {
        let start = self.hour_start_ms(hour);
        let middle = Utc
            .timestamp_millis_opt(start + HOUR_MS / 2)
            .single()
            .map(|t| t.with_timezone(&self.tz).hour())
            .unwrap_or(12);
        let weight = DAY_CURVE[middle as usize % 24] / self.curve_mean;
        let expected = self.calls_per_hour * weight * (0.8 + 0.4 * rng.unit());
        // Stochastic rounding keeps the long-run average exact for small rates.
        let n = (expected + rng.unit()).floor();
        (n.max(0.0) as usize).min(MAX_CALLS_PER_HOUR)
    }

    /// Everything that starts in hour slot `hour`.
    pub(crate) fn hour(&self, hour: u32) -> Hour {
        let h = u64::from(hour);
        let start = self.hour_start_ms(hour);
        let mut rng = Rng::new(&[self.seed, tag::HOUR_COUNT, h]);
        let n = self.call_count(hour, &mut rng);
        let mut starts: Vec<i64> = (0..n)
            .map(|_| start + rng.between(0, HOUR_MS - 1))
            .collect();
        starts.sort_unstable();
        let mut calls: Vec<Call> = starts
            .iter()
            .enumerate()
            .map(|(seq, t)| self.call(hour, seq as u16, *t))
            .collect();
        calls.sort_by(|a, b| (a.talk.start_time, &a.id).cmp(&(b.talk.start_time, &b.id)));
        let mut histories: Vec<AgentHistory> = (0..self.agents.len())
            .flat_map(|a| self.histories(hour, a))
            .collect();
        histories.sort_by(|a, b| (a.start_ms, &a.id).cmp(&(b.start_ms, &b.id)));
        let mut by_seq = vec![0u32; calls.len()];
        for (i, c) in calls.iter().enumerate() {
            by_seq[usize::from(c.seq)] = i as u32;
        }
        Hour {
            calls,
            by_seq,
            histories,
        }
    }

    fn call_id(&self, hour: u32, seq: u16) -> String {
        let a = hash(&[self.seed, tag::CALL_ID, u64::from(hour), u64::from(seq)]);
        format!(
            "{a:016x}{:04x}{hour:08x}{seq:04x}",
            (a >> 7) as u16 ^ (hour as u16)
        )
    }

    fn call(&self, hour: u32, seq: u16, start: i64) -> Call {
        let h = u64::from(hour);
        let mut r = Rng::new(&[self.seed, tag::CALL, h, u64::from(seq)]);
        let id = self.call_id(hour, seq);
        let served_id = if r.chance(0.1) {
            format!(" {id} ")
        } else {
            id.clone()
        };
        let inbound = r.chance(0.7);
        let call_type = if inbound { 2 } else { 3 };
        let mut customer = String::with_capacity(11);
        customer.push_str(r.pick(&PHONE_PREFIXES));
        r.digits(&mut customer, 9);
        let (area_code, area_province, area_city) = r.pick(&AREAS);
        let gateway = r.pick(&GATEWAYS);
        let answered = r.chance(if inbound { 0.82 } else { 0.6 }) && !self.agents.is_empty();
        let alert = start + r.between(0, 4_000);
        let (answer, bridge, end) = if answered {
            let answer = alert + r.between(2_000, 25_000);
            let bridge = answer + r.between(0, 1_500);
            (
                Some(answer),
                Some(bridge),
                bridge + r.between(5_000, 1_100_000),
            )
        } else {
            (None, None, alert + r.between(3_000, 60_000))
        };

        let mut parties = Vec::new();
        if let (Some(answer), Some(bridge)) = (answer, bridge) {
            let mut legs = match r.below(100) {
                0..70 => 1,
                70..92 => 2,
                _ => 3,
            };
            legs = legs.min(self.agents.len()).max(1);
            if end - bridge < 4_000 * legs as i64 {
                legs = 1;
            }
            let agents = self.distinct_agents(&mut r, legs);
            let mut cuts: Vec<i64> = (1..legs)
                .map(|_| r.between(bridge + 2_000, end - 2_000))
                .collect();
            cuts.sort_unstable();
            let hangup = r.pick(&[1u8, 2]);
            for (leg, agent) in agents.iter().enumerate() {
                let leg_start = if leg == 0 { alert } else { cuts[leg - 1] };
                let leg_end = cuts.get(leg).copied().unwrap_or(end);
                let (leg_answer, leg_bridge) = if leg == 0 {
                    (answer, bridge)
                } else {
                    let t = leg_start + r.between(1_000, 8_000).min((leg_end - leg_start) / 2);
                    (t, t)
                };
                let last = leg + 1 == legs;
                let p = self.party(PartyDraft {
                    hour,
                    seq,
                    leg,
                    served_id: &served_id,
                    call_type,
                    dial_type: if leg == 0 { 1 } else { 2 },
                    agent: *agent,
                    gateway,
                    start: leg_start,
                    answer: Some(leg_answer),
                    bridge: Some(leg_bridge),
                    end: leg_end,
                    call_result: 3,
                    hangup: if last { hangup } else { 2 },
                    last,
                    rng: &mut r,
                });
                parties.push(p);
            }
        } else if !self.agents.is_empty() && (!inbound || r.chance(0.5)) {
            // A missed inbound ring, or the agent's own leg of an outbound call nobody took.
            let agent = self.distinct_agents(&mut r, 1)[0];
            let (leg_start, leg_answer, result) = if inbound {
                (alert, None, 2)
            } else {
                (
                    start,
                    Some(start + r.between(300, 2_000).min(end - start)),
                    3,
                )
            };
            let p = self.party(PartyDraft {
                hour,
                seq,
                leg: 0,
                served_id: &served_id,
                call_type,
                dial_type: 1,
                agent,
                gateway,
                start: leg_start,
                answer: leg_answer,
                bridge: None,
                end,
                call_result: result,
                hangup: 1,
                last: true,
                rng: &mut r,
            });
            parties.push(p);
        }

        let no_time = || match r_shape(hash(&[self.seed, tag::CALL, h, u64::from(seq), 9])) {
            0 => MaybeTime::Empty,
            1 => MaybeTime::Null,
            _ => MaybeTime::Absent,
        };
        let first = parties
            .first()
            .filter(|_| answered)
            .map(|p| self.agents_of(p));
        let last_agent = parties.last().map(|p| self.agents_of(p));
        let (route_id, route_name) = if inbound { r.pick(&ROUTES) } else { ("", "") };
        let fee_seconds = answer.map(|a| (end - a) / 1000).unwrap_or(0);
        let talk = Talk {
            call_id: served_id,
            call_type,
            screen_number: customer.clone(),
            customer_number: customer,
            area_code,
            area_province,
            area_city,
            gateway_number: gateway,
            start_time: start,
            alert_time: alert,
            answer_time: answer.map(MaybeTime::Ms).unwrap_or_else(no_time),
            bridge_time: bridge.map(MaybeTime::Ms).unwrap_or_else(no_time),
            end_time: end,
            alert_duration: (answer.unwrap_or(end) - alert) / 1000,
            duration: bridge.map(|b| (end - b) / 1000).unwrap_or(0).to_string(),
            total_duration: ((end - start) / 1000).to_string(),
            call_result: match (answered, inbound) {
                (true, _) => 8,
                (false, true) => r.pick(&[4u8, 5, 6, 6, 6, 22]),
                (false, false) => 7,
            },
            hangup_disposition: r.between(1, 3) as u8,
            record_url: if answered {
                format!("{}{id}{}", self.record_base, self.record_suffix)
            } else {
                String::new()
            },
            platform_id: self.platform_id.clone(),
            company_id: self.company_id.clone(),
            fee_seconds,
            fee_minutes: (fee_seconds + 59) / 60,
            first_route_id: route_id,
            first_route_name: route_name,
            first_agent_uuid: first.map(|a| a.uuid.clone()).unwrap_or_default(),
            first_agent_id: first.map(|a| a.id.clone()).unwrap_or_default(),
            first_agent_name: first.map(|a| a.name.clone()).unwrap_or_default(),
            last_agent_uuid: last_agent.map(|a| a.uuid.clone()).unwrap_or_default(),
            last_agent_name: last_agent.map(|a| a.name.clone()).unwrap_or_default(),
            last_agent_id: last_agent.map(|a| a.id.clone()).unwrap_or_default(),
            last_agent_dn: last_agent.map(|a| a.dn.clone()).unwrap_or_default(),
            last_agent_phone_type: last_agent.map(|a| a.phone_type).unwrap_or(0),
            transfer_count: if answered {
                parties.len().saturating_sub(1) as u32
            } else {
                0
            },
            consult_count: u32::from(answered && r.chance(0.05)),
            source_type: 0,
            source_id: String::new(),
            attached_data: r.chance(0.5).then(|| AttachedData {
                customer_name: r.pick(&CUSTOMERS),
                order_no: format!("ORD-{:06}", r.below(1_000_000)),
            }),
            queue_tag: r.chance(0.05).then(|| r.pick(&QUEUE_TAGS)),
        };
        let mut talk = talk;
        if r.chance(0.1) {
            talk.source_type = 2;
            talk.source_id = hex128(&[self.seed, tag::CALL, h, u64::from(seq), 2]);
        }
        Call {
            talk,
            seq,
            parties,
            id,
            late_u: unit_from(hash(&[self.seed, tag::LATE, 0, h, u64::from(seq)])),
            revise_u: unit_from(hash(&[self.seed, tag::REVISE, h, u64::from(seq)])),
        }
    }

    fn agents_of(&self, p: &Party) -> &Agent {
        // Parties are built from our own agents, so the id is always found; fall back to
        // the first agent rather than panic should that ever change.
        self.agents
            .iter()
            .find(|a| a.uuid == p.agent_uuid)
            .unwrap_or(&self.agents[0])
    }

    fn distinct_agents(&self, r: &mut Rng, n: usize) -> Vec<usize> {
        let mut picked: Vec<usize> = Vec::with_capacity(n);
        while picked.len() < n.min(self.agents.len()) {
            let a = r.below(self.agents.len() as u64) as usize;
            if !picked.contains(&a) {
                picked.push(a);
            }
        }
        picked
    }

    fn party(&self, d: PartyDraft<'_>) -> Party {
        let agent = &self.agents[d.agent];
        let a = hash(&[
            self.seed,
            tag::PARTY_ID,
            u64::from(d.hour),
            u64::from(d.seq),
            d.leg as u64,
        ]);
        let party_id = format!(
            "{a:016x}{:02x}{:08x}{:04x}{:02x}",
            (a >> 9) as u8,
            d.hour,
            d.seq,
            d.leg as u8
        );
        let pstn = agent.phone_type == 3;
        let mut dnis = String::new();
        if pstn {
            dnis.push_str("186");
            d.rng.digits(&mut dnis, 8);
        }
        let fee_seconds = d.answer.map(|t| (d.end - t) / 1000).unwrap_or(0);
        let fee_minutes = (fee_seconds + 59) / 60;
        Party {
            call_id: d.served_id.to_string(),
            call_type: d.call_type,
            party_id,
            dial_type: d.dial_type,
            agent_type: 1,
            agent_role: 2,
            phone_type: agent.phone_type,
            agent_uuid: agent.uuid.clone(),
            agent_id: agent.id.clone(),
            agent_name: agent.name.clone(),
            agent_dn: agent.dn.clone(),
            dnis,
            gateway_number: if pstn { d.gateway } else { "" },
            start_time: d.start,
            alert_time: d.start,
            answer_time: d.answer,
            bridge_time: d.bridge,
            end_time: d.end,
            duration: d.bridge.map(|b| (d.end - b) / 1000).unwrap_or(0),
            call_result: d.call_result,
            hangup_disposition: d.hangup,
            platform_id: self.platform_id.clone(),
            company_id: self.company_id.clone(),
            department_id: agent.department_id.clone(),
            fee: (fee_minutes as f64 * 6.0).round() / 100.0,
            fee_seconds,
            fee_minutes,
            last_agent_flag: d.last,
            belong_agent_flag: d.last,
        }
    }

    /// The status intervals of agent `a` that start in hour slot `hour`: a chain of
    /// 1-20 minute intervals from near the top of the hour; the last may run past it.
    fn histories(&self, hour: u32, a: usize) -> Vec<AgentHistory> {
        let h = u64::from(hour);
        let mut r = Rng::new(&[self.seed, tag::HISTORY, h, a as u64]);
        let hour_start = self.hour_start_ms(hour);
        let hour_end = hour_start + HOUR_MS;
        let mut t = hour_start + r.between(0, 119_999);
        let mut out = Vec::new();
        let mut idx: u16 = 0;
        while t < hour_end {
            let len = r.between(60_000, 1_200_000);
            let (login, no_ready, work) = match r.below(10) {
                0 => (0u8, 0u8, 0u8),
                1 | 2 => (2, r.pick(&[2u8, 11, 12, 13, 14]), 2),
                _ => (1, 0, r.pick(&[1u8, 1, 4, 5, 6, 7, 7, 7, 8])),
            };
            let x = hash(&[self.seed, tag::HISTORY_ID, h, a as u64, u64::from(idx)]);
            out.push(AgentHistory {
                id: format!(
                    "{x:016x}{:04x}{hour:08x}{:04x}{idx:04x}",
                    (x >> 5) as u16,
                    a as u16
                ),
                agent: a,
                start_ms: t,
                end_ms: t + len,
                duration: (len / 1000).to_string(),
                login_status: login,
                no_ready_status: no_ready,
                work_status: work,
                late_u: unit_from(hash(&[
                    self.seed,
                    tag::LATE,
                    1,
                    h,
                    a as u64,
                    u64::from(idx),
                ])),
            });
            t += len;
            idx = idx.wrapping_add(1);
        }
        out
    }
}

/// Which "no time" shape an unanswered call uses: 0 `""`, 1 null, 2 absent.
fn r_shape(h: u64) -> u64 {
    h % 3
}

struct PartyDraft<'a> {
    hour: u32,
    seq: u16,
    leg: usize,
    served_id: &'a str,
    call_type: u8,
    dial_type: u8,
    agent: usize,
    gateway: &'static str,
    start: i64,
    answer: Option<i64>,
    bridge: Option<i64>,
    end: i64,
    call_result: u8,
    hangup: u8,
    last: bool,
    rng: &'a mut Rng,
}

/// 32 lower-hex digits from a hash of `parts`.
fn hex128(parts: &[u64]) -> String {
    let a = hash(parts);
    let b = super::rng::mix64(a ^ 0xA5A5_A5A5_A5A5_A5A5);
    format!("{a:016x}{b:016x}")
}

/// The hour slot and sequence number a call id encodes, if it is one of ours in shape.
pub(crate) fn decode_call_id(id: &str) -> Option<(u32, u16)> {
    let id = id.trim();
    if id.len() != 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let hour = u32::from_str_radix(&id[20..28], 16).ok()?;
    let seq = u16::from_str_radix(&id[28..32], 16).ok()?;
    Some((hour, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator() -> Generator {
        Generator::new(&SimConfig::default(), "http://sim/rec/".to_string())
    }

    #[test]
    fn hours_are_deterministic_and_sorted() {
        let g = generator();
        let a = g.hour(100);
        let b = generator().hour(100);
        assert_eq!(a.calls.len(), b.calls.len());
        assert!(
            a.calls
                .iter()
                .zip(&b.calls)
                .all(|(x, y)| x.talk == y.talk && x.parties == y.parties)
        );
        assert!(
            a.calls
                .windows(2)
                .all(|w| w[0].talk.start_time <= w[1].talk.start_time)
        );
        assert!(
            a.histories
                .windows(2)
                .all(|w| w[0].start_ms <= w[1].start_ms)
        );
    }

    #[test]
    fn call_ids_encode_hour_and_sequence() {
        let g = generator();
        for hour in [0u32, 17, 5000] {
            for call in g.hour(hour).calls {
                assert_eq!(call.talk.call_id.trim(), call.id);
                let (h, seq) = decode_call_id(&call.talk.call_id).unwrap_or((u32::MAX, 0));
                assert_eq!(h, hour);
                assert_eq!(g.call_id(h, seq), call.id);
            }
        }
        assert_eq!(decode_call_id("not-an-id"), None);
    }

    #[test]
    fn calls_are_consistent_with_their_parties() {
        let g = generator();
        let start = g.hour_start_ms(10);
        let mut answered = 0;
        for call in g.hour(10).calls {
            let t = &call.talk;
            assert!(t.start_time >= start && t.start_time < start + HOUR_MS);
            assert!(t.end_time >= t.start_time && t.end_time - t.start_time <= 20 * 60_000);
            for p in &call.parties {
                assert_eq!(p.call_id, t.call_id);
                assert!(p.start_time >= t.start_time && p.end_time <= t.end_time);
            }
            if t.call_result == 8 {
                answered += 1;
                assert!(!call.parties.is_empty());
                assert!(t.record_url.ends_with(&call.id));
                assert_eq!(
                    call.parties.iter().filter(|p| p.belong_agent_flag).count(),
                    1
                );
            }
        }
        assert!(answered > 0);
    }

    #[test]
    fn day_curve_averages_to_calls_per_hour() {
        let g = generator();
        let total: usize = (0..24 * 14).map(|h| g.hour(h).calls.len()).sum();
        let per_hour = total as f64 / (24.0 * 14.0);
        assert!((per_hour - 60.0).abs() < 6.0, "{per_hour}");
        // Singapore is UTC+8: UTC 02:00-03:00 is 10:00 local (busy), UTC 18:00 is 02:00 local.
        let busy: usize = (0..14).map(|d| g.hour(d * 24 + 2).calls.len()).sum();
        let night: usize = (0..14).map(|d| g.hour(d * 24 + 18).calls.len()).sum();
        assert!(busy > night * 5, "busy {busy} night {night}");
    }

    #[test]
    fn history_chains_start_within_their_hour() {
        let g = generator();
        let hour = g.hour(3);
        let start = g.hour_start_ms(3);
        assert!(!hour.histories.is_empty());
        for rec in &hour.histories {
            assert!(rec.start_ms >= start && rec.start_ms < start + HOUR_MS);
            let len = rec.end_ms - rec.start_ms;
            assert!((60_000..=1_200_000).contains(&len));
        }
        let mut ids: Vec<&str> = hour.histories.iter().map(|h| h.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), hour.histories.len());
    }
}
