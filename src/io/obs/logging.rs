//! Log output: human lines (the default, coloured on a terminal) or one JSON object
//! per line for a log stack (`SOBOT_SYNC_LOG_FORMAT=json`).
//!
//! Logging starts in `main` before the settings file is read (settings errors must be
//! logged somewhere), so the format is read from the environment only, like
//! `SOBOT_SYNC_LOG`. Each line carries the spans it happened in: `run` (pipeline, mode,
//! run id) and `window` (pipeline, mode, window start and end); in JSON they are the
//! `span` and `spans` fields.

use std::io::IsTerminal;

pub const FORMAT_VAR: &str = "SOBOT_SYNC_LOG_FORMAT";
pub const FILTER_VAR: &str = "SOBOT_SYNC_LOG";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal.
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

/// Sets up the process's logging from `SOBOT_SYNC_LOG_FORMAT` and `SOBOT_SYNC_LOG`.
/// An unusable format is an error for the caller to report (exit 2); an unusable filter
/// falls back to `info`, as before.
pub fn init() -> Result<LogFormat, String> {
    let raw = std::env::var(FORMAT_VAR).ok();
    let format = LogFormat::parse(raw.as_deref())?;
    let filter = tracing_subscriber::EnvFilter::try_from_env(FILTER_VAR)
        // The cron scheduler announces its own start-up at info; keep its warnings only.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_cron_scheduler=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(super::progress::stderr_writer)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
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
}
