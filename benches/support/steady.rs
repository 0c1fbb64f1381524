//! The steady-state case: a warehouse caught up by `run talks parties`, then the next
//! hourly run, the one a daemon makes all day. Each run's requests are set against the
//! fewest that could bring the warehouse up to the simulator's truth, and the rows it
//! leaves are checked against that truth.

use super::BenchError;
use super::budget::{self, PARTY, TALK_LIST, TOKEN};
use super::child;
use super::report::SteadyRun;
use super::truth::{self, Diff, KeyFields};
use super::warehouse::{self, Keys};
use chrono::{DateTime, Duration as Days, Utc};
use sobot_sync::core::pipeline::Pipeline;
use sobot_sync::core::plan::{self, Grid, Window};
use sobot_sync::sim::SimHandle;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One steady-state measurement: N days caught up at `now`, then one hour later.
pub struct Case<'a> {
    pub sim: &'a SimHandle,
    pub talks: &'a Pipeline,
    pub parties: &'a Pipeline,
    pub grid: Grid,
    pub days: u32,
    /// When the catch-up runs; the hourly run is an hour later.
    pub now: DateTime<Utc>,
    /// Holds the warehouse and each command's output.
    pub dir: PathBuf,
}

/// A table and the column (and API field) its rows are keyed by.
struct Keyed<'a> {
    table: &'a str,
    column: &'a str,
    field: &'a str,
}

fn keyed(p: &Pipeline) -> Result<Keyed<'_>, BenchError> {
    let [i] = p.schema.key[..] else {
        return Err(BenchError::Setup(format!(
            "{}: the steady-state case reads a single key column, the schema has {}",
            p.name,
            p.schema.key.len()
        )));
    };
    let column =
        p.schema.columns.get(i).ok_or_else(|| {
            BenchError::Setup(format!("{}: key column {i} is not a column", p.name))
        })?;
    Ok(Keyed {
        table: &p.table,
        column: &column.name,
        field: &column.field,
    })
}

impl Case<'_> {
    /// The catch-up and the hourly run, in that order. `command` is `sobot-sync` set up
    /// against the simulator with its warehouse in the given directory. The simulator's
    /// clock is left at the hourly run's now.
    pub fn measure(
        &self,
        command: &dyn Fn(&Path) -> Command,
    ) -> Result<Vec<SteadyRun>, BenchError> {
        let start = self.grid.floor(self.now - Days::days(i64::from(self.days)));
        let mut watermark = start;
        let mut runs = Vec::new();
        for (label, now) in [
            ("catch-up", self.now),
            ("hourly", self.now + Days::hours(1)),
        ] {
            let run = self.one(command, label, now, start, watermark)?;
            watermark = run.watermark;
            runs.push(run);
        }
        Ok(runs)
    }

    /// `run talks parties` at `now` over a warehouse committed from `start` up to
    /// `watermark`.
    fn one(
        &self,
        command: &dyn Fn(&Path) -> Command,
        label: &str,
        now: DateTime<Utc>,
        start: DateTime<Utc>,
        watermark: DateTime<Utc>,
    ) -> Result<SteadyRun, BenchError> {
        let (talks, parties) = (self.talks, self.parties);
        let (talk_key, party_key) = (keyed(talks)?, keyed(parties)?);
        let what = format!("steady {} d {label}", self.days);
        let store = self.dir.join("warehouse");
        let read = |k: &Keyed| warehouse::keys(&store, k.table, k.column);

        // The windows the talks run lists: the new ones, then the committed ones the
        // lookback reaches again.
        let committed = |w: &Window| w.start >= start && w.end <= watermark;
        let planned = plan::incremental(
            &self.grid,
            watermark,
            now,
            talks.lag_secs,
            talks.lookback_secs,
            &committed,
        );
        let new_watermark = planned.new.last().map_or(watermark, |w| w.end);
        let listed: Vec<Window> = planned
            .lookback
            .iter()
            .chain(&planned.new)
            .copied()
            .collect();

        let talks_before = read(&talk_key)?;
        self.sim.set_now(Some(now));
        let stats_before = self.sim.stats();
        let env = |args: &[&str]| {
            let mut cmd = command(&store);
            cmd.args(args)
                .args(["--now", &now.to_rfc3339()])
                .env("SOBOT_SYNC_START", start.to_rfc3339());
            cmd
        };
        let run = child::run(
            env(&["run", &talks.name, &parties.name]),
            &what,
            &scratch(&self.dir, label)?,
        )?;
        let served = budget::served(&stats_before, &self.sim.stats());
        let status = child::run(
            env(&["status", "--json"]),
            &format!("{what} status"),
            &scratch(&self.dir, &format!("{label}-status"))?,
        )?;
        let talks_run = budget::last_run(&status.stdout, &talks.name)?;
        let parties_run = budget::last_run(&status.stdout, &parties.name)?;

        let mut reported = talks_run.requests.clone();
        budget::add(&mut reported, &parties_run.requests);
        if reported != served {
            eprintln!(
                "warning: {what}: the runs report {reported:?}, the simulator served {served:?}"
            );
        }
        let expected_watermark = new_watermark.to_rfc3339();
        let watermark_of = |w: &Option<String>| {
            w.as_deref()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc).to_rfc3339())
        };
        for (p, last) in [(talks, &talks_run), (parties, &parties_run)] {
            if watermark_of(&last.watermark).as_deref() != Some(expected_watermark.as_str()) {
                eprintln!(
                    "warning: {what}: {} is at watermark {:?}, the plan says {expected_watermark}",
                    p.name, last.watermark
                );
            }
        }
        match child::report_line(&run.stdout, &talks.name) {
            Some(line) if line.windows == listed.len() as u64 => {}
            Some(line) => eprintln!(
                "warning: {what}: talks listed {} windows, the plan says {}",
                line.windows,
                listed.len()
            ),
            None => {
                return Err(BenchError::NoReport {
                    what,
                    stdout: run.stdout,
                });
            }
        }

        let dataset = self.sim.dataset();
        let fields = KeyFields {
            talk: talk_key.field,
            party: party_key.field,
        };
        let truth = truth::visible(&dataset, fields, start, new_watermark, now);
        let (talks_after, parties_after): (Keys, Keys) = (read(&talk_key)?, read(&party_key)?);
        let talks_diff = Diff::of(&talks_after, &truth.talks);
        let parties_diff = Diff::of(&parties_after, &truth.parties);
        for (name, diff) in [(&talks.name, talks_diff), (&parties.name, parties_diff)] {
            if !diff.exact() {
                eprintln!("warning: {what}: {name} against the simulator's truth: {diff}");
            }
        }
        // An empty truth would make any warehouse equal to it.
        let proves = !truth.talks.is_empty() && !truth.parties.is_empty();
        if !proves {
            eprintln!("warning: {what}: the simulator shows no calls for the range");
        }

        let new_calls = talks_after.keys.difference(&talks_before.keys).count() as u64;
        let list_pages = truth::list_pages(&dataset, &listed, now, talks.page_size);
        Ok(SteadyRun {
            run: label.to_string(),
            days: self.days,
            windows: listed.len() as u64,
            new_calls,
            talks_rows: talks_after.rows,
            parties_rows: parties_after.rows,
            talk_lists_by_talks: budget::get(&talks_run.requests, TALK_LIST),
            talk_lists_by_parties: budget::get(&parties_run.requests, TALK_LIST),
            party_requests: budget::get(&served, PARTY),
            requests: budget::data_requests(&served),
            token_requests: budget::get(&served, TOKEN),
            minimum: new_calls + list_pages,
            wall: run.wall,
            peak_kib: run.peak_kib,
            rows_exact: proves && talks_diff.exact() && parties_diff.exact(),
            watermark: new_watermark,
        })
    }
}

/// A directory of its own for one command's output.
fn scratch(dir: &Path, label: &str) -> Result<PathBuf, BenchError> {
    let d = dir.join(label);
    std::fs::create_dir_all(&d).map_err(BenchError::io(format!("create {}", d.display())))?;
    Ok(d)
}
