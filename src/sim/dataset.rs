//! The data set behind the server: generated hours through a small cache, lookups by
//! call id, and the ground-truth view tests compare against.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::cache::HourCache;
use super::config::{Dialect, SimConfig};
use super::facts::ReportState;
use super::generate::{Call, Generator, Hour, decode_call_id};
use super::localtime::format_minute;
use super::model::{AgentHistory, AgentHistoryJson};

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
    /// `hideNumber` 2, whether or not it is visible yet.
    pub fn talks(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Value> {
        let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
        let mut out = Vec::new();
        for hour in self.hours(from, to.saturating_sub(1)) {
            for call in hour
                .calls
                .iter()
                .filter(|c| (from..to).contains(&c.talk.start_time))
            {
                out.push(to_value(&call.talk));
            }
        }
        out
    }

    /// Ground truth: the legs of call `call_id` (padded or not) as partycdrs serves them.
    pub fn parties(&self, call_id: &str) -> Vec<Value> {
        self.find_call(call_id)
            .map(|(h, i)| h.calls[i].parties.iter().map(to_value).collect())
            .unwrap_or_default()
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
    pub(crate) fn visible_at(&self, faults: &super::config::Faults) -> i64 {
        self.talk
            .end_time
            .saturating_add(faults.late_delay_ms(self.late_u))
    }
}

impl AgentHistory {
    pub(crate) fn visible_at(&self, faults: &super::config::Faults) -> i64 {
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
}
