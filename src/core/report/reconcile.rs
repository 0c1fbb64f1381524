//! Reconciliation: do a report's numbers agree with themselves and with the talks?
//!
//! Two checks, both pure:
//!
//! - [`amount_vs_rows`]: a report page carries `amount`, the totals of the whole query;
//!   the rows of every page of that query must add up to it, indicator by indicator.
//!   Only additive indicators are checked ([`Indicator::is_additive`]): counters and
//!   summed durations, not ratios, averages, distinct counts or timestamps.
//! - [`gateway_vs_talks`]: the relay number report's `inbound_calls` / `outbound_calls`
//!   of a (final) day against the talks of that day with `callType` 2 / 3.
//!
//! Each produces [`Comparison`]s; a [`Tolerance`] turns each into a [`Verdict`]; and
//! [`format_table`] prints them for the `sobot-sync reconcile` command.

use super::indicators::Indicator;
use super::period::PeriodGrid;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One checked quantity: what the reference says (`expected`: the report's `amount`, or
/// the report in [`gateway_vs_talks`]) and what was found (`actual`: the sum of the
/// rows, or the talks). `None` on a side means it could not be read; `note` says why.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// What was compared: an indicator name, or `2024-02-21 inbound_calls`.
    pub subject: String,
    pub expected: Option<f64>,
    pub actual: Option<f64>,
    pub note: Option<String>,
}

impl Comparison {
    /// `actual - expected`, when both are known.
    pub fn difference(&self) -> Option<f64> {
        Some(self.actual? - self.expected?)
    }
}

/// The outcome of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Exactly the same.
    Equal,
    /// Different, but within the tolerance.
    WithinTolerance,
    /// Different beyond the tolerance.
    Mismatch,
    /// A side could not be read (a missing amount, a non-numeric value): not a proof of
    /// a difference, but nothing was proven either.
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "equal",
            Self::WithinTolerance => "within tolerance",
            Self::Mismatch => "MISMATCH",
            Self::Unknown => "unknown",
        }
    }
}

/// How far apart two numbers may be and still agree.
///
/// A difference `d = |actual - expected|` is accepted when `d <= abs` **or**
/// `d <= rel * max(|expected|, |actual|)`: either bound is enough, so `abs` covers
/// small numbers (a late call on a quiet day) and `rel` large ones (a second of
/// rounding in a day of talk time) without one making the other useless. The default is
/// exact (`abs = 0`, `rel = 0`): a report's `amount` is computed by the API from the same
/// rows, so any difference there is worth a look. Comparing with talks, which may still
/// be arriving or be filtered differently by the API (bot calls, `numberScope`), usually
/// wants a small tolerance such as `2,0.5%`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tolerance {
    /// Accepted absolute difference, in the indicator's unit (calls, seconds).
    pub abs: f64,
    /// Accepted relative difference, as a fraction (0.005 = 0.5 %).
    pub rel: f64,
}

impl Tolerance {
    pub const EXACT: Tolerance = Tolerance { abs: 0.0, rel: 0.0 };

    pub fn verdict(&self, c: &Comparison) -> Verdict {
        let (Some(e), Some(a)) = (c.expected, c.actual) else {
            return Verdict::Unknown;
        };
        let d = (a - e).abs();
        if d == 0.0 {
            Verdict::Equal
        } else if d <= self.abs || d <= self.rel * e.abs().max(a.abs()) {
            Verdict::WithinTolerance
        } else {
            Verdict::Mismatch
        }
    }
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.abs > 0.0, self.rel > 0.0) {
            (false, false) => f.write_str("exact"),
            (true, false) => write!(f, "±{}", num(self.abs)),
            (false, true) => write!(f, "±{}%", num(self.rel * 100.0)),
            (true, true) => write!(f, "±{} or ±{}%", num(self.abs), num(self.rel * 100.0)),
        }
    }
}

impl std::str::FromStr for Tolerance {
    type Err = String;

    /// `0` (exact), `5` (absolute), `0.5%` (relative), `5,0.5%` (either).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut t = Tolerance::EXACT;
        let bad =
            || format!("tolerance {s:?}: use 5, 0.5% or 5,0.5% (absolute, relative or either)");
        for part in s.split(',').map(str::trim) {
            if let Some(pct) = part.strip_suffix('%') {
                let v: f64 = pct.trim().parse().map_err(|_| bad())?;
                if !(v.is_finite() && v >= 0.0) {
                    return Err(bad());
                }
                t.rel = v / 100.0;
            } else {
                let v: f64 = part.parse().map_err(|_| bad())?;
                if !(v.is_finite() && v >= 0.0) {
                    return Err(bad());
                }
                t.abs = v;
            }
        }
        Ok(t)
    }
}

/// Counts of verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub checked: usize,
    pub equal: usize,
    pub within: usize,
    pub mismatched: usize,
    pub unknown: usize,
}

impl Summary {
    pub fn of(comparisons: &[Comparison], tolerance: &Tolerance) -> Self {
        let mut s = Summary::default();
        for c in comparisons {
            s.checked += 1;
            match tolerance.verdict(c) {
                Verdict::Equal => s.equal += 1,
                Verdict::WithinTolerance => s.within += 1,
                Verdict::Mismatch => s.mismatched += 1,
                Verdict::Unknown => s.unknown += 1,
            }
        }
        s
    }

    /// No difference beyond the tolerance. Unknowns do not fail a check (they are shown),
    /// because a report that sends no `amount` for an indicator has nothing to disagree with.
    pub fn passed(&self) -> bool {
        self.mismatched == 0
    }
}

/// A report value as a number: a JSON number or numeric string. `null` and `""` are
/// `Ok(None)` (the API's "no value", counted as nothing); anything else is an error
/// quoting the value.
pub fn number_of(v: &Value) -> Result<Option<f64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_f64().map(Some).ok_or_else(|| n.to_string()),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| format!("{s:?}")),
        other => Err(other.to_string()),
    }
}

/// Checks the report's `amount` against the sum of `rows` for each additive indicator
/// of `indicators`, in their order. `rows` must be every row of the query (all pages,
/// before dropping rows outside the window), since `amount` covers the whole query.
pub fn amount_vs_rows(
    amount: &Map<String, Value>,
    rows: &[Map<String, Value>],
    indicators: &[Indicator],
) -> Vec<Comparison> {
    indicators
        .iter()
        .filter(|i| i.is_additive())
        .map(|ind| {
            let name = ind.name.as_str();
            let mut notes = Vec::new();
            let expected = match amount.get(name).map(number_of) {
                None => {
                    notes.push("amount has no value".to_string());
                    None
                }
                Some(Ok(None)) => {
                    notes.push("amount is empty".to_string());
                    None
                }
                Some(Ok(Some(v))) => Some(v),
                Some(Err(raw)) => {
                    notes.push(format!("amount is {raw}"));
                    None
                }
            };
            let mut sum = 0.0;
            let mut readable = true;
            for (i, row) in rows.iter().enumerate() {
                match row.get(name).map(number_of) {
                    None | Some(Ok(None)) => {}
                    Some(Ok(Some(v))) => sum += v,
                    Some(Err(raw)) => {
                        readable = false;
                        notes.push(format!("row {i} is {raw}"));
                    }
                }
            }
            Comparison {
                subject: name.to_string(),
                expected,
                actual: readable.then_some(sum),
                note: (!notes.is_empty()).then(|| notes.join("; ")),
            }
        })
        .collect()
}

/// Inbound and outbound call counts of one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayCounts {
    pub inbound: i64,
    pub outbound: i64,
}

/// Talks' `callType` of an inbound call.
pub const CALL_TYPE_INBOUND: i64 = 2;
/// Talks' `callType` of an outbound call.
pub const CALL_TYPE_OUTBOUND: i64 = 3;

/// Compares, day by day, the relay number report's inbound/outbound counts with the
/// talks of that day by `callType` (2 inbound, 3 outbound; others, such as 1 internal,
/// are not in the report and are ignored). A day missing on one side counts as zero
/// calls there: the report has no row for a day without calls, and a day without talks
/// has no talks. Pass final days only (`report::settle`): a provisional day may still
/// change on either side. `expected` is the report, `actual` the talks.
pub fn gateway_vs_talks(
    gateway: &BTreeMap<NaiveDate, DayCounts>,
    talks: &BTreeMap<NaiveDate, BTreeMap<i64, i64>>,
) -> Vec<Comparison> {
    let days: std::collections::BTreeSet<NaiveDate> =
        gateway.keys().chain(talks.keys()).copied().collect();
    let mut out = Vec::new();
    for day in days {
        let g = gateway.get(&day).copied().unwrap_or_default();
        let t = talks.get(&day);
        let talk = |ct: i64| t.and_then(|m| m.get(&ct)).copied().unwrap_or(0);
        for (field, reported, ct) in [
            ("inbound_calls", g.inbound, CALL_TYPE_INBOUND),
            ("outbound_calls", g.outbound, CALL_TYPE_OUTBOUND),
        ] {
            out.push(Comparison {
                subject: format!("{day} {field} vs talks callType {ct}"),
                expected: Some(reported as f64),
                actual: Some(talk(ct) as f64),
                note: None,
            });
        }
    }
    out
}

/// Adds up relay number report rows into per-day counts: `inbound_calls` and
/// `outbound_calls` of every relay number, by the local date of the row's period.
/// The grid must be of half hours, hours or days (a week or month is not a day).
/// Rows whose `result_date` or counts cannot be read are returned as messages and left
/// out of the sums, never dropped silently.
pub fn gateway_day_counts(
    rows: &[Map<String, Value>],
    grid: &PeriodGrid,
) -> (BTreeMap<NaiveDate, DayCounts>, Vec<String>) {
    use super::period::DateType;
    let mut out: BTreeMap<NaiveDate, DayCounts> = BTreeMap::new();
    let mut problems = Vec::new();
    if matches!(grid.date_type, DateType::Week | DateType::Month) {
        problems.push(format!(
            "a {} report cannot be compared with talks day by day",
            grid.date_type
        ));
        return (out, problems);
    }
    for (i, row) in rows.iter().enumerate() {
        let Some(raw) = row.get("result_date").and_then(Value::as_str) else {
            problems.push(format!("row {i}: no result_date"));
            continue;
        };
        let period = match grid.parse_result_date(raw) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("row {i}: {e}"));
                continue;
            }
        };
        let count = |field: &str| -> Result<i64, String> {
            match row.get(field).map(number_of) {
                None | Some(Ok(None)) => Ok(0),
                Some(Ok(Some(v))) if v.fract() == 0.0 => Ok(v as i64),
                Some(Ok(Some(v))) => Err(format!("row {i}: {field} is {v}, not a count")),
                Some(Err(raw)) => Err(format!("row {i}: {field} is {raw}")),
            }
        };
        match (count("inbound_calls"), count("outbound_calls")) {
            (Ok(inb), Ok(outb)) => {
                let day = crate::core::timeutil::local_date(grid.tz, period.start);
                let e = out.entry(day).or_default();
                e.inbound += inb;
                e.outbound += outb;
            }
            (Err(e), _) | (_, Err(e)) => problems.push(e),
        }
    }
    (out, problems)
}

/// Counts talks per local day and `callType`, from `(start_time, callType)` pairs.
pub fn talk_day_counts(
    talks: impl IntoIterator<Item = (DateTime<Utc>, i64)>,
    tz: chrono_tz::Tz,
) -> BTreeMap<NaiveDate, BTreeMap<i64, i64>> {
    let mut out: BTreeMap<NaiveDate, BTreeMap<i64, i64>> = BTreeMap::new();
    for (start, call_type) in talks {
        *out.entry(crate::core::timeutil::local_date(tz, start))
            .or_default()
            .entry(call_type)
            .or_default() += 1;
    }
    out
}

/// A number without trailing zeros: `12`, `0.5`, `-3.25`.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The plain-text output of `sobot-sync reconcile`: a title line with the tolerance, a
/// header, one line per comparison that is not exactly equal (in the given order), and
/// a summary line. Columns are padded to their widest cell, so the same input always
/// prints the same text and a diff of two runs lines up.
///
/// ```text
/// report_gateway_numbers 2024-02-21: amount vs rows (tolerance exact)
/// subject        expected  actual  difference  verdict   note
/// inbound_calls       120     118          -2  MISMATCH
/// 12 checked: 11 equal, 0 within tolerance, 1 mismatch, 0 unknown
/// ```
pub fn format_table(title: &str, comparisons: &[Comparison], tolerance: &Tolerance) -> String {
    let summary = Summary::of(comparisons, tolerance);
    let mut out = String::new();
    let _ = writeln!(out, "{title} (tolerance {tolerance})");
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), num);
    let lines: Vec<[String; 6]> = comparisons
        .iter()
        .filter_map(|c| {
            let verdict = tolerance.verdict(c);
            (verdict != Verdict::Equal).then(|| {
                [
                    c.subject.clone(),
                    show(c.expected),
                    show(c.actual),
                    c.difference().map_or_else(
                        || "-".to_string(),
                        |d| format!("{}{}", if d > 0.0 { "+" } else { "" }, num(d)),
                    ),
                    verdict.as_str().to_string(),
                    c.note.clone().unwrap_or_default(),
                ]
            })
        })
        .collect();
    if lines.is_empty() {
        let _ = writeln!(out, "no differences");
    } else {
        let header = [
            "subject",
            "expected",
            "actual",
            "difference",
            "verdict",
            "note",
        ]
        .map(String::from);
        let mut width = [0usize; 6];
        for l in std::iter::once(&header).chain(&lines) {
            for (w, cell) in width.iter_mut().zip(l) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for l in std::iter::once(&header).chain(&lines) {
            let mut line = String::new();
            for (k, cell) in l.iter().enumerate() {
                let pad = width[k].saturating_sub(cell.chars().count());
                if k > 0 {
                    line.push_str("  ");
                }
                // Numbers right-aligned, text left-aligned.
                if (1..=3).contains(&k) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    let _ = writeln!(
        out,
        "{} checked: {} equal, {} within tolerance, {} mismatch, {} unknown",
        summary.checked, summary.equal, summary.within, summary.mismatched, summary.unknown
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::report::indicators::{Catalogue, Family};
    use crate::core::report::period::{DateType, WeekStart};
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => panic!("not an object"),
        }
    }

    fn gateway_indicators(names: &[&str]) -> Vec<Indicator> {
        let cat = Catalogue::embedded(Family::GatewayNumbers);
        names.iter().map(|n| cat.get(n).unwrap().clone()).collect()
    }

    #[test]
    fn amount_against_rows() {
        let inds = gateway_indicators(&[
            "inbound_calls",
            "inbound_calls_duration",
            "inbound_calls_average_duration",
            "outbound_answer_ratio",
            "outbound_calls",
            "outbound_customer_noAnswer_calls",
        ]);
        let amount = obj(json!({
            "inbound_calls": 5, "inbound_calls_duration": "100",
            "inbound_calls_average_duration": 20, "outbound_answer_ratio": 0.5,
            "outbound_calls": 9
        }));
        let rows = vec![
            obj(
                json!({"inbound_calls": 2, "inbound_calls_duration": "60", "outbound_calls": 4, "outbound_customer_noAnswer_calls": 1}),
            ),
            obj(json!({"inbound_calls": "3", "inbound_calls_duration": 40, "outbound_calls": ""})),
            obj(json!({"inbound_calls": null, "outbound_calls": 4})),
        ];
        let cs = amount_vs_rows(&amount, &rows, &inds);
        let subjects: Vec<&str> = cs.iter().map(|c| c.subject.as_str()).collect();
        // Averages and ratios are not additive and not checked.
        assert_eq!(
            subjects,
            [
                "inbound_calls",
                "inbound_calls_duration",
                "outbound_calls",
                "outbound_customer_noAnswer_calls"
            ]
        );
        let t = Tolerance::EXACT;
        let verdicts: Vec<Verdict> = cs.iter().map(|c| t.verdict(c)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Equal,
                Verdict::Equal,
                Verdict::Mismatch,
                Verdict::Unknown
            ]
        );
        assert_eq!(cs[2].difference(), Some(-1.0));
        assert_eq!(cs[3].note.as_deref(), Some("amount has no value"));
        let s = Summary::of(&cs, &t);
        assert_eq!(
            (s.checked, s.equal, s.mismatched, s.unknown, s.passed()),
            (4, 2, 1, 1, false)
        );
        assert!(Summary::of(&cs, &Tolerance { abs: 1.0, rel: 0.0 }).passed());

        let bad = vec![obj(json!({"inbound_calls": "many"}))];
        let cs = amount_vs_rows(&amount, &bad, &gateway_indicators(&["inbound_calls"]));
        assert_eq!(cs[0].actual, None);
        assert!(cs[0].note.as_deref().unwrap().contains("row 0 is \"many\""));
        assert_eq!(t.verdict(&cs[0]), Verdict::Unknown);
    }

    #[test]
    fn tolerance_either_bound() {
        let c = |e: f64, a: f64| Comparison {
            subject: "x".into(),
            expected: Some(e),
            actual: Some(a),
            note: None,
        };
        let t: Tolerance = "2,1%".parse().unwrap();
        assert_eq!(
            t,
            Tolerance {
                abs: 2.0,
                rel: 0.01
            }
        );
        assert_eq!(t.verdict(&c(10.0, 12.0)), Verdict::WithinTolerance); // abs
        assert_eq!(t.verdict(&c(1000.0, 1009.0)), Verdict::WithinTolerance); // rel
        assert_eq!(t.verdict(&c(100.0, 104.0)), Verdict::Mismatch);
        assert_eq!(t.verdict(&c(7.0, 7.0)), Verdict::Equal);
        assert_eq!("0".parse::<Tolerance>().unwrap(), Tolerance::EXACT);
        assert_eq!("0.5%".parse::<Tolerance>().unwrap().rel, 0.005);
        assert!("-1".parse::<Tolerance>().is_err());
        assert!("x%".parse::<Tolerance>().unwrap_err().contains("x%"));
        assert_eq!(Tolerance::EXACT.to_string(), "exact");
        assert_eq!(t.to_string(), "±2 or ±1%");
    }

    #[test]
    fn gateway_report_against_talks() {
        let sg = chrono_tz::Asia::Singapore;
        let grid = PeriodGrid::new(DateType::HalfHour, WeekStart::Monday, sg);
        let rows = vec![
            obj(
                json!({"result_date": "2024-02-21 10:00 2024-02-21 10:30", "gateway_number": "1", "inbound_calls": 2, "outbound_calls": "1"}),
            ),
            obj(
                json!({"result_date": "2024-02-21 23:30 2024-02-21 24:00", "gateway_number": "2", "inbound_calls": 1, "outbound_calls": 0}),
            ),
            obj(
                json!({"result_date": "2024-02-22 00:00 2024-02-22 00:30", "gateway_number": "1", "inbound_calls": 1}),
            ),
            obj(json!({"result_date": "garbage", "inbound_calls": 1})),
            obj(json!({"result_date": "2024-02-22 01:00 2024-02-22 01:30", "inbound_calls": "x"})),
        ];
        let (days, problems) = gateway_day_counts(&rows, &grid);
        assert_eq!(problems.len(), 2, "{problems:?}");
        let d21 = NaiveDate::from_ymd_opt(2024, 2, 21).unwrap();
        let d22 = NaiveDate::from_ymd_opt(2024, 2, 22).unwrap();
        assert_eq!(
            days[&d21],
            DayCounts {
                inbound: 3,
                outbound: 1
            }
        );
        assert_eq!(
            days[&d22],
            DayCounts {
                inbound: 1,
                outbound: 0
            }
        );

        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let talks = talk_day_counts(
            [
                (at("2024-02-21T10:05:00+08:00"), 2),
                (at("2024-02-21T10:06:00+08:00"), 2),
                (at("2024-02-21T23:59:00+08:00"), 2),
                (at("2024-02-21T12:00:00+08:00"), 3),
                (at("2024-02-21T12:00:00+08:00"), 1),
                // 2024-02-22 00:10 local, but 2024-02-21 in UTC: counted on the 22nd.
                (at("2024-02-21T16:10:00Z"), 2),
                (at("2024-02-23T09:00:00+08:00"), 3),
            ],
            sg,
        );
        let cs = gateway_vs_talks(&days, &talks);
        assert_eq!(cs.len(), 6);
        let t = Tolerance::EXACT;
        let bad: Vec<&str> = cs
            .iter()
            .filter(|c| t.verdict(c) != Verdict::Equal)
            .map(|c| c.subject.as_str())
            .collect();
        assert_eq!(bad, ["2024-02-23 outbound_calls vs talks callType 3"]);

        let weeks = PeriodGrid::new(DateType::Week, WeekStart::Monday, sg);
        assert_eq!(gateway_day_counts(&rows, &weeks).1.len(), 1);
    }

    #[test]
    fn table_is_stable_and_readable() {
        let cs = vec![
            Comparison {
                subject: "inbound_calls".into(),
                expected: Some(120.0),
                actual: Some(118.0),
                note: None,
            },
            Comparison {
                subject: "inbound_calls_duration".into(),
                expected: Some(3600.0),
                actual: Some(3600.0),
                note: None,
            },
            Comparison {
                subject: "outbound_calls".into(),
                expected: Some(10.0),
                actual: Some(11.0),
                note: None,
            },
            Comparison {
                subject: "x".into(),
                expected: None,
                actual: Some(0.5),
                note: Some("amount has no value".into()),
            },
        ];
        let text = format_table(
            "report_gateway_numbers 2024-02-21: amount vs rows",
            &cs,
            &Tolerance { abs: 1.0, rel: 0.0 },
        );
        let want = "\
report_gateway_numbers 2024-02-21: amount vs rows (tolerance ±1)
subject         expected  actual  difference  verdict           note
inbound_calls        120     118          -2  MISMATCH
outbound_calls        10      11          +1  within tolerance
x                      -     0.5           -  unknown           amount has no value
4 checked: 1 equal, 1 within tolerance, 1 mismatch, 1 unknown
";
        assert_eq!(text, want);
        let none = format_table("t", &cs[1..2], &Tolerance::EXACT);
        assert_eq!(
            none,
            "t (tolerance exact)\nno differences\n1 checked: 1 equal, 0 within tolerance, 0 mismatch, 0 unknown\n"
        );
    }
}
