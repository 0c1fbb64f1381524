//! One report window fetched completely: every page, its rows' periods resolved and
//! keyed, its `amount` checked (see `run` for the rules).

use crate::core::convert::{self, BatchBuilder, RowMeta};
use crate::core::pipeline::Pipeline;
use crate::core::plan::Window;
use crate::core::report::definition::ReportDef;
use crate::core::report::period::{Period, PeriodError};
use crate::core::report::reconcile::{Comparison, Tolerance, Verdict, amount_vs_rows};
use crate::core::report::{request, response, table};
use crate::engine::extract::{COMPLETENESS_ATTEMPTS, ExtractError};
use crate::io::api::ApiClient;
use arrow::record_batch::RecordBatch;
use chrono::DateTime;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
// issue 4

/// The rows of one complete pass over a window's pages, with their parsed periods.
/// One fetched window, converted.
pub(super) struct Fetched {
    pub(super) batch: RecordBatch,
    pub(super) requests: u64,
    pub(super) amount_mismatches: u64,
    pub(super) unreadable_periods: u64,
    pub(super) bad_values: usize,
}

/// A report row and its period, as parsed from `result_date`.
pub(super) type ParsedRow = (Map<String, Value>, Result<Period, PeriodError>);

pub(super) struct Pass {
    rows: Vec<ParsedRow>,
    amount: Option<Map<String, Value>>,
    total: u64,
    requests: u64,
    problem: Option<String>,
}

impl Pass {
    fn fetched(&self) -> u64 {
        self.rows.len() as u64
    }
}

/// A row's id: the family's id field (empty with `dimensions = 1`, whose rows are one
/// per period). `None` when it has no usable id.
pub(super) fn row_id(def: &ReportDef, row: &Map<String, Value>) -> Option<String> {
    let id_field = crate::core::report::spec::dimension_fields(def.spec.family)
        .first()
        .map_or("", |(f, _)| *f);
    match row.get(id_field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ if def.spec.dimensions == 1 => Some(String::new()),
        _ => None,
    }
}

/// A row's key: its period start and its id. `None` when it has no usable key.
pub(super) fn row_key(
    def: &ReportDef,
    row: &Map<String, Value>,
    period: &Result<Period, PeriodError>,
) -> Option<(i64, String)> {
    let p = period.as_ref().ok()?;
    Some((p.start.timestamp_millis(), row_id(def, row)?))
}

/// The rows received, in the order of the answer, with their periods resolved together
/// (issue 13); and a problem if two of them have the same key.
pub(super) fn resolve(
    def: &ReportDef,
    received: BTreeMap<u64, Map<String, Value>>,
) -> (Vec<ParsedRow>, Option<String>) {
    let rows: Vec<Map<String, Value>> = received.into_values().collect();
    let periods = table::row_periods(&rows, &def.period_grid(), |r| {
        row_id(def, r).unwrap_or_default()
    });
    let mut seen: HashMap<(i64, String), usize> = HashMap::new();
    let mut problem = None;
    for (i, (row, period)) in rows.iter().zip(&periods).enumerate() {
        if let Some(k) = row_key(def, row, period)
            && let Some(first) = seen.insert(k.clone(), i)
            && problem.is_none()
        {
            problem = Some(format!(
                "rows {first} and {i} of the answer have the same key (period_start {}, id {:?}): the pages changed while paging",
                DateTime::from_timestamp_millis(k.0)
                    .map_or_else(|| k.0.to_string(), |t| t.to_rfc3339()),
                k.1
            ));
        }
    }
    (rows.into_iter().zip(periods).collect(), problem)
}

/// One pass over the pages of a window's query.
pub(super) async fn pass(
    client: &ApiClient,
    p: &Pipeline,
    def: &ReportDef,
    w: &Window,
) -> Result<Pass, ExtractError> {
    let shape = |page: u64, detail: String| ExtractError::Shape {
        endpoint: p.endpoint.clone(),
        page: u32::try_from(page).unwrap_or(u32::MAX),
        detail,
    };
    let mut out = Pass {
        rows: Vec::new(),
        amount: None,
        total: 0,
        requests: 0,
        problem: None,
    };
    // Rows by their place in the answer: a page read again replaces, never adds.
    let mut received: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
    let mut total: Option<u64> = None;
    let mut size = u64::from(def.spec.page_size.max(1));
    let mut page_num: u64 = 1;
    let mut max_requests: u64 = 64;
    loop {
        let page_no = u32::try_from(page_num).unwrap_or(u32::MAX);
        let mut body = request::page_body(&def.spec, def.tz, w.start, w.end, page_no)
            .map_err(|e| shape(page_num, e.to_string()))?;
        request::apply_filters(&mut body, &p.filters); // issue 13: `[filters]`
        if let Value::Object(m) = &mut body {
            m.insert("pageSize".into(), size.into());
        }
        let data = client
            .post(&p.endpoint, &body)
            .await
            .map_err(|source| ExtractError::Api {
                page: page_no,
                source,
            })?;
        out.requests += 1;
        let page = response::read_page(data).map_err(|e| shape(page_num, e.to_string()))?;
        match total {
            None => {
                total = Some(page.total);
                out.total = page.total;
                max_requests = 2 * (page.total / size + 1) + 32;
            }
            Some(t) if t != page.total => {
                out.problem = Some(format!(
                    "total changed from {t} to {} while paging",
                    page.total
                ));
                break;
            }
            Some(_) => {}
        }
        if out.amount.is_none() {
            out.amount = page.amount;
        }
        // The server's page size, when it says it capped ours.
        let eff = match page.page_size {
            Some(s) if s > 0 && s < size => s,
            _ => size,
        };
        size = eff;
        let n = page.rows.len() as u64;
        let page_start = (page_num - 1) * eff;
        for (i, row) in (0u64..).zip(page.rows) {
            received.insert(page_start + i, row);
        }
        if received.len() as u64 >= out.total || n == 0 {
            break;
        }
        if out.requests >= max_requests {
            out.problem = Some(format!("gave up after {} pages", out.requests));
            break;
        }
        // Next page: at or before the position after the last row received, so a short
        // page is re-read from where it stopped instead of skipped.
        let offset = page_start + n;
        let mut q = size;
        loop {
            let s = (offset / q) * q;
            if s > page_start {
                page_num = offset / q + 1;
                size = q;
                break;
            }
            if q == 1 {
                out.problem = Some("paging made no progress".into());
                break;
            }
            q -= 1;
        }
        if out.problem.is_some() {
            break;
        }
    }
    let (rows, duplicate) = resolve(def, received);
    out.rows = rows;
    if out.problem.is_none() && out.fetched() == out.total {
        out.problem = duplicate;
    }
    Ok(out)
}

/// Fetches one window completely and converts it (see the module documentation).
pub(super) async fn fetch_window(
    client: &ApiClient,
    p: &Pipeline,
    def: &ReportDef,
    w: &Window,
    meta: &RowMeta,
    tolerance: Tolerance,
) -> Result<Fetched, ExtractError> {
    let mut requests = 0;
    let mut last = String::new();
    let mut complete = None;
    for attempt in 1..=COMPLETENESS_ATTEMPTS {
        let pass = pass(client, p, def, w).await?;
        requests += pass.requests;
        if pass.problem.is_none() && pass.fetched() == pass.total {
            complete = Some(pass);
            break;
        }
        last = format!(
            "fetched {} rows (counted by their place in the answer) but the API's total is {}{}",
            pass.fetched(),
            pass.total,
            pass.problem
                .as_ref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        );
        tracing::warn!(pipeline = %p.name, window = %w, attempt, "report incomplete, fetching the window again: {last}");
        if attempt == COMPLETENESS_ATTEMPTS {
            return Err(ExtractError::Incomplete {
                attempts: attempt,
                fetched: pass.fetched(),
                total: pass.total,
                detail: pass.problem.map(|x| format!(" ({x})")).unwrap_or_default(),
            });
        }
    }
    let Some(pass) = complete else {
        return Err(ExtractError::Incomplete {
            attempts: COMPLETENESS_ATTEMPTS,
            fetched: 0,
            total: 0,
            detail: last,
        });
    };

    let all: Vec<Map<String, Value>> = pass.rows.iter().map(|(r, _)| r.clone()).collect();
    let amount_mismatches = match &pass.amount {
        Some(amount) => {
            let comparisons = amount_vs_rows(amount, &all, &def.spec.indicators);
            log_amount(p, w, &comparisons, &tolerance)
        }
        None => {
            tracing::debug!(pipeline = %p.name, window = %w, "the report sent no amount: nothing to reconcile");
            0
        }
    };

    let kept: Vec<&ParsedRow> = pass
        .rows
        .iter()
        .filter(|(_, period)| match period {
            Ok(pp) => request::wanted(pp, w.start, w.end),
            Err(_) => true,
        })
        .collect();
    let mut bad = BTreeMap::new();
    let texts: Vec<String> = kept
        .iter()
        .enumerate()
        .map(|(i, (row, period))| {
            if let Err(e) = period {
                bad.insert(i, e.clone());
            }
            table::with_period(row, period.as_ref().ok())
        })
        .collect();
    let mut builder = BatchBuilder::new(&p.schema, def.tz, texts.len());
    for (i, text) in texts.iter().enumerate() {
        let record =
            crate::core::record::parse_record(text).map_err(|detail| ExtractError::Shape {
                endpoint: p.endpoint.clone(),
                page: 0,
                detail: format!("row {i}: {detail}"),
            })?;
        builder.push(&record);
    }
    let bad_values = builder.bad_values;
    let batch = builder.finish(meta)?;
    let batch = table::add_period_errors(&batch, &bad)?;
    if !bad.is_empty() {
        let first = bad
            .values()
            .next()
            .map(|e| e.to_string())
            .unwrap_or_default();
        tracing::warn!(pipeline = %p.name, window = %w, rows = bad.len(), "rows whose result_date cannot be read are kept with a null period (see _errors): {first}");
    }
    let batch = convert::assemble(&p.schema, &[batch])?;
    Ok(Fetched {
        batch,
        requests,
        amount_mismatches,
        unreadable_periods: bad.len() as u64,
        bad_values,
    })
}

/// Logs `amount` comparisons beyond the tolerance; returns how many there were.
pub(super) fn log_amount(
    p: &Pipeline,
    w: &Window,
    comparisons: &[Comparison],
    tolerance: &Tolerance,
) -> u64 {
    let mut n = 0;
    for c in comparisons {
        match tolerance.verdict(c) {
            Verdict::Mismatch => {
                n += 1;
                tracing::warn!(
                    pipeline = %p.name,
                    window = %w,
                    indicator = %c.subject,
                    amount = c.expected.unwrap_or_default(),
                    rows_sum = c.actual.unwrap_or_default(),
                    tolerance = %tolerance,
                    "the report's amount differs from the sum of its rows"
                );
            }
            Verdict::Unknown => {
                tracing::debug!(pipeline = %p.name, window = %w, indicator = %c.subject, note = c.note.as_deref().unwrap_or(""), "amount not comparable");
            }
            Verdict::Equal | Verdict::WithinTolerance => {}
        }
    }
    n
}
