//! The state every handler shares: fixed settings, the data set, tokens, counters, and
//! the two switches a running simulator can change (faults and the simulated "now").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::auth::TokenStore;
use super::config::{Dialect, Faults, SimConfig};
use super::dataset::Dataset;
use super::stats::StatsRecorder;

/// issue 13: the Literal dialect's `recordUrl`, `{id}` standing for the call id: the API
/// document's example taken as written.
pub(crate) const LITERAL_RECORD_URL: &str = "https:// record.soboten.com/recordings/{id} ";

#[derive(Debug)]
pub(crate) struct Shared {
    pub seed: u64,
    pub max_page_size: usize,
    pub default_tz: Tz,
    pub dataset: Dataset,
    pub tokens: TokenStore,
    pub stats: StatsRecorder,
    /// issue 5: simulated milliseconds between two messages of the metrics stream.
    pub metrics_tick_ms: u64,
    /// issue 13: the API document's answer forms this server speaks.
    pub dialect: Dialect,
    faults: RwLock<Arc<Faults>>,
    now: RwLock<SimClock>,
    data_requests: AtomicU64,
}

/// What the gate resolved for one data request, handed to its handler.
#[derive(Debug, Clone)]
pub(crate) struct RequestCtx {
    /// Zone of local strings (`timezoneid` header or the configured default).
    pub tz: Tz,
    /// The fault switches as they were when the request arrived.
    pub faults: Arc<Faults>,
    /// The simulated now, in ms: only records visible by then are served.
    pub now_ms: i64,
    /// issue 13: the kind of token the request came with.
    pub token: super::auth::TokenKind,
}

impl Shared {
    pub(crate) fn new(config: SimConfig, base_url: &str) -> Self {
        // issue 13: the Literal dialect's record URLs are the document's example, on a
        // recordings host other than the API's (a space after the scheme, one at the
        // end); only the id in them leads to the recording, served at the path below.
        let record_base = match config.dialect {
            Dialect::Enveloped => format!("{base_url}/callservice/v6/cc-audios/recordings/"),
            Dialect::Literal => LITERAL_RECORD_URL.to_string(),
        };
        Self {
            seed: config.seed,
            max_page_size: config.max_page_size.max(1),
            default_tz: config.timezone,
            dataset: Dataset::new(&config, record_base),
            tokens: TokenStore::new(config.app_id, config.app_secret, config.static_token),
            stats: StatsRecorder::default(),
            metrics_tick_ms: config.metrics_tick_ms.max(1),
            dialect: config.dialect,
            faults: RwLock::new(Arc::new(config.faults)),
            now: RwLock::new(SimClock::from_config(
                config.now,
                config.clock_speed,
                Utc::now(),
            )),
            data_requests: AtomicU64::new(0),
        }
    }

    pub(crate) fn faults(&self) -> Arc<Faults> {
        Arc::clone(&self.faults.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        *self.faults.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(faults);
    }

    /// The simulated now: the fixed instant if one is set, the running clock if one
    /// runs, else the real clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.now
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .at(Utc::now())
    }

    pub(crate) fn set_now(&self, now: Option<DateTime<Utc>>) {
        *self.now.write().unwrap_or_else(PoisonError::into_inner) = match now {
            Some(t) => SimClock::Fixed(t),
            None => SimClock::Real,
        };
    }

    /// Starts a clock that reads `from` now and advances `speed` simulated seconds per
    /// real second (the agent metrics stream's tests replay hours in seconds).
    pub(crate) fn run_clock(&self, from: DateTime<Utc>, speed: f64) {
        *self.now.write().unwrap_or_else(PoisonError::into_inner) =
            SimClock::running(from, speed, Utc::now());
    }

    /// Numbers data requests from 1 in arrival order: the "N" of every-Nth faults.
    pub(crate) fn next_data_request(&self) -> u64 {
        self.data_requests.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The simulator's notion of now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SimClock {
    /// The real clock.
    Real,
    /// Stopped at one instant (`--now`, `PUT /_sim/now`).
    Fixed(DateTime<Utc>),
    /// Read `from` at real instant `since`, advancing `speed` times as fast as real time.
    Running {
        from: DateTime<Utc>,
        since: DateTime<Utc>,
        speed: f64,
    },
}

impl SimClock {
    /// `speed` of 1 or none keeps a fixed `now` fixed; any other speed runs from it (from
    /// the real now when `now` is none).
    pub(crate) fn from_config(
        now: Option<DateTime<Utc>>,
        speed: Option<f64>,
        real: DateTime<Utc>,
    ) -> Self {
        match (now, speed) {
            (Some(t), None) => SimClock::Fixed(t),
            (None, None) => SimClock::Real,
            (t, Some(speed)) => SimClock::running(t.unwrap_or(real), speed, real),
        }
    }

    /// A running clock; a speed that is not a positive finite number stops it at `from`.
    pub(crate) fn running(from: DateTime<Utc>, speed: f64, real: DateTime<Utc>) -> Self {
        if speed.is_finite() && speed > 0.0 {
            SimClock::Running {
                from,
                since: real,
                speed,
            }
        } else {
            SimClock::Fixed(from)
        }
    }

    /// The simulated instant at real instant `real`.
    pub(crate) fn at(&self, real: DateTime<Utc>) -> DateTime<Utc> {
        match *self {
            SimClock::Real => real,
            SimClock::Fixed(t) => t,
            SimClock::Running { from, since, speed } => {
                let real_ms = (real - since).num_milliseconds().max(0) as f64;
                from + chrono::Duration::milliseconds((real_ms * speed) as i64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_clock_advances_at_its_speed() {
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let real = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let c = SimClock::running(t0, 60.0, real);
        assert_eq!(c.at(real), t0);
        assert_eq!(
            c.at(real + chrono::Duration::seconds(2)),
            t0 + chrono::Duration::minutes(2)
        );
        assert_eq!(SimClock::running(t0, 0.0, real), SimClock::Fixed(t0));
        assert_eq!(
            SimClock::from_config(Some(t0), None, real),
            SimClock::Fixed(t0)
        );
        assert_eq!(SimClock::from_config(None, None, real).at(real), real);
    }
}
