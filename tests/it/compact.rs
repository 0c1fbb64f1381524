//! `compact` (issue 4): closed partitions merged into fewer files, same rows, recorded in
//! state; readers never see a different count while it runs; later reruns inside a
//! compacted day replace rather than duplicate; crash leftovers are recovered.

use crate::support::both::local_and_s3;
use crate::support::rig::{Rig, Warehouse, pipeline};
use crate::support::{table, truth};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use object_store::ObjectStoreExt;
use sobot_sync::engine::compact;
use sobot_sync::engine::compact::CompactError;
use sobot_sync::engine::run::{Engine, Mode};
use sobot_sync::io::state::model::PipelineState;
use sobot_sync::sim::SimConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("test time {s:?}: {e}"))
}

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_else(|e| panic!("{s}: {e}"))
}

const START: &str = "2024-03-01T00:00:00+08:00";
/// Talks (30 min lag, 6 h lookback) reach 03-04 00:00, so 03-01 and 03-02 are closed
/// (their ends are before 03-04 00:00 - 6 h), 03-03 is open.
const NOW: &str = "2024-03-04T01:00:00+08:00";

async fn loaded(warehouse: Warehouse) -> (Rig, Engine) {
    let now = t(NOW);
    let config = SimConfig {
        now: Some(now + Duration::days(1)),
        ..SimConfig::default()
    };
    let rig = Rig::new(config, warehouse, t(START)).await;
    let engine = rig.engine(now);
    let talks = pipeline(&engine, "talks");
    engine
        .run(&talks, Mode::Incremental)
        .await
        .expect("talks run succeeds");
    (rig, engine)
}

/// Files per `dt` of a table.
async fn files_per_day(engine: &Engine, table: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for f in sobot_sync::io::sink::list_files(&engine.warehouse, table)
        .await
        .expect("listing")
    {
        let dt = f.split('/').nth(1).unwrap_or_default().to_string();
        *out.entry(dt).or_default() += 1;
    }
    out
}

async fn assert_talks_exact(rig: &Rig, engine: &Engine, to: DateTime<Utc>) {
    let p = pipeline(engine, "talks");
    let table = table::read(engine, "talks").await;
    truth::assert_exact(
        &table,
        &truth::talks(&rig.sim.dataset(), t(START), to),
        &engine.grid(&p),
    );
}

async fn state(engine: &Engine) -> PipelineState {
    sobot_sync::app::setup::load_state(&engine.state, "talks")
        .await
        .expect("state readable")
        .expect("talks has state")
}

async fn compacts_closed_days(warehouse: Warehouse) {
    let (rig, engine) = loaded(warehouse).await;
    let end = t("2024-03-04T00:00:00+08:00");
    let before = files_per_day(&engine, "talks").await;
    assert!(before["dt=2024-03-01"] > 20, "hourly files: {before:?}");
    let report = compact::compact(&engine, "talks", None)
        .await
        .expect("compact succeeds");
    assert_eq!(report.partitions, 2, "{report:?}");
    assert_eq!(report.compacted, 2);
    assert_eq!(report.closed_before, Some(d("2024-03-03")));
    let after = files_per_day(&engine, "talks").await;
    assert_eq!(after["dt=2024-03-01"], 1, "{after:?}");
    assert_eq!(after["dt=2024-03-02"], 1, "{after:?}");
    assert_eq!(
        after["dt=2024-03-03"], before["dt=2024-03-03"],
        "open day untouched"
    );
    assert_eq!(report.files_after, 2);
    // Same rows, converted the same, every window still whole and inside its file's span.
    assert_talks_exact(&rig, &engine, end).await;
    let st = state(&engine).await;
    let days: Vec<(NaiveDate, usize, u64)> = st
        .compacted
        .iter()
        .map(|c| (c.dt, c.files.len(), c.merged_files))
        .collect();
    assert_eq!(
        days,
        vec![
            (d("2024-03-01"), 1, before["dt=2024-03-01"] as u64),
            (d("2024-03-02"), 1, before["dt=2024-03-02"] as u64)
        ]
    );
    // The recorded span is the file's name.
    let listed = sobot_sync::io::sink::list_files(&engine.warehouse, "talks")
        .await
        .expect("listing");
    let span = st.compacted[0].files[0];
    let name = format!(
        "talks/dt=2024-03-01/{}_{}.parquet",
        span.start.format("%Y%m%dT%H%M%SZ"),
        span.end.format("%Y%m%dT%H%M%SZ")
    );
    assert!(listed.contains(&name), "{name} in {listed:?}");
    // A second compact changes nothing and commits nothing.
    let version = engine
        .state
        .load::<PipelineState>("talks")
        .await
        .expect("state")
        .map(|v| v.version);
    let again = compact::compact(&engine, "talks", None)
        .await
        .expect("second compact");
    assert_eq!(again.compacted, 0);
    assert_eq!(files_per_day(&engine, "talks").await, after);
    let version2 = engine
        .state
        .load::<PipelineState>("talks")
        .await
        .expect("state")
        .map(|v| v.version);
    assert_eq!(version, version2, "nothing new to record");

    // Later writes inside a compacted day replace, never duplicate: a backfill of one
    // hour, a backfill of the whole day, and a lookback reaching back over it (as after
    // raising lookback_secs).
    let talks = pipeline(&engine, "talks");
    engine
        .run(
            &talks,
            Mode::Backfill {
                from: t("2024-03-01T10:00:00+08:00"),
                to: t("2024-03-01T11:00:00+08:00"),
            },
        )
        .await
        .expect("backfill of one hour");
    assert_eq!(files_per_day(&engine, "talks").await, after);
    assert_talks_exact(&rig, &engine, end).await;
    engine
        .run(
            &talks,
            Mode::Backfill {
                from: t("2024-03-02T00:00:00+08:00"),
                to: t("2024-03-03T00:00:00+08:00"),
            },
        )
        .await
        .expect("backfill of a whole day");
    assert_eq!(files_per_day(&engine, "talks").await, after);
    assert_talks_exact(&rig, &engine, end).await;
    let mut wide = rig.engine(t("2024-03-04T02:00:00+08:00"));
    if let Some(p) = wide.catalog.pipelines.get_mut("talks") {
        p.lookback_secs = 3 * 86_400;
    }
    let report = wide
        .run(&pipeline(&wide, "talks"), Mode::Incremental)
        .await
        .expect("run with a long lookback");
    assert!(report.lookback_windows >= 48, "{report:?}");
    let end = t("2024-03-04T01:00:00+08:00");
    let now_files = files_per_day(&engine, "talks").await;
    assert_eq!(now_files["dt=2024-03-01"], 1, "{now_files:?}");
    assert_eq!(now_files["dt=2024-03-02"], 1, "{now_files:?}");
    assert_talks_exact(&rig, &engine, end).await;
}

local_and_s3!(
    compact_merges_closed_days_local,
    compact_merges_closed_days_s3 => compacts_closed_days,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_splits_by_target_size_and_before() {
    let (rig, _) = loaded(Warehouse::local().await).await;
    let mut small = rig.engine(t(NOW));
    // About a quarter of a day's files per output file.
    let sizes = file_sizes(
        &small.warehouse.local_dir().expect("local"),
        "dt=2024-03-01",
    );
    let day: u64 = sizes.iter().sum();
    small.settings.compact_target_bytes = day / 4;
    let report = compact::compact(&small, "talks", Some(d("2024-03-02")))
        .await
        .expect("compact");
    assert_eq!(report.partitions, 1, "--before 03-02 leaves 03-02 alone");
    let files = files_per_day(&small, "talks").await;
    assert!(
        (4..=6).contains(&files["dt=2024-03-01"]),
        "about four files: {files:?}"
    );
    assert!(files["dt=2024-03-02"] > 20, "{files:?}");
    assert_talks_exact(&rig, &small, t("2024-03-04T00:00:00+08:00")).await;
    let st = state(&small).await;
    assert_eq!(st.compacted.len(), 1);
    assert_eq!(st.compacted[0].files.len(), files["dt=2024-03-01"]);
    // Spans are consecutive and ordered.
    for pair in st.compacted[0].files.windows(2) {
        assert!(pair[0].end <= pair[1].start);
    }
}

fn file_sizes(root: &Path, dt: &str) -> Vec<u64> {
    std::fs::read_dir(root.join("talks").join(dt))
        .expect("partition folder")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .collect()
}

/// A reader as a query engine is one: list `<table>/**/*.parquet`, then open each file
/// and read its row count from the footer. A file gone between listing and opening is
/// an error the reader retries (`None`), never a count.
fn count_rows(table_dir: &Path) -> Option<u64> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut files: Vec<PathBuf> = Vec::new();
    for part in std::fs::read_dir(table_dir).ok()? {
        let part = part.ok()?.path();
        if !part.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&part).ok()? {
            let f = f.ok()?.path();
            if f.extension().and_then(|e| e.to_str()) == Some("parquet") {
                files.push(f);
            }
        }
    }
    let mut rows = 0u64;
    for f in files {
        let file = std::fs::File::open(&f).ok()?;
        let reader = SerializedFileReader::new(file).ok()?;
        rows += reader.metadata().file_metadata().num_rows() as u64;
    }
    Some(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_different_count_while_compacting() {
    let (rig, engine) = loaded(Warehouse::local().await).await;
    let root = engine.warehouse.local_dir().expect("local warehouse");
    let table_dir = root.join("talks");
    let expected = count_rows(&table_dir).expect("quiet read");
    assert!(expected > 1000);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, dir) = (stop.clone(), table_dir.clone());
            std::thread::spawn(move || {
                let (mut ok, mut retried, mut wrong) = (0u64, 0u64, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    match count_rows(&dir) {
                        Some(n) if n == expected => ok += 1,
                        Some(n) => wrong.push(n),
                        None => retried += 1,
                    }
                }
                (ok, retried, wrong)
            })
        })
        .collect();
    // Small files per output keep the compaction busy for longer: more swaps to race.
    let mut small = rig.engine(t(NOW));
    let day: u64 = file_sizes(&root, "dt=2024-03-01").iter().sum();
    small.settings.compact_target_bytes = day / 6;
    let report = compact::compact(&small, "talks", None)
        .await
        .expect("compact");
    assert_eq!(report.compacted, 2);
    // Keep reading a moment after the last swap and deletion.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut total_ok = 0;
    for r in readers {
        let (ok, retried, wrong) = r.join().expect("reader thread");
        assert!(
            wrong.is_empty(),
            "a reader saw counts {wrong:?}, expected {expected}"
        );
        eprintln!("reader: {ok} consistent reads, {retried} retried");
        total_ok += ok;
    }
    assert!(total_ok > 10, "readers actually read: {total_ok}");
    assert_eq!(count_rows(&table_dir), Some(expected));
    assert!(
        !root
            .join(compact::STAGING_DIR)
            .join("talks")
            .join("dt=2024-03-01")
            .exists(),
        "old files deleted"
    );
    assert_talks_exact(&rig, &engine, t("2024-03-04T00:00:00+08:00")).await;
}

/// What a compaction killed at its worst moments leaves, and what the rerun makes of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_recovers_from_an_interrupted_compaction_local() {
    let (rig, engine) = loaded(Warehouse::local().await).await;
    let root = engine.warehouse.local_dir().expect("local warehouse");
    let staging = root.join(compact::STAGING_DIR).join("talks");
    std::fs::create_dir_all(&staging).expect("staging");
    // 03-01: killed between the two renames of the fallback swap: the partition is
    // out of the table, in `<dt>.old`.
    std::fs::rename(
        root.join("talks/dt=2024-03-01"),
        staging.join("dt=2024-03-01.old"),
    )
    .expect("move the partition out");
    // 03-02: killed while building: a half-written merged file in staging.
    std::fs::create_dir_all(staging.join("dt=2024-03-02")).expect("staging partition");
    std::fs::write(
        staging.join("dt=2024-03-02/20240301T160000Z_20240302T160000Z.parquet"),
        b"PAR1 half",
    )
    .expect("half a file");
    let report = compact::compact(&engine, "talks", None)
        .await
        .expect("rerun");
    assert_eq!(report.compacted, 2);
    let files = files_per_day(&engine, "talks").await;
    assert_eq!((files["dt=2024-03-01"], files["dt=2024-03-02"]), (1, 1));
    assert!(!staging.exists(), "staging emptied");
    assert_talks_exact(&rig, &engine, t("2024-03-04T00:00:00+08:00")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_recovers_from_an_interrupted_batch_delete_s3() {
    let (rig, engine) = loaded(Warehouse::s3().await).await;
    let loc = &engine.warehouse;
    let hourly = sobot_sync::io::sink::list_files(loc, "talks")
        .await
        .expect("listing");
    let one = hourly
        .iter()
        .find(|f| f.starts_with("talks/dt=2024-03-01/"))
        .expect("an hourly file")
        .clone();
    let bytes = sobot_sync::io::sink::fetch(loc, &one).await.expect("read");
    compact::compact(&engine, "talks", None)
        .await
        .expect("compact");
    // Killed after the merged file was stored and before its inputs were deleted.
    loc.store()
        .put(&loc.path(&one), bytes.into())
        .await
        .expect("put back an input");
    let files = files_per_day(&engine, "talks").await;
    assert_eq!(files["dt=2024-03-01"], 2, "the leftover doubles its rows");
    compact::compact(&engine, "talks", None)
        .await
        .expect("rerun");
    let files = files_per_day(&engine, "talks").await;
    assert_eq!(files["dt=2024-03-01"], 1);
    assert_talks_exact(&rig, &engine, t("2024-03-04T00:00:00+08:00")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_refuses_a_busy_pipeline_and_tables_it_cannot_compact() {
    let (_rig, engine) = loaded(Warehouse::local().await).await;
    let claim = engine
        .claim(&["talks"], "someone-else")
        .await
        .expect("lock taken");
    let err = compact::compact(&engine, "talks", None)
        .await
        .expect_err("busy");
    match &err {
        CompactError::Run(e) => assert!(e.is_busy(), "{e}"),
        other => panic!("expected busy, got {other}"),
    }
    assert!(err.to_string().contains("talks"), "{err}");
    claim.release().await;
    for (table, why) in [
        ("report_gateway_numbers", "report table"),
        ("indicator_plans", "one current file"),
        ("nope", "unknown table"),
    ] {
        let err = compact::compact(&engine, table, None)
            .await
            .expect_err("refused");
        assert!(matches!(err, CompactError::Config(_)), "{err}");
        assert!(err.to_string().contains(why), "{err}");
    }
}

/// A copy of a folder tree (the pristine warehouse each crash round starts from).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for e in std::fs::read_dir(from).expect("read tree") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy file");
        }
    }
}

/// Through the binary: exit codes, `ddl` for both dialects, and `compact` killed with
/// SIGKILL at many moments, each followed by a rerun that must leave every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_compacts_after_sigkill_at_any_moment_and_prints_ddl() {
    use crate::support::cli_proc::{CliEnv, assert_no_panic};
    let now = t(NOW);
    let mut env = CliEnv::start(now + Duration::days(1), START).await;
    let now_arg = now.to_rfc3339();
    env.run(&["run", "talks", "--now", &now_arg])
        .await
        .expect_code(0);
    let wh = env.warehouse();
    let expected = count_rows(&wh.join("talks")).expect("quiet read");

    // ddl: Trino needs object storage, DuckDB takes the local folder.
    let o = env.run(&["ddl", "--dialect", "trino"]).await;
    o.expect_code(2);
    assert!(o.stderr.contains("SOBOT_SYNC_WAREHOUSE"), "{}", o.all());
    let o = env
        .run(&[
            "ddl",
            "--dialect",
            "trino",
            "--location",
            "s3://bucket/sobot/",
        ])
        .await;
    o.expect_code(0);
    for table in [
        "talks",
        "parties",
        "agent_histories",
        "report_agents_status",
    ] {
        assert!(
            o.stdout
                .contains(&format!("external_location = 's3://bucket/sobot/{table}'")),
            "{table}\n{}",
            o.stdout
        );
    }
    assert!(
        !o.stdout.contains("\"recordings\""),
        "recordings is off by default"
    );
    let o = env.run(&["ddl", "--dialect", "duckdb", "talks"]).await;
    o.expect_code(0);
    assert!(
        o.stdout.contains(&format!(
            "read_parquet('{}/talks/**/*.parquet'",
            wh.display()
        )),
        "{}",
        o.stdout
    );
    env.run(&["ddl", "--dialect", "mysql"]).await.expect_code(2);
    env.run(&["ddl", "--dialect", "duckdb", "nope"])
        .await
        .expect_code(2);

    // compact: bad usage and tables it does not compact are exit 2.
    env.run(&["compact", "talks", "--before", "2024-13-01"])
        .await
        .expect_code(2);
    env.run(&["compact", "report_gateway_numbers"])
        .await
        .expect_code(2);
    let o = env.run(&["compact", "push_talks"]).await;
    o.expect_code(2);
    assert!(
        o.stderr.contains("written by receive")
            && o.stderr.contains("SOBOT_SYNC_RECEIVE_FLUSH_SECS"),
        "{}",
        o.all()
    );
    // Busy: another holder of the pipeline lock means exit 1 naming the pipeline.
    let state_loc = sobot_sync::io::store::Location::parse(
        &format!("file://{}/_state", wh.display()),
        &Default::default(),
    )
    .expect("state location");
    let store = sobot_sync::io::state::store::StateStore::new(state_loc);
    let lock = store
        .acquire_lock("talks", "a-run", std::time::Duration::from_secs(60))
        .await
        .expect("lock");
    let o = env.run(&["compact", "talks", "--now", &now_arg]).await;
    o.expect_code(1);
    assert!(
        o.stderr.contains("talks") && o.stderr.contains("busy"),
        "{}",
        o.all()
    );
    lock.release().await.expect("release");

    // SIGKILL at many moments of a compaction, each time from the hourly layout.
    let pristine = env.path().join("pristine");
    copy_tree(&wh, &pristine);
    let ttl = 1;
    env.set("SOBOT_SYNC_LOCK_TTL_SECS", &ttl.to_string());
    // No API credentials needed: compact touches storage only.
    env.unset("SOBOT_APP_ID").unset("SOBOT_APP_SECRET");
    let mut kills_ms: Vec<u64> = vec![5, 20, 60, 120, 250, 400, 700];
    kills_ms.extend((0..3).map(|_| rand::random_range(1..800)));
    eprintln!("killing compact after {kills_ms:?} ms");
    for ms in kills_ms {
        std::fs::remove_dir_all(&wh).expect("clear warehouse");
        copy_tree(&pristine, &wh);
        let mut child = env.spawn(&["compact", "talks", "--now", &now_arg]);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        child.kill().await.expect("SIGKILL compact");
        let status = child.wait().await.expect("reap compact");
        // Readers between the crash and the rerun see every row once.
        assert_eq!(
            count_rows(&wh.join("talks")),
            Some(expected),
            "after {ms} ms ({status})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(ttl * 1000 + 200)).await;
        let o = env.run(&["compact", "talks", "--now", &now_arg]).await;
        assert_no_panic(&o);
        o.expect_code(0);
        assert_eq!(
            count_rows(&wh.join("talks")),
            Some(expected),
            "after the rerun ({ms} ms)"
        );
        let mut days: BTreeMap<String, usize> = BTreeMap::new();
        for part in std::fs::read_dir(wh.join("talks")).expect("table") {
            let part = part.expect("partition").path();
            let n = std::fs::read_dir(&part)
                .expect("partition")
                .filter(|f| {
                    f.as_ref()
                        .is_ok_and(|f| f.path().extension().is_some_and(|e| e == "parquet"))
                })
                .count();
            days.insert(
                part.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into(),
                n,
            );
        }
        assert_eq!(days["dt=2024-03-01"], 1, "after {ms} ms: {days:?}");
        assert_eq!(days["dt=2024-03-02"], 1, "after {ms} ms: {days:?}");
        assert!(
            !wh.join(compact::STAGING_DIR).join("talks").exists(),
            "staging left"
        );
    }
}

/// With tenants, a table's partitions sit under `tenant=<name>`: compaction builds,
/// swaps and cleans inside that tenant's folders and never touches another folder of
/// the table (here an unscoped `dt=` folder where a tenant-blind compaction would look).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_stays_inside_its_tenant_partition() {
    let now = t(NOW);
    let config = SimConfig {
        now: Some(now + Duration::days(1)),
        ..SimConfig::default()
    };
    let rig = Rig::new(config, Warehouse::local().await, t(START)).await;
    let mut engine = rig.engine(now);
    engine.warehouse = engine.warehouse.with_table_partition("tenant=acme");
    let talks = pipeline(&engine, "talks");
    engine
        .run(&talks, Mode::Incremental)
        .await
        .expect("talks run succeeds");
    let root = engine.warehouse.local_dir().expect("a local warehouse");
    let stray = root.join("talks/dt=2024-03-01");
    std::fs::create_dir_all(&stray).expect("stray folder");
    std::fs::write(stray.join("other.parquet"), b"not ours").expect("stray file");
    let count = |dir: PathBuf| std::fs::read_dir(dir).map_or(0, |d| d.count());
    assert!(count(root.join("talks/tenant=acme/dt=2024-03-01")) > 20);

    let report = compact::compact(&engine, "talks", None)
        .await
        .expect("compact succeeds");
    assert_eq!(report.compacted, 2, "{report:?}");
    assert_eq!(count(root.join("talks/tenant=acme/dt=2024-03-01")), 1);
    assert_eq!(count(root.join("talks/tenant=acme/dt=2024-03-02")), 1);
    assert_eq!(count(stray.clone()), 1, "the unscoped folder is left alone");
    assert!(!root.join("_compact").exists(), "staging cleaned up");
    assert_talks_exact(&rig, &engine, t("2024-03-04T00:00:00+08:00")).await;
}

/// A shard of a sharded backfill writes day files without the pipeline lock: `compact`
/// must not swap a partition under it, nor a shard start while `compact` works. Each
/// side holding its range lock keeps the other out, and is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_and_a_shard_keep_out_of_each_other() {
    let (_rig, engine) = loaded(Warehouse::local().await).await;
    let ttl = std::time::Duration::from_secs(60);
    let shard_scope = "20240301T000000Z_20240302T000000Z";
    let shard_lock = engine
        .state
        .acquire_range_lock("talks", shard_scope, "a-shard", ttl)
        .await
        .expect("shard's range lock");
    let before = files_per_day(&engine, "talks").await;
    let err = compact::compact(&engine, "talks", None)
        .await
        .expect_err("a shard is working");
    match &err {
        CompactError::Run(e) => assert!(e.is_busy(), "{e}"),
        other => panic!("expected busy, got {other}"),
    }
    assert!(err.to_string().contains(shard_scope), "{err}");
    assert_eq!(
        files_per_day(&engine, "talks").await,
        before,
        "nothing merged"
    );
    shard_lock.release().await.expect("released");

    // Now compaction's range lock is held: a shard refuses to start.
    let compact_lock = engine
        .state
        .acquire_range_lock(
            "talks",
            sobot_sync::engine::shard::COMPACT_SCOPE,
            "a-compact",
            ttl,
        )
        .await
        .expect("compact's range lock");
    let p = pipeline(&engine, "talks");
    let shard = sobot_sync::engine::shard::Shard { index: 0, count: 1 };
    let err = sobot_sync::engine::shard::run(
        &engine,
        &p,
        t(START),
        t("2024-03-02T00:00:00+08:00"),
        shard,
    )
    .await
    .expect_err("compact is working");
    assert!(err.is_busy(), "{err}");
    assert!(err.to_string().contains("compact"), "{err}");
    compact_lock.release().await.expect("released");

    // Each alone goes ahead.
    let report = compact::compact(&engine, "talks", None)
        .await
        .expect("compact alone");
    assert!(report.compacted > 0, "{report:?}");
    sobot_sync::engine::shard::run(&engine, &p, t(START), t("2024-03-02T00:00:00+08:00"), shard)
        .await
        .expect("shard alone");
}
