//! What `check` prints: each step and the endpoint table as they come, or, under `--json`,
//! one document at the end so a script reads every tenant's result at once.

use crate::core::error::CommandError;
use serde::Serialize;

/// One step before the endpoints: `settings`, `pipelines`, `privacy`, `storage` or
/// `credentials`.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The tenant (`null` without tenants).
    pub tenant: Option<String>,
    pub check: &'static str,
    pub ok: bool,
    pub detail: Option<String>,
    pub error: Option<String>,
    pub hint: Option<String>,
}

/// What one endpoint's probe proved.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointResult {
    /// The tenant (`null` without tenants).
    pub tenant: Option<String>,
    /// The path as the pipeline files write it (`{callID}` for a call's id).
    pub endpoint: String,
    /// The enabled pipelines that use it.
    pub pipelines: Vec<String>,
    pub ok: bool,
    /// Why an `ok` row proved less than a full answer ("no call to probe").
    pub note: Option<String>,
    /// The error in one line, without secrets.
    pub error: Option<String>,
    /// The setting or permission to fix.
    pub hint: Option<String>,
}

/// The `--json` document: every step and endpoint of every tenant checked.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub checks: Vec<Step>,
    pub endpoints: Vec<EndpointResult>,
}

/// Where lines go: printed as they come, or gathered for one JSON object at the end.
pub(super) struct Output {
    json: bool,
    report: CheckReport,
}

impl Output {
    pub(super) fn new(json: bool) -> Output {
        Output {
            json,
            report: CheckReport {
                ok: true,
                checks: Vec::new(),
                endpoints: Vec::new(),
            },
        }
    }

    pub(super) fn step(&mut self, step: Step) {
        if !self.json {
            match (&step.ok, &step.error) {
                (true, _) => println!(
                    "ok   {}{}",
                    step.check,
                    step.detail
                        .as_deref()
                        .map_or(String::new(), |d| format!(": {d}"))
                ),
                (false, error) => println!(
                    "FAIL {}: {}{}",
                    step.check,
                    error.as_deref().unwrap_or("failed"),
                    step.hint
                        .as_deref()
                        .map_or(String::new(), |h| format!("; fix: {h}"))
                ),
            }
        }
        self.report.ok &= step.ok;
        self.report.checks.push(step);
    }

    pub(super) fn endpoints(&mut self, rows: Vec<EndpointResult>) {
        if !self.json {
            print!("{}", render(&rows));
        }
        self.report.ok &= rows.iter().all(|r| r.ok);
        self.report.endpoints.extend(rows);
    }

    pub(super) fn line(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }

    pub(super) fn finish(self) -> Result<(), CommandError> {
        if self.json {
            let text = serde_json::to_string_pretty(&self.report)
                .map_err(|e| CommandError::Failed(format!("check --json: {e}")))?;
            println!("{text}");
        }
        Ok(())
    }
}

pub(super) fn step(tenant: &Option<String>, check: &'static str, detail: String) -> Step {
    Step {
        tenant: tenant.clone(),
        check,
        ok: true,
        detail: Some(detail),
        error: None,
        hint: None,
    }
}

pub(super) fn failed_step(
    tenant: &Option<String>,
    check: &'static str,
    error: &str,
    hint: &str,
) -> Step {
    Step {
        tenant: tenant.clone(),
        check,
        ok: false,
        detail: None,
        error: Some(one_line(error)),
        hint: Some(hint.to_string()),
    }
}

/// A message on one line (the table has one line per endpoint).
pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The table: endpoint, pipelines, and `ok` or the error with its fix.
pub fn render(rows: &[EndpointResult]) -> String {
    let pipelines = |r: &EndpointResult| r.pipelines.join(",");
    let w_end = rows
        .iter()
        .map(|r| r.endpoint.len())
        .chain(["ENDPOINT".len()])
        .max()
        .unwrap_or(8);
    let w_pipe = rows
        .iter()
        .map(|r| pipelines(r).len().min(40))
        .chain(["PIPELINES".len()])
        .max()
        .unwrap_or(9);
    let mut out = format!("{:w_end$}  {:w_pipe$}  RESULT\n", "ENDPOINT", "PIPELINES");
    for r in rows {
        let result = match (r.ok, &r.note, &r.error) {
            (true, None, _) => "ok".to_string(),
            (true, Some(note), _) => format!("ok ({note})"),
            (false, _, error) => format!(
                "FAIL {}{}",
                error.as_deref().unwrap_or("failed"),
                r.hint
                    .as_deref()
                    .map_or(String::new(), |h| format!("; fix: {h}"))
            ),
        };
        let mut names = pipelines(r);
        if names.len() > 40 {
            names = format!("({} pipelines)", r.pipelines.len());
        }
        out.push_str(&format!(
            "{:w_end$}  {:w_pipe$}  {result}\n",
            r.endpoint, names
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_folds_newlines() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }

    #[test]
    fn table_rows_say_ok_or_the_error_and_its_fix() {
        let row =
            |endpoint: &str, ok: bool, note: Option<&str>, error: Option<&str>| EndpointResult {
                tenant: None,
                endpoint: endpoint.into(),
                pipelines: vec!["talks".into()],
                ok,
                note: note.map(str::to_string),
                error: error.map(str::to_string),
                hint: error.map(|_| "check SOBOT_BASE_URL".to_string()),
            };
        let text = render(&[
            row("/a", true, None, None),
            row("/bb", true, Some("no call to probe"), None),
            row("/c", false, None, Some("request to /c failed")),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("ENDPOINT"));
        assert!(
            lines[1].starts_with("/a ") && lines[1].ends_with("  ok"),
            "{text}"
        );
        assert!(lines[2].ends_with("ok (no call to probe)"), "{text}");
        assert!(
            lines[3].ends_with("FAIL request to /c failed; fix: check SOBOT_BASE_URL"),
            "{text}"
        );
    }
}
