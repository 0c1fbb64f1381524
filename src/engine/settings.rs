//! The settings a run reads. `app` loads and checks every setting, then hands the engine
//! only these ([`crate::app::settings::Settings::engine_settings`]), so the engine does
//! not depend on where settings come from or on the ones only commands use.

use crate::core::privacy::PiiKey;
use crate::core::report::reconcile::Tolerance;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The zone of the window grid and of `dt` partitions.
    pub timezone: Tz,
    /// Initial watermark for pipelines without state; overrides `initial_start`.
    pub start: Option<DateTime<Utc>>,
    /// The tenant these runs load, when several are configured (labels its metrics).
    pub tenant: Option<String>,
    pub lock_ttl: Duration,
    /// Windows of one pipeline extracted at once (their commits stay in order).
    pub window_concurrency: usize,
    /// The HMAC key for `pii` columns; `None` leaves `hash_if_key` columns as sent.
    pub pii_key: Option<PiiKey>,
    /// How far a report's `amount` may differ from its rows and still agree.
    pub reconcile_tolerance: Tolerance,
    /// Sent as `operatorUserId` with the agent metrics (snapshots and the stream).
    pub operator_user_id: Option<String>,
    /// The metrics stream connects here itself (an event stream, outside the client).
    pub base_url: String,
    pub request_timeout: Duration,
    /// The metrics stream's reconnect delays.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// The metrics stream writes one snapshot per this many seconds.
    pub metrics_snapshot_secs: u64,
    /// `compact` starts a new file once the files merged into the current one reach this.
    pub compact_target_bytes: u64,
}
