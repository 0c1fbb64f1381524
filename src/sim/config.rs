//! What a simulator instance is: its fixed identity (seed, credentials, size of the call
//! centre) and the fault switches that tests flip while it runs.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Everything that fixes the synthetic call centre and the server's limits.
///
/// Two simulators with equal configs serve byte-identical data (record URLs aside, which
/// name the bound address), which is what makes the tests and benchmarks repeatable.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seeds every random choice; the whole data set is a pure function of it.
    pub seed: u64,
    /// The company credentials the token endpoint accepts.
    pub app_id: String,
    pub app_secret: String,
    /// A token accepted forever, as a user of `SOBOT_TOKEN` would hold; issue 13: it
    /// stands for an agent token (no `operatorUserId` needed in the Literal dialect).
    pub static_token: Option<String>,
    pub company_id: String,
    /// Zone of local strings when a request sends no `timezoneid`, and of the day curve.
    pub timezone: Tz,
    /// Average calls per hour over a whole day; the day curve moves them into office hours.
    pub calls_per_hour: f64,
    pub agents: usize,
    /// No record starts before this instant; hour slots are counted from it.
    pub epoch: DateTime<Utc>,
    /// A fixed simulated "now" deciding which records are visible; `None` follows the real clock.
    pub now: Option<DateTime<Utc>>,
    /// Server cap on `pageSize`; larger requests are served this many records per page.
    pub max_page_size: usize,
    /// Serve Get All Indicator Display Schemes (`check_plan`) with `data` as one plan
    /// object, as the API document's example shows, instead of a list of plans.
    pub check_plan_single_object: bool,
    pub faults: Faults,
    /// issue 5: with `now`, a clock that starts there and runs this many simulated
    /// seconds per real second (without `now`, from the real now); `None`: `now` stays put.
    pub clock_speed: Option<f64>,
    /// issue 5: the agent metrics stream (`_watch/agents-metrics`) sends one message per
    /// tick of this many simulated milliseconds, on the grid of multiples of it.
    pub metrics_tick_ms: u64,
    /// issue 13: which of the API document's answer forms this server speaks.
    pub dialect: Dialect,
}

/// issue 13: the API document shows several forms for the same answer (a token with or
/// without the `{code, data}` envelope, success as `code` 200 or 0, ...). A real tenant
/// answers in one of them and we cannot know which, so the simulator speaks either and the
/// client is tested against both.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// Every answer in the `{code: 200, data}` envelope, the form of the document's
    /// search examples and our first reading of it.
    #[default]
    Enveloped,
    /// The document's other examples taken literally: the token answer without the
    /// envelope, `code: 0` on reports and plans, metrics answers without the envelope and
    /// refused without `operatorUserId` under a company token, `recordUrl` values on a
    /// recordings host other than the API's (fetched by id through the document's
    /// recordings endpoint), and report periods labelled on the local clock through DST
    /// transitions (a fall-back hour's labels repeated, a start label equal to its end).
    Literal,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enveloped => "enveloped",
            Self::Literal => "literal",
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            app_id: "sim-app".to_string(),
            app_secret: "sim-secret".to_string(),
            static_token: None,
            company_id: "825072edbd914f47aa8704de02f1cdb6".to_string(),
            timezone: chrono_tz::Asia::Singapore,
            calls_per_hour: 60.0,
            agents: 12,
            epoch: Utc
                .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            now: None,
            max_page_size: 200,
            check_plan_single_object: false,
            faults: Faults::default(),
            clock_speed: None,
            metrics_tick_ms: 1000,
            dialect: Dialect::Enveloped,
        }
    }
}

/// Fault switches. "Every Nth" counts data requests with one global counter, so a given
/// request order always meets the same faults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Every Nth data request answers HTTP 429 with `Retry-After: retry_after_secs`.
    pub rate_limit_every: Option<u64>,
    pub retry_after_secs: u64,
    /// Every Nth data request answers HTTP 500, 502 or 503 (rotating).
    pub server_error_every: Option<u64>,
    /// Every Nth data request answers HTTP 200 with an envelope `code` 500.
    pub envelope_error_every: Option<u64>,
    /// Every Nth data request answers HTTP 200 with only the first half of its body.
    pub truncate_every: Option<u64>,
    /// issue 13: every Nth data request answers HTTP 200 with a well-formed JSON object
    /// of a shape no documented answer has (no `code`, `status` or `data`).
    pub wrong_shape_every: Option<u64>,
    /// issue 13: every data request whose path contains this text answers like
    /// `wrong_shape_every` (one endpoint broken, the others well).
    pub wrong_shape_path: Option<String>,
    /// Every Nth data request (and Nth token request) waits `slow_ms` before answering.
    pub slow_every: Option<u64>,
    pub slow_ms: u64,
    /// Lifetime of issued tokens on the real clock; 7200 s when `None`.
    pub token_ttl_secs: Option<u64>,
    /// This fraction of records (chosen by hash, so stable) becomes visible `late_secs`
    /// after it normally would: the "late arriving data" a lookback has to catch.
    pub late_fraction: f64,
    pub late_secs: i64,
    /// issue 15, "billing settles later": this fraction of calls (chosen by hash, so
    /// stable) is first served with its fees unsettled (0 on the talk and its parties)
    /// and only `revise_secs` after it became visible in its final form. A parent record
    /// that changes after it was loaded, which only a lookback covering it can catch.
    pub revise_fraction: f64,
    /// How long a revised call stays preliminary; 3600 s by default.
    pub revise_secs: i64,
    /// Searches overlapping `[broken_from, broken_to)`, and partycdrs and recordings of
    /// calls starting in it, always answer HTTP 500: a window the client can never complete.
    pub broken_from: Option<DateTime<Utc>>,
    pub broken_to: Option<DateTime<Utc>>,
    /// Some pages come back shorter than the page size they report, so a client paging
    /// by page number falls short of `total` and must notice.
    pub shifting_page_size: bool,
    /// Server-side rate limit: data requests beyond this many in any second answer 429.
    pub max_rps: Option<u32>,
    /// issue 5: the agent metrics stream cuts each connection after this many messages
    /// (the first full message counts), without ending the chunked body properly.
    pub stream_drop_after: Option<u64>,
    /// issue 5: each message of the agent metrics stream is followed by a cut connection
    /// with this probability (seeded per connection, so runs differ only by timing).
    pub stream_drop_fraction: f64,
    /// issue 5: every Nth message of the agent metrics stream is followed by a bad one
    /// (not JSON, an unknown MessageID, unknown ops, paths and agents) that changes nothing.
    pub stream_bad_every: Option<u64>,
    /// issue 13: data endpoints that always fail, as paths (`/callservice/...`); a
    /// segment written `{name}` matches any one segment, so the pipeline files' own
    /// templates (`.../maincdrs/{callID}/partycdrs`) can be named. The token endpoint is
    /// not a data endpoint and is never broken this way. What `check` must single out.
    pub broken_endpoints: Vec<String>,
    /// issue 13: the HTTP status of a broken endpoint's answers: 500 when `None`; 403
    /// plays an endpoint the token has no permission for.
    pub broken_endpoint_status: Option<u16>,
    /// issue 13: every Nth agent (in list order) of the agent metrics answers carries an
    /// empty `agentUUID`: the row without its key that a client must count, not fail on.
    pub metrics_no_uuid_every: Option<u64>,
    /// issue 13: answered talks chosen by [`Faults::drops_record_id`] are listed with a
    /// `recordUrl` that has no id (it ends in `/recordings/`): the row a recordings
    /// client must skip and count, not fail on.
    pub record_url_without_id_every: Option<u64>,
}

impl Default for Faults {
    /// Every fault off; `revise_secs` has a useful default so that switching revisions on
    /// takes only `revise_fraction`.
    fn default() -> Self {
        Self {
            rate_limit_every: None,
            retry_after_secs: 0,
            server_error_every: None,
            envelope_error_every: None,
            truncate_every: None,
            wrong_shape_every: None,
            wrong_shape_path: None,
            slow_every: None,
            slow_ms: 0,
            token_ttl_secs: None,
            late_fraction: 0.0,
            late_secs: 0,
            revise_fraction: 0.0,
            revise_secs: 3600,
            broken_from: None,
            broken_to: None,
            shifting_page_size: false,
            max_rps: None,
            stream_drop_after: None,
            stream_drop_fraction: 0.0,
            stream_bad_every: None,
            broken_endpoints: Vec::new(),
            broken_endpoint_status: None,
            metrics_no_uuid_every: None,
            record_url_without_id_every: None,
        }
    }
}

impl Faults {
    /// Token lifetime in seconds as the token endpoint grants it.
    pub fn token_ttl(&self) -> u64 {
        self.token_ttl_secs.unwrap_or(7200)
    }

    /// issue 13: whether call `call_id`'s `recordUrl` is served without its id (a stable
    /// hash of the id is a multiple of `record_url_without_id_every`).
    pub fn drops_record_id(&self, call_id: &str) -> bool {
        let h = call_id
            .trim()
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        matches!(self.record_url_without_id_every, Some(k) if k > 0 && h.is_multiple_of(k))
    }

    /// Whether the broken window overlaps the instants `[from_ms, to_ms)`.
    pub(crate) fn broken_overlaps(&self, from_ms: i64, to_ms: i64) -> bool {
        match (self.broken_from, self.broken_to) {
            (Some(bf), Some(bt)) => {
                from_ms < bt.timestamp_millis() && to_ms > bf.timestamp_millis()
            }
            _ => false,
        }
    }

    /// issue 13: the status `path` always answers with, when it is a broken endpoint.
    pub(crate) fn broken_endpoint(&self, path: &str) -> Option<u16> {
        let matches = |pattern: &str| {
            let mut want = pattern.trim_end_matches('/').split('/');
            let mut got = path.trim_end_matches('/').split('/');
            loop {
                match (want.next(), got.next()) {
                    (None, None) => return true,
                    (Some(w), Some(g))
                        if w == g || (w.starts_with('{') && w.ends_with('}') && !g.is_empty()) => {}
                    _ => return false,
                }
            }
        };
        self.broken_endpoints
            .iter()
            .any(|p| matches(p))
            .then(|| self.broken_endpoint_status.unwrap_or(500))
    }

    /// Extra delay before a record with lateness draw `late_u` becomes visible.
    pub(crate) fn late_delay_ms(&self, late_u: f64) -> i64 {
        if late_u < self.late_fraction {
            self.late_secs.saturating_mul(1000)
        } else {
            0
        }
    }

    /// issue 15: how long after becoming visible a call with revision draw `revise_u` is
    /// still served preliminary; `None` when its billing is settled from the start.
    pub(crate) fn revise_delay_ms(&self, revise_u: f64) -> Option<i64> {
        (revise_u < self.revise_fraction).then(|| self.revise_secs.saturating_mul(1000))
    }
}

/// Whether the `n`th request (1-based) is hit by a fault firing every `every` requests.
pub(crate) fn fires(every: Option<u64>, n: u64) -> bool {
    matches!(every, Some(k) if k > 0 && n.is_multiple_of(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_fires_on_multiples_only() {
        let hits: Vec<u64> = (1..=10).filter(|n| fires(Some(3), *n)).collect();
        assert_eq!(hits, vec![3, 6, 9]);
        assert!(!fires(Some(0), 5));
        assert!(!fires(None, 5));
    }

    #[test]
    fn faults_parse_from_partial_json() {
        let f: Faults = serde_json::from_str(r#"{"rate_limit_every":4,"retry_after_secs":2}"#)
            .unwrap_or_default();
        assert_eq!(f.rate_limit_every, Some(4));
        assert_eq!(f.retry_after_secs, 2);
        assert_eq!(f.token_ttl(), 7200);
    }

    #[test]
    fn broken_endpoints_match_paths_and_templates() {
        let f = Faults {
            broken_endpoints: vec![
                "/callservice/tm/tm-reports/maincdrs/{callID}/partycdrs".into(),
                "/callservice/tm/tm-reports/agent-table/_search".into(),
            ],
            broken_endpoint_status: Some(403),
            ..Faults::default()
        };
        let party = "/callservice/tm/tm-reports/maincdrs/abc123/partycdrs";
        assert_eq!(f.broken_endpoint(party), Some(403));
        assert_eq!(
            f.broken_endpoint("/callservice/tm/tm-reports/agent-table/_search"),
            Some(403)
        );
        for fine in [
            "/callservice/tm/tm-reports/maincdrs/_search",
            "/callservice/tm/tm-reports/maincdrs//partycdrs",
            "/callservice/tm/tm-reports/depart-table/_search",
            "/callservice/tm/tm-reports/agent-table/_search/x",
        ] {
            assert_eq!(f.broken_endpoint(fine), None, "{fine}");
        }
        let default_status = Faults {
            broken_endpoints: vec!["/x".into()],
            ..Faults::default()
        };
        assert_eq!(default_status.broken_endpoint("/x"), Some(500));
    }

    #[test]
    fn broken_window_overlap_is_half_open() {
        let f = Faults {
            broken_from: Utc.timestamp_millis_opt(1000).single(),
            broken_to: Utc.timestamp_millis_opt(2000).single(),
            ..Faults::default()
        };
        assert!(f.broken_overlaps(0, 1001));
        assert!(!f.broken_overlaps(0, 1000));
        assert!(f.broken_overlaps(1999, 5000));
        assert!(!f.broken_overlaps(2000, 5000));
    }
}
