//! issue 15 part 4: `run --dry-run` and `backfill --dry-run`: the windows and the
//! estimated requests of each pipeline and the time they take at the tenant's rate cap,
//! printed before anything is written (no lock, no commit; the estimate's method:
//! `engine::estimate`).

use crate::app::run::run_error;
use crate::core::error::CommandError;
use crate::core::pipeline::Pipeline;
use crate::engine::estimate::{Estimate, duration_at};
use crate::engine::run::{Engine, Mode};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

/// Estimates `pipelines` under `mode` and prints them, then one line with the total.
pub async fn print_estimates(
    engine: &Engine,
    pipelines: &[&Pipeline],
    mode: Mode,
    max_rps: u32,
) -> Result<(), CommandError> {
    let tenant = crate::app::tenant::label(engine.settings.tenant.as_deref());
    let tz = engine.settings.timezone;
    println!("{tenant}dry run: nothing is written, no lock is taken, no state is committed");
    let mut total = 0u64;
    let mut probes = 0u64;
    for p in pipelines {
        let est = engine.estimate(p, mode).await.map_err(run_error)?;
        print_one(&tenant, &est, tz);
        total += est.total();
        probes += est.probes.total().requests;
    }
    let names: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
    let what = match mode {
        Mode::Incremental => format!("run {}", names.join("+")),
        Mode::Backfill { from, to } => format!(
            "backfill {} {}..{}",
            names.join("+"),
            local(from, tz),
            local(to, tz)
        ),
    };
    println!(
        "{tenant}{what}: ~{} requests (probes made: {probes}), ~{} at {max_rps} rps; raise SOBOT_MAX_RPS if your contract allows",
        count(total),
        span(duration_at(total, max_rps)),
    );
    Ok(())
}

fn print_one(tenant: &str, est: &Estimate, tz: Tz) {
    let range = est.range.map_or(String::new(), |(a, b)| {
        format!(" {}..{}", local(a, tz), local(b, tz))
    });
    let records = est
        .records
        .map_or("not probed".to_owned(), |n| format!("{n} records"));
    println!(
        "{tenant}{}: {} windows{range}; {records}",
        est.pipeline, est.windows
    );
    for (endpoint, n) in &est.requests {
        println!("  {endpoint} ~{n}");
    }
    println!("  total ~{}", est.total());
    if !est.probes.is_empty() {
        let each: Vec<String> = est
            .probes
            .0
            .iter()
            .map(|(endpoint, u)| format!("{endpoint} {}", u.requests))
            .collect();
        println!("  probe requests made: {}", each.join(", "));
    }
}

/// A local time, as a date when it is a midnight.
fn local(t: DateTime<Utc>, tz: Tz) -> String {
    let l = t.with_timezone(&tz);
    if l.format("%H:%M:%S").to_string() == "00:00:00" {
        l.format("%Y-%m-%d").to_string()
    } else {
        l.format("%Y-%m-%d %H:%M").to_string()
    }
}

/// A request count as people read it: exact below ten thousand, then k and M.
fn count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => format!("{:.1} k", n as f64 / 1e3),
        _ => format!("{:.1} M", n as f64 / 1e6),
    }
}

/// A duration in the largest unit that keeps it readable.
fn span(d: Duration) -> String {
    let s = d.num_milliseconds() as f64 / 1000.0;
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 2.0 * 86400.0 {
        format!("{:.1} hours", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_reads_as_the_issue_says() {
        // 7.4 M requests at 10 rps.
        assert_eq!(count(7_400_000), "7.4 M");
        assert_eq!(span(duration_at(7_400_000, 10)), "8.6 days");
        assert_eq!(count(9_999), "9999");
        assert_eq!(span(duration_at(300, 10)), "30 s");
        assert_eq!(span(duration_at(3_000, 10)), "5 min");
    }
}
