//! Which periods a `result_date` may name (two for a repeated hour), and how the rows of
//! one answer share them out (issue 13).

use super::date_type::DateType;
use super::error::{PeriodError, perr};
use super::grid::{Period, PeriodGrid};
use super::result_date::{parse_result_date, slot_labels};
use super::tokens::tokens;
use crate::core::timeutil::resolve_local;
use chrono::{Duration, TimeZone, Timelike};
use std::collections::{HashMap, HashSet};

impl PeriodGrid {
    /// The period a `result_date` read alone names: its earliest candidate
    /// ([`Self::candidates`]). Rows of one answer are read with [`Self::resolve_rows`],
    /// which tells the two passes of a repeated hour apart.
    pub fn parse_result_date(&self, raw: &str) -> Result<Period, PeriodError> {
        let c = self.candidates(raw)?;
        c.first()
            .copied()
            .ok_or_else(|| perr(raw, "names no period"))
    }

    /// issue 13: every period of the grid a `result_date` may name, in time order (never
    /// empty). A half hour or hour matches a period when its labels are the period's
    /// wall-clock labels ([`Self::labels`]) or the local times of its instants
    /// ([`Self::instant_labels`]); a start alone matches on the start label. Two
    /// candidates are the two passes of a repeated slot. A day, week or month has one:
    /// [`parse_result_date`], and it must be a period of this grid (a week of the right
    /// first day, a whole month): a `result_date` that names something else means the
    /// response is not the report that was asked for.
    pub fn candidates(&self, raw: &str) -> Result<Vec<Period>, PeriodError> {
        if self.is_elapsed() {
            return self.slot_candidates(raw);
        }
        let p = parse_result_date(raw, self.date_type, self.tz)?;
        let on_grid = self.period_of(p.start);
        if on_grid != p {
            let want = self.format_result_date(on_grid);
            return Err(perr(
                raw,
                format!(
                    "is not a {} period of the grid{}; the period there is {want:?}",
                    self.date_type,
                    if self.date_type == DateType::Week {
                        format!(" (weeks starting {:?})", self.week_start)
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        Ok(vec![p])
    }

    fn slot_candidates(&self, raw: &str) -> Result<Vec<Period>, PeriodError> {
        let toks = tokens(raw).map_err(|why| perr(raw, why))?;
        let (start, end) = slot_labels(raw, &toks, self.date_type)?;
        let step = self.date_type.slot_minutes().unwrap_or(60);
        let base = resolve_local(self.tz, start);
        // DST changes move the wall clock by at most two hours.
        let reach = Duration::hours(3);
        let mut out: Vec<Period> = Vec::new();
        for p in self.periods(base - reach, base + reach + Duration::minutes(step)) {
            let (wall, instants) = (self.labels(p), self.instant_labels(p));
            let hit = match end {
                Some(end) => wall == (start, end) || instants == (start, end),
                None => wall.0 == start || instants.0 == start,
            };
            if hit && !out.contains(&p) {
                out.push(p);
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
        let minutes = i64::from(start.hour()) * 60 + i64::from(start.minute());
        let why = if minutes % step != 0 {
            format!(
                "{} does not start a {} slot",
                start.format("%H:%M"),
                self.date_type
            )
        } else if self.tz.from_local_datetime(&start).earliest().is_none() {
            format!(
                "names no time in {}: the clocks skip it (a DST change)",
                self.tz
            )
        } else {
            format!(
                "a {} period is {step} local minutes long (across a DST change its end may \
                 also read as the local time of its end instant), in {}",
                self.date_type, self.tz
            )
        };
        Err(perr(raw, why))
    }

    /// issue 13: the periods of the rows of one answer, given as `(result_date, key)` in
    /// the order sent, where `key` is the row's dimension value (agent, relay number,
    /// department; empty for a report by time alone). Per key, a row with one candidate
    /// ([`Self::candidates`]) takes it; then each row with several takes, in order, the
    /// earliest candidate that no row of its key has taken. The repeated hour's
    /// `01:00 02:00` sent twice is thus its first pass, then its second, whether the rows
    /// of a period come together or each key's rows run through the day; and with the
    /// other rendering (`01:00 01:00`, then `01:00 02:00`) the order does not matter.
    pub fn resolve_rows(&self, rows: &[(&str, &str)]) -> Vec<Result<Period, PeriodError>> {
        let mut cache: HashMap<&str, Result<Vec<Period>, PeriodError>> = HashMap::new();
        let found: Vec<Result<Vec<Period>, PeriodError>> = rows
            .iter()
            .map(|(raw, _)| {
                cache
                    .entry(raw)
                    .or_insert_with(|| self.candidates(raw))
                    .clone()
            })
            .collect();
        let mut taken: HashSet<(&str, Period)> = HashSet::new();
        let mut out: Vec<Option<Result<Period, PeriodError>>> = vec![None; rows.len()];
        for (i, c) in found.iter().enumerate() {
            match c {
                Err(e) => out[i] = Some(Err(e.clone())),
                Ok(ps) if ps.len() == 1 => {
                    taken.insert((rows[i].1, ps[0]));
                    out[i] = Some(Ok(ps[0]));
                }
                Ok(_) => {}
            }
        }
        for (i, c) in found.iter().enumerate() {
            let Ok(ps) = c else { continue };
            if ps.len() < 2 {
                continue;
            }
            let key = rows[i].1;
            let p = ps
                .iter()
                .find(|p| !taken.contains(&(key, **p)))
                .unwrap_or(&ps[0]);
            taken.insert((key, *p));
            out[i] = Some(Ok(*p));
        }
        out.into_iter()
            .zip(rows)
            .map(|(r, (raw, _))| r.unwrap_or_else(|| Err(perr(raw, "names no period"))))
            .collect()
    }
}
