//! Log output: human lines (the default, coloured on a terminal) or one JSON object
//! per line for a log stack (`SOBOT_SYNC_LOG_FORMAT=json`).
//!
//! Logging starts in `main` before the settings file is read (settings errors must be
//! logged somewhere), so the format is read from the environment only, like
//! `SOBOT_SYNC_LOG`. The conventions of the ecosystem hold too: `RUST_LOG` filters when
//! `SOBOT_SYNC_LOG` is unset (so a habit or a platform's default works), and a non-empty
//! `NO_COLOR` (no-color.org) turns colours off even on a terminal. Each line carries the spans it happened in: `run` (pipeline, mode,
//! run id) and `window` (pipeline, mode, window start and end); in JSON they are the
//! `span` and `spans` fields.

use std::io::IsTerminal;

pub const FORMAT_VAR: &str = "SOBOT_SYNC_LOG_FORMAT";
pub const FILTER_VAR: &str = "SOBOT_SYNC_LOG";
/// The filter variable of the `tracing`/`env_logger` ecosystem, read when ours is unset.
pub const RUST_LOG_VAR: &str = "RUST_LOG";
pub const NO_COLOR_VAR: &str = "NO_COLOR";
/// The filter when neither variable gives a usable one. The cron scheduler announces
/// its own start-up at info; keep its warnings only.
const DEFAULT_FILTER: &str = "info,tokio_cron_scheduler=warn";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal and `NO_COLOR`
    /// is unset or empty.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields.message`, other fields,
    /// `span` (the innermost) and `spans` (outermost first).
    Json,
}

impl LogFormat {
    /// Reads the format from a raw value (`None`: unset). The message names the
    /// setting and the accepted values.
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        match raw.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(_) => Err(format!(
                "setting {FORMAT_VAR} (environment): must be text or json, got {:?}",
                raw.unwrap_or_default()
            )),
        }
    }
}

/// The filter directives to use: `SOBOT_SYNC_LOG`, else `RUST_LOG`; a variable set to
/// nothing (or only blanks) counts as unset, as `NO_COLOR` does.
pub fn filter_directives(ours: Option<&str>, rust_log: Option<&str>) -> Option<String> {
    [ours, rust_log]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

/// Whether text lines get ANSI colours: only on a terminal, and never when `NO_COLOR`
/// holds anything (no-color.org: "when present and not an empty string").
pub fn use_ansi(no_color: Option<&std::ffi::OsStr>, stderr_is_terminal: bool) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Sets up the process's logging from `SOBOT_SYNC_LOG_FORMAT`, `SOBOT_SYNC_LOG` (else
/// `RUST_LOG`) and `NO_COLOR`. An unusable format is an error for the caller to report
/// (exit 2); an unusable filter falls back to `info`, as before.
pub fn init() -> Result<LogFormat, String> {
    let raw = std::env::var(FORMAT_VAR).ok();
    let format = LogFormat::parse(raw.as_deref())?;
    let (ours, rust_log) = (
        std::env::var(FILTER_VAR).ok(),
        std::env::var(RUST_LOG_VAR).ok(),
    );
    let filter = filter_directives(ours.as_deref(), rust_log.as_deref())
        .and_then(|d| tracing_subscriber::EnvFilter::try_new(d).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(super::progress::stderr_writer)
        .with_target(false);
    match format {
        LogFormat::Text => {
            let no_color = std::env::var_os(NO_COLOR_VAR);
            let ansi = use_ansi(no_color.as_deref(), std::io::stderr().is_terminal());
            builder.with_ansi(ansi).init()
        }
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_bad_ones_name_the_setting() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some(" JSON ")), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse(Some("text")), Ok(LogFormat::Text));
        let e = LogFormat::parse(Some("yaml")).err().unwrap_or_default();
        assert!(
            e.contains("SOBOT_SYNC_LOG_FORMAT") && e.contains("yaml"),
            "{e}"
        );
    }

    #[test]
    fn our_filter_wins_and_rust_log_stands_in_when_it_is_unset() {
        assert_eq!(filter_directives(None, None), None);
        assert_eq!(
            filter_directives(Some("warn"), Some("debug")).as_deref(),
            Some("warn")
        );
        assert_eq!(
            filter_directives(None, Some("debug")).as_deref(),
            Some("debug")
        );
        assert_eq!(
            filter_directives(Some(" "), Some("debug")).as_deref(),
            Some("debug")
        );
        assert_eq!(filter_directives(Some(""), Some("")), None);
    }

    #[test]
    fn no_color_turns_colours_off_even_on_a_terminal() {
        use std::ffi::OsStr;
        assert!(use_ansi(None, true));
        assert!(!use_ansi(None, false));
        assert!(!use_ansi(Some(OsStr::new("1")), true));
        assert!(
            !use_ansi(Some(OsStr::new("false")), true),
            "any value counts"
        );
        assert!(use_ansi(Some(OsStr::new("")), true), "empty means unset");
    }
}
