//! Rows, pages and `amount` of one query, period by period: the one code path of the
//! server and of the `Dataset::report` ground truth.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::agent::{agent_period, department_period};
use super::gateway::gateway_period;
use super::query::{Dims, ReportQuery};
use super::values::{Acc, Val, as_string, put};
use crate::core::report::indicators::Family;
use crate::sim::config::{Dialect, Faults};
use crate::sim::dataset::Dataset;
use crate::sim::facts::GATEWAY_NUMBERS;
use crate::sim::periods::{Period, periods, result_date};

/// All rows of a report query with their `amount`: the ground truth of one search.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportTable {
    /// Every row in the served order (the `metric` lists of all pages, concatenated).
    pub rows: Vec<Value>,
    /// issue 13: each row's period as the server meant it, `[start, end)` in epoch ms of
    /// the whole period (`None` for rows by key alone): the truth against which a
    /// client's reading of `result_date` is checked, e.g. across a DST fall-back, where
    /// two periods share their labels.
    pub periods: Vec<Option<(i64, i64)>>,
    pub amount: Value,
    pub total: usize,
}

/// The fields a row carries for its relay number, agent or department.
type KeyFields = Vec<(&'static str, String)>;

/// The dimension values of a query (all the simulator knows, less the filter), in key
/// order, each with its row fields.
fn keys(ds: &Dataset, q: &ReportQuery) -> Vec<(usize, KeyFields)> {
    let keep = |candidates: &[&str]| {
        q.filter.is_empty() || candidates.iter().any(|c| q.filter.iter().any(|f| f == c))
    };
    let mut out: Vec<(usize, KeyFields)> = match q.family {
        Family::GatewayNumbers => GATEWAY_NUMBERS
            .iter()
            .enumerate()
            .filter(|(_, g)| keep(&[g]))
            .map(|(i, g)| (i, vec![("gateway_number", g.to_string())]))
            .collect(),
        Family::Agents => ds
            .generator()
            .agents()
            .iter()
            .enumerate()
            .filter(|(_, a)| match q.agent_type {
                Some(1) => keep(&[&a.uuid]),
                Some(2) => keep(&[&a.id]),
                _ => keep(&[&a.uuid, &a.id]),
            })
            .map(|(i, a)| {
                (
                    i,
                    vec![
                        ("serviceId", a.uuid.clone()),
                        ("serviceNo", a.id.clone()),
                        ("serviceName", a.name.clone()),
                    ],
                )
            })
            .collect(),
        Family::Departments => ds
            .report_state()
            .departments()
            .iter()
            .enumerate()
            .filter(|(_, (id, _))| keep(&[id]))
            .map(|(i, (id, name))| {
                (
                    i,
                    vec![("departId", id.clone()), ("departName", name.clone())],
                )
            })
            .collect(),
    };
    out.sort_by(|a, b| a.1[0].1.cmp(&b.1[0].1));
    out
}

/// A row's period: `[start, end)` in epoch ms of the whole period, `None` by key alone.
type Span = Option<(i64, i64)>;

/// The rows of a page and the totals: the one code path of server and ground truth.
pub(super) struct Assembled {
    pub(super) rows: Vec<Value>,
    pub(super) periods: Vec<Span>,
    pub(super) amount: Value,
    pub(super) total: usize,
}

fn assemble<A: Acc>(
    q: &ReportQuery,
    tz: Tz,
    instants: bool,
    keys: &[(usize, KeyFields)],
    window: (usize, usize),
    mut per_period: impl FnMut(&Period) -> Vec<A>,
) -> Assembled {
    let n_keys = keys.len();
    let n_periods = match q.dims {
        Dims::KeyTime => periods(tz, q.date_type, q.start, q.end).count(),
        _ => 0,
    };
    let mut amount = A::default();
    let mut per_key = vec![A::default(); n_keys];
    let mut page: Vec<(usize, Value, Span)> = Vec::new();
    let mut total = 0usize;
    let want = |i: usize| (window.0..window.1).contains(&i);
    let row = |p: Option<&Period>, key: Option<(usize, &KeyFields)>, acc: &A| {
        let mut m = Map::new();
        let t = p.map(|p| p.local_start.and_utc().timestamp()).unwrap_or(0);
        let k = key.map(|(k, _)| k).unwrap_or(0);
        if let Some(p) = p {
            let spaced = ((t / 1800) as usize + k) % 3 == 2;
            m.insert(
                "result_date".to_string(),
                Value::String(result_date(q.date_type, p, spaced, instants)),
            );
        }
        if let Some((_, fields)) = key {
            for (name, v) in fields {
                m.insert((*name).to_string(), Value::String(v.clone()));
            }
        }
        for (name, kind) in &q.fields {
            let v = acc.value(name).unwrap_or(Val::Int(0));
            put(&mut m, name, *kind, v, as_string(name, t, k));
        }
        (
            Value::Object(m),
            p.map(|p| (p.full_start_ms, p.full_end_ms)),
        )
    };
    for p in periods(tz, q.date_type, q.start, q.end) {
        let accs = per_period(&p);
        let mut period_total = A::default();
        for (pos, (idx, fields)) in keys.iter().enumerate() {
            let Some(acc) = accs.get(*idx) else { continue };
            period_total.add(acc);
            match q.dims {
                Dims::TimeKey => {
                    let i = p.index * n_keys + pos;
                    if want(i) {
                        let (r, span) = row(Some(&p), Some((pos, fields)), acc);
                        page.push((i, r, span));
                    }
                }
                Dims::KeyTime => {
                    let i = pos * n_periods + p.index;
                    if want(i) {
                        let (r, span) = row(Some(&p), Some((pos, fields)), acc);
                        page.push((i, r, span));
                    }
                }
                Dims::Key => per_key[pos].add(acc),
                Dims::Time => {}
            }
        }
        match q.dims {
            Dims::Time => {
                if want(p.index) {
                    let (r, span) = row(Some(&p), None, &period_total);
                    page.push((p.index, r, span));
                }
                total += 1;
            }
            Dims::TimeKey | Dims::KeyTime => total += n_keys,
            Dims::Key => {}
        }
        amount.add(&period_total);
    }
    if q.dims == Dims::Key {
        for (pos, fields) in keys.iter().map(|(_, f)| f).enumerate() {
            if want(pos) {
                let (r, span) = row(None, Some((pos, fields)), &per_key[pos]);
                page.push((pos, r, span));
            }
        }
        total = n_keys;
    }
    page.sort_by_key(|(i, _, _)| *i);
    let mut amount_json = Map::new();
    for (name, kind) in &q.fields {
        let v = amount.value(name).unwrap_or(Val::Int(0));
        put(&mut amount_json, name, *kind, v, false);
    }
    let periods = page.iter().map(|(_, _, span)| *span).collect();
    Assembled {
        rows: page.into_iter().map(|(_, r, _)| r).collect(),
        periods,
        amount: Value::Object(amount_json),
        total,
    }
}

pub(super) fn run(
    ds: &Dataset,
    q: &ReportQuery,
    tz: Tz,
    instants: bool,
    now_ms: i64,
    faults: &Faults,
    window: (usize, usize),
) -> Assembled {
    let keys = keys(ds, q);
    match q.family {
        Family::GatewayNumbers => assemble(q, tz, instants, &keys, window, |p| {
            gateway_period(ds, q, p, now_ms, faults)
        }),
        Family::Agents => assemble(q, tz, instants, &keys, window, |p| {
            agent_period(ds, q.call_type, p.start_ms, p.end_ms, now_ms, faults)
        }),
        Family::Departments => assemble(q, tz, instants, &keys, window, |p| {
            department_period(ds, q, p, now_ms, faults)
        }),
    }
}

impl Dataset {
    /// Ground truth: every row of report query `q` (all pages, in served order) and its
    /// `amount`, as the server computes them for a request with `timezoneid` `tz`, at
    /// simulated now `now`, under `faults` (which decide late records). This is the
    /// server's own code path; see the module docs of `sim::reports` for independent
    /// checks.
    pub fn report(
        &self,
        q: &ReportQuery,
        tz: Tz,
        now: DateTime<Utc>,
        faults: &Faults,
    ) -> ReportTable {
        let instants = self.dialect() == Dialect::Literal;
        let a = run(
            self,
            q,
            tz,
            instants,
            now.timestamp_millis(),
            faults,
            (0, usize::MAX),
        );
        ReportTable {
            rows: a.rows,
            periods: a.periods,
            amount: a.amount,
            total: a.total,
        }
    }
}
