//! The liberal reading (issue 13): every answer form the API document shows, judged in
//! one place.
//!
//! A real tenant answers in one of the forms the document shows and we cannot know which,
//! so every documented form is accepted, and nothing else is guessed at:
//!
//! - `code` is a number or a numeric string; success is `200` or `0` (the report and
//!   plan examples show `0`). Any other code is an error, classified by
//!   [`classify_code`].
//! - `status` is taken into account where present: `"Success"` (or `"OK"`,
//!   `"Succeeded"`, any case) with no `code` is a success; a word that clearly says
//!   failure (`"Failed"`, `"Failure"`, `"Fail"`, `"Error"`) beside a success code makes the
//!   answer contradict itself, and it is refused as a shape we do not understand. Any
//!   other status (the document's examples even show `"string"`) leaves the verdict to
//!   `code`.
//! - the answer's payload is `data` when present and not `null`; the token answer and
//!   the agent metrics answer may also come without the envelope (CONTRACT.md section 5,
//!   the document's monitoring examples), recognised by the fields their bare form must
//!   carry ([`bare_form`]); the whole body is then the payload.
//! - a body that is well-formed JSON but matches none of these forms is not transient:
//!   [`Class::Shape`] fails it after at most one retry, with a message naming the
//!   endpoint and the top-level field names and JSON types seen ([`shape_of`]), never a
//!   value. Bodies that are not JSON at all (cut off, not UTF-8) stay transient.
//!
//! The page lists inside `data` (`list`, `pageData`, `records`, `rows`, or `data` itself
//! a list) and padded numbers are read by `crate::core::record`; the token's field and lifetime
//! names by `auth::read_token`; report rows (`metric`) by `crate::core::report::response`.
//! This module decides only whether an answer is a success and where its payload is.

use super::ApiError;
use super::retry::{Class, Failure};
use crate::core::record::kind_of;
use serde_json::Value;

/// What an answer's `code` means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeClass {
    Success,
    /// 401/403: the token is not (or no longer) accepted.
    Unauthorized,
    /// Other 4xx except 408 and 429: asking again will not help.
    Permanent,
    /// 408, 429, 5xx-like and codes we do not know: worth another attempt.
    Transient,
}

/// The one definition of a success code: 200, or 0 as the document's report and plan
/// examples show it.
pub(crate) fn classify_code(code: i64) -> CodeClass {
    match code {
        0 | 200 => CodeClass::Success,
        401 | 403 => CodeClass::Unauthorized,
        408 | 429 => CodeClass::Transient,
        400..=499 => CodeClass::Permanent,
        _ => CodeClass::Transient,
    }
}

/// `code` as a number or a numeric string (`200`, `"200"`, `" 0 "`, `200.0`).
pub(crate) fn code_of(raw: &str) -> Option<i64> {
    match serde_json::from_str::<Value>(raw).ok()? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// What `status` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Success,
    Failure,
    /// Anything else (the document's examples show `"string"`): no opinion.
    Other,
}

/// Reads `status`, case-insensitively; a non-string status has no opinion.
pub(crate) fn status_of(raw: &str) -> Status {
    let Ok(Value::String(s)) = serde_json::from_str::<Value>(raw) else {
        return Status::Other;
    };
    match s.trim().to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "successful" | "ok" => Status::Success,
        "fail" | "failed" | "failure" | "error" => Status::Failure,
        _ => Status::Other,
    }
}

/// Whether a body without a usable `data` is itself the payload: the forms the
/// document (or Sobot's token documentation) shows without the envelope, each recognised
/// by a field its bare form must carry.
pub(crate) fn bare_form<'a>(endpoint: &str, mut names: impl Iterator<Item = &'a str>) -> bool {
    let wanted: &[&str] = if endpoint.ends_with("/tokens/company") {
        &["access_token", "accessToken", "token"]
    } else if endpoint.ends_with("/agents-metrics") {
        &["agentsMetrics"]
    } else {
        return false;
    };
    names.any(|n| wanted.contains(&n))
}

/// Where an accepted answer's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload {
    /// In `data`.
    Data,
    /// The whole body (a bare form).
    Body,
}

/// Longest field name copied into a shape description, and most fields listed.
const MAX_NAME_CHARS: usize = 40;
const MAX_FIELDS: usize = 16;

/// The shape of an object: its top-level field names and the JSON type of each, in the
/// order sent; never a value.
pub(crate) fn shape_of<'a>(fields: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    describe(fields.map(|(name, raw)| (name, kind_of(raw))))
}

/// Like [`shape_of`], from field names and the kinds already known ("a string", ...).
pub(crate) fn describe<'a>(fields: impl Iterator<Item = (&'a str, &'static str)>) -> String {
    let mut out = Vec::new();
    let mut more = 0usize;
    for (name, kind) in fields {
        if out.len() == MAX_FIELDS {
            more += 1;
            continue;
        }
        let mut shown: String = name.chars().take(MAX_NAME_CHARS).collect();
        if name.chars().count() > MAX_NAME_CHARS {
            shown.push('…');
        }
        out.push(format!("{shown} ({kind})"));
    }
    if out.is_empty() {
        return "an empty object".into();
    }
    let mut text = format!("an object with {}", out.join(", "));
    if more > 0 {
        text.push_str(&format!(" and {more} more fields"));
    }
    text
}

/// A failure for a well-formed answer we do not understand: retried once, then final.
pub(crate) fn shape_failure(endpoint: &str, what: &str, shape: &str) -> Failure {
    Failure::new(
        ApiError::Decode {
            endpoint: endpoint.to_owned(),
            detail: format!(
                "{what}; the answer is well-formed JSON of a shape this tool does not read: {shape}"
            ),
        },
        Class::Shape,
    )
}

/// A body that did not start an object: a well-formed JSON value of another kind is a
/// shape (asking again will not change it); anything else (HTML from a proxy, a cut-off
/// body, nothing) is treated as transient.
pub(crate) fn not_an_object(endpoint: &str, body: &[u8]) -> Failure {
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) => {
            let text = std::str::from_utf8(body).unwrap_or("");
            shape_failure(endpoint, "the body is not a JSON object", kind_of(text))
        }
        Err(_) => Failure::transient(ApiError::Decode {
            endpoint: endpoint.to_owned(),
            detail: if body.iter().all(u8::is_ascii_whitespace) {
                "the body is empty".into()
            } else {
                format!("the body is not JSON ({} bytes)", body.len())
            },
        }),
    }
}

/// Judges an answer by its top-level fields (`fields`: name and raw JSON text, `data`
/// included or not) and whether it carries a `data` that is not `null`.
///
/// `message` is the server's human text, used only for error codes.
pub(crate) fn verdict<'a>(
    endpoint: &str,
    fields: &[(&'a str, &'a str)],
    has_data: bool,
    message: impl FnOnce() -> String,
) -> Result<Payload, Failure> {
    let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let shape = || shape_of(fields.iter().copied());
    let status = get("status").map(status_of);
    let payload = || {
        if has_data {
            Some(Payload::Data)
        } else if bare_form(endpoint, fields.iter().map(|(k, _)| *k)) {
            Some(Payload::Body)
        } else {
            None
        }
    };
    let Some(raw_code) = get("code") else {
        // No code: `status` decides, else the answer must be a bare form.
        return match (status, payload()) {
            (Some(Status::Failure), _) => Err(shape_failure(
                endpoint,
                "`status` says failure and there is no `code`",
                &shape(),
            )),
            (Some(Status::Success), Some(p)) => Ok(p),
            (_, Some(Payload::Body)) => Ok(Payload::Body),
            (Some(Status::Success), None) => Err(shape_failure(
                endpoint,
                "`status` says success but there is no `data`",
                &shape(),
            )),
            _ => Err(shape_failure(
                endpoint,
                "no `code`, no `status` saying success, and not a form the document shows without the envelope",
                &shape(),
            )),
        };
    };
    let Some(code) = code_of(raw_code) else {
        return Err(shape_failure(
            endpoint,
            &format!("`code` is {}, not a number", kind_of(raw_code)),
            &shape(),
        ));
    };
    let class = classify_code(code);
    if class == CodeClass::Success {
        if status == Some(Status::Failure) {
            return Err(shape_failure(
                endpoint,
                &format!("`code` {code} says success but `status` says failure"),
                &shape(),
            ));
        }
        return payload().ok_or_else(|| {
            shape_failure(
                endpoint,
                &format!("`code` {code} says success but there is no `data`"),
                &shape(),
            )
        });
    }
    let error = ApiError::Envelope {
        endpoint: endpoint.to_owned(),
        code,
        message: message(),
    };
    let failure = match class {
        CodeClass::Unauthorized => Failure::new(error, Class::Unauthorized),
        CodeClass::Permanent => Failure::permanent(error),
        CodeClass::Transient | CodeClass::Success => Failure::transient(error),
    };
    Err(failure.with_rate_limited(code == 429))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(endpoint: &str, body: &str) -> Result<Payload, Failure> {
        let map: serde_json::Map<String, Value> = serde_json::from_str(body).unwrap_or_default();
        let texts: Vec<(String, String)> = map
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        let fields: Vec<(&str, &str)> = texts
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let has_data = map.get("data").is_some_and(|d| !d.is_null());
        verdict(endpoint, &fields, has_data, || "msg".into())
    }

    fn class(r: Result<Payload, Failure>) -> Option<Class> {
        r.err().map(|f| f.class)
    }

    fn text(r: Result<Payload, Failure>) -> String {
        r.err().map(|f| f.error.to_string()).unwrap_or_default()
    }

    #[test]
    fn codes_are_classified() {
        assert_eq!(classify_code(200), CodeClass::Success);
        assert_eq!(classify_code(0), CodeClass::Success);
        assert_eq!(classify_code(401), CodeClass::Unauthorized);
        assert_eq!(classify_code(403), CodeClass::Unauthorized);
        assert_eq!(classify_code(400), CodeClass::Permanent);
        assert_eq!(classify_code(404), CodeClass::Permanent);
        assert_eq!(classify_code(408), CodeClass::Transient);
        assert_eq!(classify_code(429), CodeClass::Transient);
        assert_eq!(classify_code(500), CodeClass::Transient);
        assert_eq!(classify_code(3001), CodeClass::Transient);
        assert_eq!(classify_code(1), CodeClass::Transient);
    }

    #[test]
    fn codes_are_numbers_or_numeric_strings() {
        assert_eq!(code_of("200"), Some(200));
        assert_eq!(code_of("0"), Some(0));
        assert_eq!(code_of(r#"" 0 ""#), Some(0));
        assert_eq!(code_of("200.0"), Some(200));
        assert_eq!(code_of(r#""OK""#), None);
        assert_eq!(code_of("null"), None);
        assert_eq!(code_of("{}"), None);
    }

    #[test]
    fn statuses_are_read_case_insensitively() {
        assert_eq!(status_of(r#""Success""#), Status::Success);
        assert_eq!(status_of(r#"" ok ""#), Status::Success);
        assert_eq!(status_of(r#""FAILED""#), Status::Failure);
        assert_eq!(status_of(r#""Error""#), Status::Failure);
        assert_eq!(status_of(r#""string""#), Status::Other);
        assert_eq!(status_of("1"), Status::Other);
    }

    #[test]
    fn every_documented_success_form_is_accepted() {
        let ok = |e: &str, b: &str| judge(e, b).ok();
        // The search examples: code 200 and status Success.
        assert_eq!(
            ok("/s", r#"{"status":"Success","code":200,"data":{}}"#),
            Some(Payload::Data)
        );
        // The report and plan examples: code 0, status "string".
        assert_eq!(
            ok("/r", r#"{"status":"string","code":0,"data":{}}"#),
            Some(Payload::Data)
        );
        assert_eq!(ok("/r", r#"{"code":"0","data":[]}"#), Some(Payload::Data));
        assert_eq!(ok("/r", r#"{"code":"200","data":1}"#), Some(Payload::Data));
        // No code, status Success.
        assert_eq!(
            ok("/r", r#"{"status":"Success","data":{}}"#),
            Some(Payload::Data)
        );
        // The token without the envelope, and inside it.
        let bare_token = r#"{"response_type":"token","access_token":"t","expires_in":7200}"#;
        assert_eq!(ok("/tokens/company", bare_token), Some(Payload::Body));
        assert_eq!(
            ok("/tokens/company", r#"{"accessToken":"t"}"#),
            Some(Payload::Body)
        );
        assert_eq!(
            ok("/tokens/company", r#"{"code":0,"access_token":"t"}"#),
            Some(Payload::Body)
        );
        assert_eq!(
            ok(
                "/tokens/company",
                r#"{"code":200,"data":{"access_token":"t"}}"#
            ),
            Some(Payload::Data)
        );
        // Metrics without the envelope, and inside it.
        let m = "/callservice/v6/webmsg/monitoring/agents-metrics";
        let bare_metrics = r#"{"MessageID":"EventAgentsMetricsWatch","agentsSummary":{},"agentsMetrics":{"total":0,"list":[]}}"#;
        assert_eq!(ok(m, bare_metrics), Some(Payload::Body));
        assert_eq!(
            ok(m, r#"{"code":200,"data":{"agentsMetrics":{}}}"#),
            Some(Payload::Data)
        );
    }

    #[test]
    fn bare_forms_belong_to_their_endpoints() {
        // A token-like body at a data endpoint is not a bare answer.
        let r = judge("/callservice/x", r#"{"access_token":"secret-value"}"#);
        assert_eq!(class(r), Some(Class::Shape));
        let r = judge("/tokens/company", r#"{"agentsMetrics":{}}"#);
        assert_eq!(class(r), Some(Class::Shape));
    }

    #[test]
    fn error_codes_keep_their_class_whatever_the_status() {
        let r = judge("/p", r#"{"code":404,"status":"Success","data":null}"#);
        assert_eq!(class(r), Some(Class::Permanent));
        let r = judge("/p", r#"{"code":"500"}"#);
        assert_eq!(class(r), Some(Class::Transient));
        let r = judge("/p", r#"{"code":429}"#);
        assert!(r.as_ref().is_err_and(|f| f.rate_limited));
        let r = judge("/p", r#"{"code":401,"data":{}}"#);
        assert_eq!(class(r), Some(Class::Unauthorized));
        assert!(text(judge("/p", r#"{"code":3001}"#)).contains("code 3001: msg"));
    }

    #[test]
    fn refused_shapes_name_fields_and_types_never_values() {
        let r = judge("/a/b", r#"{"foo":"hidden-value","bar":12345,"baz":[1]}"#);
        assert_eq!(r.as_ref().err().map(|f| f.class), Some(Class::Shape));
        let t = text(r);
        assert!(t.contains("/a/b"), "{t}");
        assert!(
            t.contains("bar (a number), baz (an array), foo (a string)"),
            "{t}"
        );
        assert!(!t.contains("hidden-value") && !t.contains("12345"), "{t}");

        // Success code, no data, not a bare form.
        let t = text(judge("/a", r#"{"code":200,"message":"x"}"#));
        assert!(t.contains("says success but there is no `data`"), "{t}");
        let t = text(judge("/a", r#"{"code":0,"data":null}"#));
        assert!(t.contains("data (null)"), "{t}");
        // Success code contradicted by status.
        let t = text(judge("/a", r#"{"code":200,"status":"Failed","data":{}}"#));
        assert!(t.contains("`status` says failure"), "{t}");
        // No code, status failure.
        let r = judge("/a", r#"{"status":"Error","message":"nope"}"#);
        assert_eq!(class(r), Some(Class::Shape));
        // No code, status success, no data.
        let t = text(judge("/a", r#"{"status":"Success"}"#));
        assert!(t.contains("no `data`"), "{t}");
        // A status that says nothing, no code.
        let r = judge("/a", r#"{"status":"string","data":{}}"#);
        assert_eq!(class(r), Some(Class::Shape));
        // A code that is not a number.
        let t = text(judge("/a", r#"{"code":"OK","data":{}}"#));
        assert!(t.contains("`code` is a string, not a number"), "{t}");
        // A bare token with a token-bearing value never shows it.
        let t = text(judge("/tokens/company", r#"{"jwt":"eyJ.secret.sig"}"#));
        assert!(t.contains("jwt (a string)") && !t.contains("secret"), "{t}");
        // Empty objects and many fields.
        assert!(text(judge("/a", "{}")).contains("an empty object"));
        let many: String = (0..20)
            .map(|i| format!("\"f{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let t = text(judge("/a", &format!("{{{many}}}")));
        assert!(t.contains("and 4 more fields"), "{t}");
    }

    #[test]
    fn bodies_that_are_not_objects() {
        let f = not_an_object("/x", b"[1,2]");
        assert_eq!(f.class, Class::Shape);
        assert!(f.error.to_string().contains("an array"));
        assert_eq!(not_an_object("/x", b"\"tok\"").class, Class::Shape);
        assert!(
            !not_an_object("/x", b"\"tok\"")
                .error
                .to_string()
                .contains("tok")
        );
        assert_eq!(not_an_object("/x", b"<html>").class, Class::Transient);
        assert_eq!(not_an_object("/x", b"[1,").class, Class::Transient);
        assert_eq!(not_an_object("/x", b"  ").class, Class::Transient);
    }
}
