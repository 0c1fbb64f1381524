//! The lexer of `result_date`: the dates, months and times it holds, in the many
//! spellings servers send.

use chrono::NaiveDate;

/// What a `result_date` is made of: dates, months and times, separators dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok {
    Date(NaiveDate),
    Month(NaiveDate),
    /// Hour and minute; hour 24 only with minute 0.
    Time(u32, u32),
}

fn read_digits(cs: &[char], i: &mut usize) -> String {
    let mut s = String::new();
    while let Some(c) = cs.get(*i).filter(|c| c.is_ascii_digit()) {
        s.push(*c);
        *i += 1;
    }
    s
}

fn skip_spaces(cs: &[char], i: &mut usize) {
    while cs.get(*i).is_some_and(|c| c.is_whitespace()) {
        *i += 1;
    }
}

/// Splits a `result_date` into dates, months and times. Whitespace anywhere (also around
/// `:`), `T` between a date and a time, and the range separators `~`, `-`, `–`, `—`, `,`,
/// `to` and `至` are accepted.
pub(super) fn tokens(raw: &str) -> Result<Vec<Tok>, String> {
    let cs: Vec<char> = raw.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        skip_spaces(&cs, &mut i);
        let Some(&c) = cs.get(i) else { break };
        if c.is_ascii_digit() {
            let first = read_digits(&cs, &mut i);
            let sep = cs.get(i).copied();
            let digit_after = cs.get(i + 1).is_some_and(|c| c.is_ascii_digit());
            if first.len() == 4 && matches!(sep, Some('-') | Some('/')) && digit_after {
                let year: i32 = first.parse().map_err(|_| "bad year")?;
                i += 1;
                let month_s = read_digits(&cs, &mut i);
                let month: u32 = month_s.parse().map_err(|_| "bad month")?;
                if month_s.len() > 2 {
                    return Err(format!("{year}-{month_s} is not a month"));
                }
                if cs.get(i) == sep.as_ref() && cs.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                    let day_s = read_digits(&cs, &mut i);
                    let day: u32 = day_s.parse().map_err(|_| "bad day")?;
                    let d = NaiveDate::from_ymd_opt(year, month, day)
                        .filter(|_| day_s.len() <= 2)
                        .ok_or_else(|| format!("{year}-{month_s}-{day_s} is not a date"))?;
                    out.push(Tok::Date(d));
                    // `2024-02-21T16:30`
                    if cs.get(i) == Some(&'T') {
                        i += 1;
                    }
                } else {
                    let d = NaiveDate::from_ymd_opt(year, month, 1)
                        .ok_or_else(|| format!("{year}-{month_s} is not a month"))?;
                    out.push(Tok::Month(d));
                }
                continue;
            }
            let mut j = i;
            skip_spaces(&cs, &mut j);
            if first.len() <= 2 && cs.get(j) == Some(&':') {
                i = j + 1;
                skip_spaces(&cs, &mut i);
                let minute_s = read_digits(&cs, &mut i);
                let hour: u32 = first.parse().map_err(|_| "bad hour")?;
                let minute: u32 = minute_s
                    .parse()
                    .ok()
                    .filter(|_| minute_s.len() == 2)
                    .ok_or_else(|| format!("{first}:{minute_s} is not a time"))?;
                // Optional seconds, which must be zero: periods start on whole minutes.
                let mut k = i;
                skip_spaces(&cs, &mut k);
                if cs.get(k) == Some(&':') {
                    k += 1;
                    skip_spaces(&cs, &mut k);
                    let sec_s = read_digits(&cs, &mut k);
                    if sec_s.len() != 2 || sec_s != "00" {
                        return Err(format!(
                            "{first}:{minute_s}:{sec_s} is not a whole-minute time"
                        ));
                    }
                    i = k;
                }
                if minute > 59 || hour > 24 || (hour == 24 && minute != 0) {
                    return Err(format!("{first}:{minute_s} is not a time of day"));
                }
                out.push(Tok::Time(hour, minute));
                continue;
            }
            return Err(format!("unexpected number {first:?}"));
        }
        if matches!(c, '~' | '-' | '–' | '—' | ',' | '至') {
            i += 1;
            continue;
        }
        if (c == 't' || c == 'T') && cs.get(i + 1).is_some_and(|c| *c == 'o' || *c == 'O') {
            i += 2;
            continue;
        }
        return Err(format!("unexpected character {c:?}"));
    }
    Ok(out)
}
