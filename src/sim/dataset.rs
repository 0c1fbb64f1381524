//! The data set behind the server: generated hours through a small cache, lookups by
//! call id, and the ground-truth view tests compare against.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::cache::HourCache;
use super::config::{Dialect, Faults, SimConfig};
use super::facts::ReportState;
use super::generate::{Call, Generator, Hour, decode_call_id};
use super::localtime::format_minute;
use super::model::{AgentHistory, AgentHistoryJson, Party, Talk};

/// How many generated hours stay in memory: a day-long window plus slack.
const CACHED_HOURS: usize = 64;

/// The simulator's synthetic data. Cloning is cheap and clones share the cache.
#[derive(Clone)]
pub struct Dataset {
    inner: Arc<Inner>,
}

struct Inner {
    generator: Generator,
    cache: HourCache,
    /// Restatements and report-serving switches: kept with the data, since clones held
    /// by tests must see the same restated figures as the server.
    reports: ReportState,
    /// issue 13: the answer forms served, so that `Dataset::report` renders report
    /// periods as the server does.
    dialect: Dialect,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset").finish_non_exhaustive()
    }
}

impl Dataset {
    /// `record_base` prefixes record URLs (`http://HOST:PORT/callservice/v6/cc-audios/recordings/`).
    pub(crate) fn new(config: &SimConfig, record_base: String) -> Self {
        let generator = Generator::new(config, record_base);
        let reports = ReportState::new(config, generator.agents());
        Self {
            inner: Arc::new(Inner {
                generator,
                cache: HourCache::new(CACHED_HOURS),
                reports,
                dialect: config.dialect,
            }),
        }
    }

    pub(crate) fn report_state(&self) -> &ReportState {
        &self.inner.reports
    }

    /// issue 13: the dialect of the server this data set belongs to.
    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// Restates local day `date` (in the simulator's configured zone) with `pairs`
    /// extra answered talk pairs (0 withdraws it); returns the pairs applied, at most 100.
    ///
    /// A restatement is what the real service does when it recomputes a day's report
    /// tables: every report covering the day (the day, its half hours and hours, and the
    /// weeks and months holding it) counts, per pair, one answered inbound talk, one
    /// answered outbound talk (same agent, relay number and customer; from 12:00 local,
    /// 5 minutes apart per pair) and that agent's 90 s talking interval, consistently
    /// in rows and `amount`, and so does the View Agent Indicator's counts. The talk,
    /// party and agent-history searches and `talks`/`agent_histories` here do not change:
    /// restatements are report-side only. Clones of this data set share restatements.
    pub fn restate(&self, date: chrono::NaiveDate, pairs: u32) -> u32 {
        self.inner.reports.restate(date, pairs)
    }

    /// The restatements in force: local day -> extra talk pairs.
    pub fn restatements(&self) -> std::collections::BTreeMap<chrono::NaiveDate, u32> {
        self.inner.reports.restatements()
    }

    pub(crate) fn generator(&self) -> &Generator {
        &self.inner.generator
    }

    pub(crate) fn hour(&self, hour: u32) -> Arc<Hour> {
        let g = &self.inner.generator;
        self.inner.cache.get_or_make(hour, || g.hour(hour))
    }

    /// The hours that can hold instants in `[from_ms, to_ms]`.
    pub(crate) fn hours(&self, from_ms: i64, to_ms: i64) -> Vec<Arc<Hour>> {
        self.inner
            .generator
            .hours_between(from_ms, to_ms)
            .map(|h| self.hour(h))
            .collect()
    }

    /// The hour holding call `id` (padded or not) and the call's index in it.
    pub(crate) fn find_call(&self, id: &str) -> Option<(Arc<Hour>, usize)> {
        let (hour, seq) = decode_call_id(id)?;
        // Ids naming hours past the epoch range or sequences past the hour's calls are not ours.
        let h = self.hour(hour);
        let idx = *h.by_seq.get(usize::from(seq))? as usize;
        (h.calls.get(idx)?.id == id.trim()).then_some((h, idx))
    }

    pub(crate) fn history_json<'a>(
        &'a self,
        rec: &'a AgentHistory,
        tz: Tz,
    ) -> AgentHistoryJson<'a> {
        let g = &self.inner.generator;
        let agent = &g.agents()[rec.agent];
        AgentHistoryJson {
            id: &rec.id,
            company_id: g.company_id(),
            agent_uuid: &agent.uuid,
            agent_id: &agent.id,
            agent_name: &agent.name,
            agent_type: 1,
            this_dn: &agent.dn,
            start_time: format_minute(tz, rec.start_ms),
            end_time: format_minute(tz, rec.end_ms),
            start_time_ms: rec.start_ms,
            end_time_ms: rec.end_ms,
            duration: &rec.duration,
            login_status: rec.login_status,
            no_ready_status: rec.no_ready_status,
            work_status: rec.work_status,
        }
    }

    /// Ground truth: every talk with startTime in `[from, to)`, as served in `list` with
    /// `hideNumber` 2, whether or not it is visible yet. Revised calls (issue 15) are in
    /// their final form: what a sync holds once it has caught the revisions.
    pub fn talks(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Value> {
        self.calls_between(from, to)
            .into_iter()
            .map(|(h, i)| to_value(&h.calls[i].talk))
            .collect()
    }

    /// Ground truth: the legs of call `call_id` (padded or not) as partycdrs serves them,
    /// revised or not in their final form.
    pub fn parties(&self, call_id: &str) -> Vec<Value> {
        self.find_call(call_id)
            .map(|(h, i)| h.calls[i].parties.iter().map(to_value).collect())
            .unwrap_or_default()
    }

    /// issue 15: like [`Dataset::talks`], but in the form served at `now` under `faults`:
    /// calls whose billing is not settled by then have fees 0. What a sync run at `now`
    /// (and not after) loads; visibility is not applied, as in `talks`.
    pub fn talks_at(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        faults: &Faults,
        now: DateTime<Utc>,
    ) -> Vec<Value> {
        let now = now.timestamp_millis();
        self.calls_between(from, to)
            .into_iter()
            .map(|(h, i)| to_value(&h.calls[i].talk_at(faults, now)))
            .collect()
    }

    /// issue 15: like [`Dataset::parties`], in the form served at `now` under `faults`.
    pub fn parties_at(&self, call_id: &str, faults: &Faults, now: DateTime<Utc>) -> Vec<Value> {
        let now = now.timestamp_millis();
        self.find_call(call_id)
            .map(|(h, i)| {
                h.calls[i]
                    .parties_at(faults, now)
                    .iter()
                    .map(to_value)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// issue 15: the calls with startTime in `[from, to)` that `faults` serve preliminary
    /// first, as (call id trimmed, the instant from which the final form is served), in
    /// start-time order. A sync run before that instant loads the preliminary form; one
    /// whose lookback covers the call after it must end with the final one.
    pub fn revised_calls(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        faults: &Faults,
    ) -> Vec<(String, DateTime<Utc>)> {
        self.calls_between(from, to)
            .into_iter()
            .filter_map(|(h, i)| {
                let call = &h.calls[i];
                let at = call.settled_at(faults)?;
                Some((call.id.clone(), Utc.timestamp_millis_opt(at).single()?))
            })
            .collect()
    }

    /// The calls with startTime in `[from, to)` in served order, as (hour, index).
    fn calls_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(Arc<Hour>, usize)> {
        let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
        let mut out = Vec::new();
        for hour in self.hours(from, to.saturating_sub(1)) {
            for (i, call) in hour.calls.iter().enumerate() {
                if (from..to).contains(&call.talk.start_time) {
                    out.push((Arc::clone(&hour), i));
                }
            }
        }
        out
    }

    /// Ground truth: every agent-history record with startTimeMs in `[from, to)`, with
    /// local strings in the configured zone, whether or not it is visible yet.
    pub fn agent_histories(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Value> {
        let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
        let tz = self.inner.generator.tz();
        let mut out = Vec::new();
        for hour in self.hours(from, to.saturating_sub(1)) {
            for rec in hour
                .histories
                .iter()
                .filter(|r| (from..to).contains(&r.start_ms))
            {
                out.push(to_value(&self.history_json(rec, tz)));
            }
        }
        out
    }
}

impl Call {
    /// The instant the call (and its parties) shows up in searches, given the lateness faults.
    pub(crate) fn visible_at(&self, faults: &Faults) -> i64 {
        self.talk
            .end_time
            .saturating_add(faults.late_delay_ms(self.late_u))
    }

    /// issue 15: the instant from which a revised call is served in its final form (its
    /// revision delay after it became visible); `None` when it is never served otherwise.
    pub(crate) fn settled_at(&self, faults: &Faults) -> Option<i64> {
        faults
            .revise_delay_ms(self.revise_u)
            .map(|d| self.visible_at(faults).saturating_add(d))
    }

    /// Whether at `now_ms` the call is served with its billing unsettled.
    pub(crate) fn preliminary_at(&self, faults: &Faults, now_ms: i64) -> bool {
        self.settled_at(faults).is_some_and(|at| now_ms < at)
    }

    /// The talk as served at `now_ms`: borrowed unless it is preliminary then.
    pub(crate) fn talk_at(&self, faults: &Faults, now_ms: i64) -> Cow<'_, Talk> {
        let mut talk = Cow::Borrowed(&self.talk);
        if self.preliminary_at(faults, now_ms) {
            talk.to_mut().unsettle();
        }
        talk
    }

    /// The legs as served at `now_ms`: borrowed unless the call is preliminary then.
    pub(crate) fn parties_at(&self, faults: &Faults, now_ms: i64) -> Cow<'_, [Party]> {
        if self.preliminary_at(faults, now_ms) {
            let mut legs = self.parties.clone();
            legs.iter_mut().for_each(Party::unsettle);
            Cow::Owned(legs)
        } else {
            Cow::Borrowed(&self.parties)
        }
    }
}

impl AgentHistory {
    pub(crate) fn visible_at(&self, faults: &Faults) -> i64 {
        self.end_ms
            .saturating_add(faults.late_delay_ms(self.late_u))
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // Our records are plain structs of strings and numbers, which always convert.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset() -> Dataset {
        Dataset::new(&SimConfig::default(), "http://sim/rec/".to_string())
    }

    #[test]
    fn finds_calls_by_padded_or_trimmed_id() {
        let ds = dataset();
        let hour = ds.hour(30);
        for call in &hour.calls {
            let found = ds
                .find_call(&call.talk.call_id)
                .map(|(h, i)| h.calls[i].id.clone());
            assert_eq!(found.as_deref(), Some(call.id.as_str()));
            assert!(ds.find_call(&format!("  {}", call.id)).is_some());
        }
        // Right shape, wrong hash bits.
        let forged = format!("{}{}", "0".repeat(20), &hour.calls[0].id[20..]);
        assert!(ds.find_call(&forged).is_none());
    }

    #[test]
    fn ground_truth_is_half_open_and_ordered() {
        let ds = dataset();
        let epoch = SimConfig::default().epoch;
        let from = epoch + chrono::Duration::hours(5);
        let to = from + chrono::Duration::hours(2);
        let talks = ds.talks(from, to);
        assert!(!talks.is_empty());
        let starts: Vec<i64> = talks
            .iter()
            .filter_map(|t| t["startTime"].as_i64())
            .collect();
        assert_eq!(starts.len(), talks.len());
        assert!(starts.windows(2).all(|w| w[0] <= w[1]));
        assert!(
            starts
                .iter()
                .all(|s| *s >= from.timestamp_millis() && *s < to.timestamp_millis())
        );
        let hist = ds.agent_histories(from, to);
        assert!(
            hist.iter()
                .all(|h| h["startTime"].is_string() && h["duration"].is_string())
        );
        assert!(
            ds.talks(epoch - chrono::Duration::hours(3), epoch)
                .is_empty()
        );
    }

    /// issue 15: a fault that revises `fraction` of the calls for an hour.
    fn revising(fraction: f64) -> Faults {
        Faults {
            revise_fraction: fraction,
            revise_secs: 3600,
            ..Faults::default()
        }
    }

    fn fees(talk: &Value) -> (i64, i64) {
        let f = |k: &str| talk[k].as_i64().unwrap_or(-1);
        (f("feeSeconds"), f("feeMinutes"))
    }

    #[test]
    fn revised_calls_are_preliminary_until_settled_then_final() {
        let ds = dataset();
        let faults = revising(0.3);
        let from = SimConfig::default().epoch + chrono::Duration::days(2);
        let to = from + chrono::Duration::hours(6);
        let revised = ds.revised_calls(from, to, &faults);
        let truth = ds.talks(from, to);
        assert!(!revised.is_empty() && revised.len() < truth.len());
        let mut billed = 0;
        for (id, settled) in &revised {
            let (h, i) = ds.find_call(id).expect("a revised call is ours");
            let call = &h.calls[i];
            assert_eq!(&call.id, id);
            let visible = call.visible_at(&faults);
            assert_eq!(settled.timestamp_millis(), visible + 3_600_000);
            let before = *settled - chrono::Duration::milliseconds(1);
            let talk = call.talk_at(&faults, before.timestamp_millis());
            assert_eq!((talk.fee_seconds, talk.fee_minutes), (0, 0));
            assert_eq!(
                Talk {
                    fee_seconds: call.talk.fee_seconds,
                    fee_minutes: call.talk.fee_minutes,
                    ..talk.into_owned()
                },
                call.talk
            );
            let legs = ds.parties_at(id, &faults, before);
            assert_eq!(legs.len(), call.parties.len());
            for (leg, truth) in legs.iter().zip(ds.parties(id)) {
                assert_eq!(leg["fee"].as_f64(), Some(0.0));
                assert_eq!(fees(leg), (0, 0));
                let mut settled_leg = leg.clone();
                for k in ["fee", "feeSeconds", "feeMinutes"] {
                    settled_leg[k] = truth[k].clone();
                }
                assert_eq!(settled_leg, truth, "only the fees differ");
            }
            // From the settling instant on, the final form: the ground truth.
            assert!(matches!(
                call.talk_at(&faults, settled.timestamp_millis()),
                Cow::Borrowed(_)
            ));
            assert_eq!(ds.parties_at(id, &faults, *settled), ds.parties(id));
            billed += usize::from(call.talk.fee_seconds > 0);
        }
        assert!(billed > 0, "some revised calls change on settling");
        // The data-set views agree with the calls: preliminary long before, final after.
        let early = ds.talks_at(from, to, &faults, from);
        let late = ds.talks_at(from, to, &faults, to + chrono::Duration::hours(3));
        assert_eq!(late, truth);
        let ids: std::collections::BTreeSet<&str> =
            revised.iter().map(|(id, _)| id.as_str()).collect();
        for (pre, fin) in early.iter().zip(&truth) {
            let id = fin["callID"].as_str().unwrap_or_default().trim();
            if ids.contains(id) {
                assert_eq!(fees(pre), (0, 0), "{id}");
            } else {
                assert_eq!(pre, fin, "{id}");
            }
        }
    }

    #[test]
    fn without_revisions_every_call_is_served_final_and_borrowed() {
        let ds = dataset();
        let off = Faults::default();
        assert_eq!(off.revise_fraction, 0.0);
        let from = SimConfig::default().epoch + chrono::Duration::days(2);
        let to = from + chrono::Duration::hours(6);
        assert!(ds.revised_calls(from, to, &off).is_empty());
        assert_eq!(ds.talks_at(from, to, &off, from), ds.talks(from, to));
        for hour in ds.hours(from.timestamp_millis(), to.timestamp_millis() - 1) {
            for call in &hour.calls {
                for now in [i64::MIN, call.talk.start_time, i64::MAX] {
                    assert!(matches!(call.talk_at(&off, now), Cow::Borrowed(t) if *t == call.talk));
                    assert!(
                        matches!(call.parties_at(&off, now), Cow::Borrowed(p) if *p == call.parties[..])
                    );
                }
            }
        }
    }

    #[test]
    fn revision_draw_is_stable_and_its_own() {
        let faults = revising(0.3);
        let from = SimConfig::default().epoch + chrono::Duration::days(1);
        let to = from + chrono::Duration::days(1);
        let a = dataset().revised_calls(from, to, &faults);
        assert_eq!(a, dataset().revised_calls(from, to, &faults));
        let all = dataset().talks(from, to).len() as f64;
        let share = a.len() as f64 / all;
        assert!((0.2..0.4).contains(&share), "{share} of {all}");
        // A larger fraction revises a superset: the draw is per call, not per fraction.
        let more = dataset().revised_calls(from, to, &revising(0.6));
        assert!(a.iter().all(|c| more.iter().any(|m| m.0 == c.0)));
        // Independent of lateness: the late calls are not the revised ones.
        let ds = dataset();
        let hour = ds.hour(30);
        assert!(hour.calls.iter().all(|c| (0.0..1.0).contains(&c.revise_u)));
        assert!(
            hour.calls
                .iter()
                .any(|c| (c.revise_u < 0.3) != (c.late_u < 0.3))
        );
    }
}
