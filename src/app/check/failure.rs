//! Why a probe did not prove its endpoint, and the setting or permission to fix: turns a
//! probe's outcome into its row.

use super::output::{EndpointResult, one_line};
use crate::app::settings::Settings;
use crate::core::pipeline::{Kind, Pipeline};
use crate::io::api::{ApiError, Credentials};

/// What an endpoint serves, for the hints: which permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Area {
    Token,
    Calls,
    WorkStatus,
    Reports,
    Plans,
    Metrics,
    Recordings,
}

impl Area {
    pub(super) fn of(p: &Pipeline) -> Area {
        match p.kind {
            Kind::Search if p.endpoint.contains("/agent-histories/") => Area::WorkStatus,
            Kind::Search | Kind::Children => Area::Calls,
            Kind::Report => Area::Reports,
            Kind::Reference => Area::Plans,
            Kind::Snapshot => Area::Metrics,
            Kind::Recordings => Area::Recordings,
        }
    }

    /// What the permission is called, for "the token lacks permission for ...".
    fn permission(self) -> &'static str {
        match self {
            Area::Token => "the token endpoint",
            Area::Calls => "call records (Query Main Talk List)",
            Area::WorkStatus => "agent work-status logs",
            Area::Reports => "Statistical Reports",
            Area::Plans => "Statistical Reports (indicator display schemes)",
            Area::Metrics => "agent monitoring (View Agent Indicator)",
            Area::Recordings => "call recordings",
        }
    }

    /// Where the API document names an "Agent token" (SOBOT_AGENT_TOKEN).
    fn agent_token(self) -> bool {
        matches!(
            self,
            Area::WorkStatus | Area::Reports | Area::Plans | Area::Recordings
        )
    }
}

/// Why a probe did not prove its endpoint.
#[derive(Debug)]
pub(super) enum Failure {
    Api(ApiError),
    /// A well-formed answer in a shape the pipeline cannot read: field names only.
    Shape(String),
    /// Not requested because what it needed (`what`, from the endpoint `from`) failed.
    NotProbed {
        what: &'static str,
        from: String,
    },
}

const NOT_PROBED: &str = "not probed: ";

pub(super) fn not_probed(error: &str) -> bool {
    error.starts_with(NOT_PROBED)
}

/// One row waiting for its probe.
pub(super) struct Row {
    pub(super) endpoint: String,
    pub(super) pipelines: Vec<String>,
    pub(super) area: Area,
}

impl Row {
    pub(super) fn ok(self, note: Option<String>) -> EndpointResult {
        EndpointResult {
            tenant: None,
            endpoint: self.endpoint,
            pipelines: self.pipelines,
            ok: true,
            note,
            error: None,
            hint: None,
        }
    }

    pub(super) fn failed(self, failure: &Failure, settings: &Settings) -> EndpointResult {
        let (error, hint) = match failure {
            Failure::Api(e) => (e.to_string(), hint(self.area, e, settings)),
            Failure::Shape(detail) => (
                format!("{}: the answer cannot be read: {detail}", self.endpoint),
                SHAPE_HINT.to_string(),
            ),
            Failure::NotProbed { what, from } => (
                format!("{NOT_PROBED}needs {what} from {from}"),
                format!("fix {from} first"),
            ),
        };
        EndpointResult {
            tenant: None,
            endpoint: self.endpoint,
            pipelines: self.pipelines,
            ok: false,
            note: None,
            error: Some(one_line(&error)),
            hint: Some(hint),
        }
    }

    pub(super) fn outcome(
        self,
        r: Result<Option<String>, Failure>,
        settings: &Settings,
    ) -> EndpointResult {
        match r {
            Ok(note) => self.ok(note),
            Err(f) => self.failed(&f, settings),
        }
    }
}

const SHAPE_HINT: &str =
    "the tenant answers in a form we do not read; report it with `check --json`";

/// The innermost error of a retried request.
fn root(e: &ApiError) -> &ApiError {
    match e {
        ApiError::Exhausted { last, .. } => root(last),
        other => other,
    }
}

/// The setting or permission to fix, for a failed request to an endpoint of `area`.
fn hint(area: Area, e: &ApiError, settings: &Settings) -> String {
    let static_token = matches!(settings.credentials(), Ok(Credentials::Token(_)));
    let denied = || {
        if area == Area::Token {
            return "check SOBOT_APP_ID and SOBOT_APP_SECRET (or set SOBOT_TOKEN)".to_string();
        }
        let mut h = format!("the token lacks permission for {}", area.permission());
        if area.agent_token() {
            h.push_str("; an agent token may be needed (SOBOT_AGENT_TOKEN)");
        } else if area == Area::Metrics {
            h.push_str(
                "; under a company token set SOBOT_OPERATOR_USER_ID (sent as operatorUserId)",
            );
        } else {
            h.push_str("; ask Sobot to enable this API for the app (SOBOT_APP_ID)");
        }
        if static_token {
            h.push_str("; SOBOT_TOKEN may also have expired: set a fresh one");
        }
        h
    };
    match root(e) {
        ApiError::Auth { .. } => denied(),
        ApiError::Http {
            status: 401 | 403, ..
        } => denied(),
        ApiError::Envelope { code, .. } if matches!(*code, 401 | 403) => denied(),
        ApiError::Http { status: 429, .. } | ApiError::Envelope { code: 429, .. } => format!(
            "the tenant limits the request rate: lower SOBOT_MAX_RPS (now {})",
            settings.max_rps
        ),
        ApiError::Http { status: 404, .. } => format!(
            "the tenant has no such endpoint: check SOBOT_BASE_URL ({}), the API root with no \
             path (e.g. https://sg.sobot.io), and the pipeline file's endpoint",
            settings.base_url
        ),
        ApiError::Http { status, .. } if *status >= 500 => format!(
            "the tenant failed on this endpoint (HTTP {status}); try again later and report \
             it to Sobot if it lasts"
        ),
        ApiError::Transport { .. } => format!(
            "cannot reach the API: check SOBOT_BASE_URL ({}) and that this machine can reach \
             it (proxy, firewall); a slow tenant may need a larger SOBOT_REQUEST_TIMEOUT_SECS",
            settings.base_url
        ),
        ApiError::Envelope { code, .. } if area == Area::Metrics => format!(
            "the tenant refused the request (code {code}); under a company token set \
             SOBOT_OPERATOR_USER_ID (sent as operatorUserId), and check the pipeline's [filters]"
        ),
        ApiError::Envelope { code, .. } => format!(
            "the tenant refused the request (code {code}): check the pipeline file's \
             [filters] or [report] parameters; if they are the shipped ones, report it with \
             `check --json`"
        ),
        ApiError::Config(_) => "fix the setting named in the error".to_string(),
        _ => SHAPE_HINT.to_string(),
    }
}
