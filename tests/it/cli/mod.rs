//! The sobot-sync binary: exit codes, crash safety, concurrent runs. OWNER: cli-test helper.
//!
//! Every test runs the real binary (clean environment, temporary working directory)
//! against a simulator started in-process, then judges it by what a user sees: the exit
//! code, the messages, `status --json`, and the Parquet files compared with the
//! simulator's ground truth.

use crate::support::cli_proc::{CliEnv, Outcome, REPO, assert_no_panic, finish, stray_files};
use crate::support::truth::{self, ALL, Spec, TALKS};
use chrono::{DateTime, Utc};
use chrono_tz::Asia::Singapore;
use serde_json::Value;
use sobot_sync::io::state::model::PipelineState;
use sobot_sync::io::state::store::StateStore;
use sobot_sync::io::store::{Location, S3Options};
use sobot_sync::sim::{Faults, SimConfig};
use std::path::Path;

mod check;
mod dry_run;
mod refusals;
mod runs;

/// The simulated present of most tests, and the first local day they load.
const NOW: &str = "2024-01-03T00:00:00+08:00";
const START: &str = "2024-01-02";
/// Where every default pipeline's watermark stands after a run at NOW: talks and parties
/// wait 30 minutes and agent histories an hour, on hourly windows.
const WATERMARK: &str = "2024-01-02T23:00:00+08:00";

fn t(s: &str) -> DateTime<Utc> {
    sobot_sync::core::timeutil::parse_time(s, Singapore).expect("test time")
}

fn pipeline<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["pipeline"] == name)
        .unwrap_or_else(|| panic!("status has no pipeline {name}: {rows:?}"))
}

fn watermark(rows: &[Value], name: &str) -> DateTime<Utc> {
    let w = pipeline(rows, name)["watermark"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: watermark is not a string"));
    DateTime::parse_from_rfc3339(w)
        .unwrap_or_else(|e| panic!("{name}: watermark {w:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// Every table of the warehouse equals the simulator's records in `[from, to)`.
fn assert_warehouse_exact(env: &CliEnv, from: DateTime<Utc>, to: DateTime<Utc>) {
    let ds = env.sim.dataset();
    for spec in ALL {
        let table = truth::read_rows(&env.warehouse(), &spec, Singapore);
        let want = truth::visible_rows(&ds, &spec, from, to, env.now);
        truth::assert_rows_exact(&table, &want, spec.table);
    }
}

/// The state store as the binary opens it (`<warehouse>/_state`).
fn state_store(env: &CliEnv) -> StateStore {
    let url = format!("file://{}/_state", env.warehouse().display());
    StateStore::new(Location::parse(&url, &S3Options::default()).expect("state location"))
}

/// Files (not folders) anywhere under `dir`.
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.expect("directory entry").path())
        .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
        .sum()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let path = entry.expect("entry").path();
        if let Some(name) = path.file_name() {
            if path.is_dir() {
                copy_dir(&path, &to.join(name));
            } else {
                std::fs::copy(&path, to.join(name)).expect("copy file");
            }
        }
    }
}

/// Repository pipeline definitions copied to `dir`, with `file`'s text changed by `edit`.
fn broken_pipelines(dir: &Path, file: &str, edit: impl Fn(&str) -> String) {
    copy_dir(&Path::new(REPO).join("pipelines"), dir);
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).expect("read definition");
    let changed = edit(&text);
    assert_ne!(changed, text, "the edit of {file} changed nothing");
    std::fs::write(&path, changed).expect("write definition");
}

#[track_caller]
fn assert_config_error(o: &Outcome, case: &str, needles: &[&str]) {
    assert_eq!(o.code, Some(2), "{case}: expected exit 2\n{}", o.all());
    assert_no_panic(o);
    for n in needles {
        assert!(
            o.stderr.contains(n),
            "{case}: stderr does not name {n:?}\n{}",
            o.all()
        );
    }
}
