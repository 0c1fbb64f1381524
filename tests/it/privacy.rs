//! Privacy (issue 4, part 7): with `SOBOT_SYNC_PII_KEY` set, no phone number the
//! simulator served reaches the warehouse, the state or the logs; hashed columns are
//! HMAC-SHA256(key, number) and keep distinct counts; without a key nothing changes.
//!
//! The warehouse is read back by decoding every Parquet file (compressed pages would
//! hide a number from a byte scan), and every other file (state, locks) as text.

use crate::support::cli_proc::{CliEnv, Outcome, REPO};
use crate::support::rig::{Rig, Warehouse, pipeline};
use crate::support::{parquet_file, table};
use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Asia::Singapore;
use hmac::{Hmac, KeyInit, Mac};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use sha2::Sha256;
use sobot_sync::core::privacy::{KEY_ID_METADATA, PiiKey};
use sobot_sync::core::secret::Secret;
use sobot_sync::engine::run::Mode;
use sobot_sync::sim::{Dataset, SimConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const KEY: &str = "test-pii-key-0123456789abcdef";

fn t(s: &str) -> DateTime<Utc> {
    sobot_sync::core::timeutil::parse_time(s, Singapore).expect("test time")
}

/// HMAC-SHA256 in lower-case hex, computed here rather than by the code under test.
fn hmac_hex(key: &str, value: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("any key");
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What a hashed column must hold for `field` of a served record: the HMAC of the
/// number, `""` for an empty one (no customer), null for none.
fn expected_hash(v: &Value, field: &str) -> Option<String> {
    expected_hash_with(KEY, v, field)
}

fn expected_hash_with(key: &str, v: &Value, field: &str) -> Option<String> {
    let raw = v.get(field).and_then(Value::as_str)?.trim();
    Some(if raw.is_empty() {
        String::new()
    } else {
        hmac_hex(key, raw)
    })
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Every phone number the simulator serves for the talks of `[from, to)` and their legs:
/// the customers' (`screenNumber`, `customerNumber`) and the PSTN legs' `DNIS`.
fn served_numbers(ds: &Dataset, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for talk in ds.talks(from, to) {
        out.extend(text(&talk, "screenNumber"));
        out.extend(text(&talk, "customerNumber"));
        let id = text(&talk, "callID").expect("talks have ids");
        for party in ds.parties(&id) {
            out.extend(text(&party, "DNIS"));
        }
    }
    out
}

/// Every value of every column of every row, as text, plus the schema metadata.
fn batch_text(batch: &RecordBatch) -> String {
    let mut out = format!("{:?}\n", batch.schema().metadata());
    let options = FormatOptions::default();
    for col in batch.columns() {
        // Times as epoch milliseconds: the formatter cannot name the UTC zone without
        // arrow's chrono-tz feature, and a number hidden in a time would show as digits.
        let col = match col.data_type() {
            DataType::Timestamp(..) => {
                arrow::compute::cast(col, &DataType::Int64).expect("timestamps cast to i64")
            }
            _ => col.clone(),
        };
        let f = ArrayFormatter::try_new(col.as_ref(), &options).expect("formattable column");
        for row in 0..col.len() {
            out.push_str(&f.value(row).to_string());
            out.push('\n');
        }
    }
    out
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The API's masked form (`186****6606`): it still gives away seven digits.
fn masked(n: &str) -> String {
    format!("{}****{}", &n[..3], &n[n.len() - 4..])
}

/// Finds any of `forbidden` inside `body`: every run of number-like characters
/// (`0-9`, `*`, `+`) is cut into every substring of each forbidden length, each looked
/// up in the set. The same as a substring search for every number, but linear.
fn find_forbidden<'a>(body: &str, forbidden: &'a BTreeSet<String>) -> Option<&'a String> {
    let lengths: BTreeSet<usize> = forbidden.iter().map(String::len).collect();
    let bytes = body.as_bytes();
    let numeric = |b: u8| b.is_ascii_digit() || b == b'*' || b == b'+';
    let mut i = 0;
    while i < bytes.len() {
        if !numeric(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && numeric(bytes[i]) {
            i += 1;
        }
        let run = &body[start..i];
        for &len in &lengths {
            for at in 0..=run.len().saturating_sub(len) {
                if let Some(hit) = run.get(at..at + len).and_then(|s| forbidden.get(s)) {
                    return Some(hit);
                }
            }
        }
    }
    None
}

/// Asserts that no number of `numbers` (nor its masked form) occurs in any file under
/// `dir` (Parquet decoded, the rest as text) nor in `logs`; returns how many Parquet
/// files were decoded.
fn assert_nowhere(dir: &Path, logs: &str, numbers: &BTreeSet<String>) -> usize {
    let mut forbidden = numbers.clone();
    forbidden.extend(numbers.iter().filter(|n| n.len() >= 8).map(|n| masked(n)));
    let mut files = Vec::new();
    files_under(dir, &mut files);
    let mut parquet = 0;
    let mut texts = vec![("the captured logs".to_string(), logs.to_string())];
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let shown = f.display().to_string();
        let body = if shown.ends_with(".parquet") {
            parquet += 1;
            batch_text(&parquet_file::decode(bytes.into(), &shown))
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        texts.push((shown, body));
    }
    for (name, body) in &texts {
        if let Some(n) = find_forbidden(body, &forbidden) {
            panic!("{n} is in {name} in plain text");
        }
    }
    parquet
}

/// Reads a table of a local warehouse: every file's batch, with its path.
fn read_local(warehouse: &Path, table: &str) -> Vec<(String, RecordBatch)> {
    let mut files = Vec::new();
    files_under(&warehouse.join(table), &mut files);
    files
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .map(|f| {
            let shown = f.display().to_string();
            let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{shown}: {e}"));
            let batch = parquet_file::decode(bytes.into(), &shown);
            (shown, batch)
        })
        .collect()
}

/// The key fingerprint a Parquet file names in its Arrow schema metadata (what
/// `pyarrow.parquet.read_schema(f).metadata` shows).
fn key_id_of(bytes: bytes::Bytes, shown: &str) -> Option<String> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap_or_else(|e| panic!("{shown}: {e}"))
        .schema()
        .metadata()
        .get(KEY_ID_METADATA)
        .cloned()
}

/// `key column -> value column` over every row of a table.
fn column_map(
    files: &[(String, RecordBatch)],
    key: &str,
    value: &str,
) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for (_, b) in files {
        let keys = table::col_str(b, key);
        let values = table::col_str(b, value);
        for (k, v) in keys.into_iter().zip(values) {
            out.insert(k.expect("keys are set"), v);
        }
    }
    out
}

fn assert_ok(o: &Outcome, what: &str) {
    o.expect_code(0);
    assert!(
        !o.all().contains(KEY),
        "{what} printed the key\n{}",
        o.all()
    );
}

#[test]
fn the_scanner_finds_numbers_inside_other_text() {
    let set: BTreeSet<String> = ["18618256606".to_string(), masked("18618256606")].into();
    assert!(find_forbidden("x=+8618618256606;", &set).is_some());
    assert!(find_forbidden("{\"n\":\"186****6606\"}", &set).is_some());
    assert!(find_forbidden("1861825660 18618256607", &set).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_no_served_number_is_stored_or_logged() {
    let now = t("2024-01-03T06:00:00+08:00");
    let mut env = CliEnv::start(now, "2024-01-02").await;
    env.set("SOBOT_SYNC_PII_KEY", KEY);
    // The most talkative logs, so that anything a log line could carry is captured.
    env.set("SOBOT_SYNC_LOG", "debug");
    let now_arg = env.now_arg();
    let mut logs = String::new();
    // A backfill of a day (day files), then a run of every pipeline (hourly files,
    // lookback rewrites, reports and snapshots).
    for args in [
        vec![
            "backfill",
            "talks",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
            "--now",
            &now_arg,
        ],
        vec![
            "backfill",
            "parties",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
            "--now",
            &now_arg,
        ],
        vec!["run", "--now", &now_arg],
    ] {
        let o = env.run(&args).await;
        assert_ok(&o, &args.join(" "));
        logs.push_str(&o.all());
    }

    let ds = env.sim.dataset();
    let (from, to) = (t("2024-01-01"), now);
    let numbers = served_numbers(&ds, from, to);
    assert!(
        numbers.len() > 100,
        "the simulator served {} numbers",
        numbers.len()
    );
    let decoded = assert_nowhere(env.path(), &logs, &numbers);
    assert!(decoded > 10, "only {decoded} Parquet files were read");

    // Hashed columns are HMAC-SHA256(key, number), for every row of the backfilled day.
    let wh = env.warehouse();
    let talks = read_local(&wh, "talks");
    let key_id = PiiKey::new(Secret::new(KEY))
        .expect("valid key")
        .id()
        .to_string();
    for (path, _) in &talks {
        assert_eq!(
            key_id_of(std::fs::read(path).expect("file").into(), path),
            Some(key_id.clone()),
            "{path} does not name its key"
        );
    }
    let stored = column_map(&talks, "call_id", "customer_number");
    let screen = column_map(&talks, "call_id", "screen_number");
    let day = ds.talks(from, t("2024-01-02"));
    assert!(day.len() > 100);
    for talk in &day {
        let id = text(talk, "callID").expect("id");
        let want = expected_hash(talk, "customerNumber");
        assert_eq!(stored.get(&id), Some(&want), "customer_number of {id}");
        let want = expected_hash(talk, "screenNumber");
        assert_eq!(screen.get(&id), Some(&want), "screen_number of {id}");
    }
    // Counting distinct customers gives the same answer as on the plain numbers.
    let plain: BTreeSet<String> = day
        .iter()
        .filter_map(|v| text(v, "customerNumber"))
        .collect();
    let day_ids: BTreeSet<String> = day.iter().filter_map(|v| text(v, "callID")).collect();
    let hashed: BTreeSet<&String> = stored
        .iter()
        .filter(|(id, _)| day_ids.contains(*id))
        .filter_map(|(_, v)| v.as_ref())
        .filter(|h| !h.is_empty())
        .collect();
    assert_eq!(hashed.len(), plain.len(), "distinct customers");

    // Parties: DNIS hashed with the same key, so it joins with talks' numbers.
    let parties = column_map(&read_local(&wh, "parties"), "party_id", "dnis");
    let mut pstn = 0;
    for talk in &day {
        for party in ds.parties(&text(talk, "callID").expect("id")) {
            let id = text(&party, "partyId").expect("party id");
            let want = expected_hash(&party, "DNIS");
            pstn += usize::from(want.as_ref().is_some_and(|h| !h.is_empty()));
            assert_eq!(parties.get(&id), Some(&want), "dnis of party {id}");
        }
    }
    assert!(
        pstn > 0,
        "no PSTN leg in the day: the parties check proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_numbers_are_stored_as_sent() {
    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-02T00:00:00+08:00");
    let sim = SimConfig {
        now: Some(now + Duration::days(1)),
        ..SimConfig::default()
    };
    let rig = Rig::new(sim, Warehouse::s3().await, start).await;
    let engine = rig.engine(now);
    let (from, to) = (start, t("2024-03-01T06:00:00+08:00"));
    for name in ["talks", "parties"] {
        engine
            .run(&pipeline(&engine, name), Mode::Backfill { from, to })
            .await
            .unwrap_or_else(|e| panic!("backfill {name}: {e}"));
    }
    let ds = rig.sim.dataset();
    let talks = table::read(&engine, "talks").await;
    let mut seen = 0;
    for f in &talks.files {
        let bytes = sobot_sync::io::sink::fetch(&engine.warehouse, &f.path)
            .await
            .expect("file");
        assert_eq!(key_id_of(bytes, &f.path), None, "{} names a key", f.path);
        let ids = table::col_str(&f.batch, "call_id");
        let numbers = table::col_str(&f.batch, "customer_number");
        let want: BTreeMap<String, Option<String>> = ds
            .talks(from, to)
            .iter()
            .map(|v| (text(v, "callID").expect("id"), text(v, "customerNumber")))
            .collect();
        for (id, n) in ids.into_iter().zip(numbers) {
            let id = id.expect("id");
            assert_eq!(Some(&n), want.get(&id), "customer_number of {id}");
            seen += 1;
        }
    }
    assert!(seen > 10);
    let parties = table::read(&engine, "parties").await;
    let dnis: Vec<String> = parties
        .files
        .iter()
        .flat_map(|f| table::col_str(&f.batch, "dnis"))
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    assert!(!dnis.is_empty() && dnis.iter().all(|d| d.len() == 11 && d.starts_with("186")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_the_s3_store_holds_only_hashes() {
    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-02T00:00:00+08:00");
    let sim = SimConfig {
        now: Some(now + Duration::days(1)),
        ..SimConfig::default()
    };
    let mut rig = Rig::new(sim, Warehouse::s3().await, start).await;
    rig.set("SOBOT_SYNC_PII_KEY", KEY);
    let engine = rig.engine(now);
    let (from, to) = (start, t("2024-03-01T12:00:00+08:00"));
    for name in ["talks", "parties"] {
        engine
            .run(&pipeline(&engine, name), Mode::Backfill { from, to })
            .await
            .unwrap_or_else(|e| panic!("backfill {name}: {e}"));
    }
    let ds = rig.sim.dataset();
    let numbers = served_numbers(&ds, from, to);
    assert!(numbers.len() > 50, "{} numbers", numbers.len());
    let mut forbidden = numbers.clone();
    forbidden.extend(numbers.iter().map(|n| masked(n)));
    let mut hashes = BTreeSet::new();
    for name in ["talks", "parties"] {
        let table = table::read(&engine, name).await;
        assert!(!table.files.is_empty(), "{name} has files");
        for f in &table.files {
            if let Some(n) = find_forbidden(&batch_text(&f.batch), &forbidden) {
                panic!("{n} is in {} in plain text", f.path);
            }
            let column = if name == "talks" {
                "customer_number"
            } else {
                "dnis"
            };
            hashes.extend(table::col_str(&f.batch, column).into_iter().flatten());
        }
    }
    // Every stored value is a known number's hash (or empty), and every number is there.
    let want: BTreeSet<String> = numbers.iter().map(|n| hmac_hex(KEY, n)).collect();
    hashes.remove("");
    let talks_numbers: BTreeSet<String> = ds
        .talks(from, to)
        .iter()
        .filter_map(|v| text(v, "customerNumber"))
        .collect();
    assert!(
        hashes.is_subset(&want),
        "a stored value is no number's hash"
    );
    for n in &talks_numbers {
        assert!(
            hashes.contains(&hmac_hex(KEY, n)),
            "customer {n} is missing"
        );
    }
}

/// The rotation docs/privacy.md describes: a new key, then a backfill over the loaded range
/// (not the same range as before, which would be skipped as done) leaves every file
/// hashed with, and naming, the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_and_backfilling_rehashes_every_file() {
    let start = t("2024-03-01T00:00:00+08:00");
    let now = t("2024-03-02T00:00:00+08:00");
    let sim = SimConfig {
        now: Some(now + Duration::days(1)),
        ..SimConfig::default()
    };
    let mut rig = Rig::new(sim, Warehouse::local().await, start).await;
    const NEW_KEY: &str = "the-rotated-key-fedcba9876543210";
    let (from, to) = (start, t("2024-03-01T06:00:00+08:00"));
    for (key, range_end) in [(KEY, to), (NEW_KEY, t("2024-03-01T07:00:00+08:00"))] {
        rig.set("SOBOT_SYNC_PII_KEY", key);
        let engine = rig.engine(now);
        engine
            .run(
                &pipeline(&engine, "talks"),
                Mode::Backfill {
                    from,
                    to: range_end,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("backfill with {key}: {e}"));
    }
    let engine = rig.engine(now);
    let new_id = PiiKey::new(Secret::new(NEW_KEY))
        .expect("key")
        .id()
        .to_string();
    let want: BTreeMap<String, Option<String>> = rig
        .sim
        .dataset()
        .talks(from, to)
        .iter()
        .map(|v| {
            (
                text(v, "callID").expect("id"),
                expected_hash_with(NEW_KEY, v, "customerNumber"),
            )
        })
        .collect();
    let talks = table::read(&engine, "talks").await;
    let mut seen = 0;
    for f in &talks.files {
        let bytes = sobot_sync::io::sink::fetch(&engine.warehouse, &f.path)
            .await
            .expect("file");
        assert_eq!(
            key_id_of(bytes, &f.path),
            Some(new_id.clone()),
            "{}",
            f.path
        );
        let ids = table::col_str(&f.batch, "call_id");
        let numbers = table::col_str(&f.batch, "customer_number");
        for (id, n) in ids.into_iter().zip(numbers) {
            let id = id.expect("id");
            if let Some(w) = want.get(&id) {
                assert_eq!(&n, w, "customer_number of {id} after rotation");
                seen += 1;
            }
        }
    }
    assert_eq!(
        seen,
        want.len(),
        "every call of the first range was rehashed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pii_settings_exit_2_naming_the_setting() {
    let mut env = CliEnv::start(t("2024-01-03T00:00:00+08:00"), "2024-01-02").await;
    let short = "too-short-key";
    env.set("SOBOT_SYNC_PII_KEY", short);
    let o = env.run(&["run", "--now", &env.now_arg()]).await;
    o.expect_code(2);
    assert!(o.stderr.contains("SOBOT_SYNC_PII_KEY"), "{}", o.all());
    assert!(!o.all().contains(short), "the key was printed\n{}", o.all());

    // A column marked pii = "hash" (strict) with no key is refused before any work.
    env.unset("SOBOT_SYNC_PII_KEY");
    let schemas = env.path().join("schemas");
    std::fs::create_dir_all(&schemas).expect("schemas folder");
    for entry in std::fs::read_dir(format!("{REPO}/schemas")).expect("repository schemas") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let mut text = std::fs::read_to_string(&path).expect("schema text");
            if path.ends_with("talks.toml") {
                text = text.replacen("\npii = \"hash_if_key\"", "\npii = \"hash\"", 1);
            }
            std::fs::write(schemas.join(path.file_name().expect("name")), text).expect("copy");
        }
    }
    std::fs::create_dir_all(schemas.join("indicators")).expect("indicators folder");
    for entry in std::fs::read_dir(format!("{REPO}/schemas/indicators")).expect("indicators") {
        let path = entry.expect("entry").path();
        std::fs::copy(
            &path,
            schemas
                .join("indicators")
                .join(path.file_name().expect("name")),
        )
        .expect("copy");
    }
    env.set("SOBOT_SYNC_SCHEMAS", &schemas.display().to_string());
    let o = env.run(&["run", "--now", &env.now_arg()]).await;
    o.expect_code(2);
    assert!(
        o.stderr.contains("SOBOT_SYNC_PII_KEY") && o.stderr.contains("screen_number"),
        "{}",
        o.all()
    );
    let o = env.run(&["check"]).await;
    o.expect_code(2);
    assert!(o.stderr.contains("SOBOT_SYNC_PII_KEY"), "{}", o.all());
    assert!(
        !env.warehouse().join("talks").exists(),
        "a refused run wrote talks"
    );

    // The same schema with the key is accepted; check names the key's fingerprint.
    env.set("SOBOT_SYNC_PII_KEY", KEY);
    let o = env.run(&["check"]).await;
    assert_ok(&o, "check with a key");
    let id = PiiKey::new(Secret::new(KEY)).expect("key").id().to_string();
    assert!(
        o.stdout.contains(&format!("hashed with key {id}")),
        "{}",
        o.all()
    );
    let o = env.run(&["run", "talks", "--now", &env.now_arg()]).await;
    assert_ok(&o, "run talks with a strict hash column and a key");
}
