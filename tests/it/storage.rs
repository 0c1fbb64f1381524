//! Store, sink and state against local files and in-process S3: one suite, run on both
//! backends (`storage::<test>::local` and `storage::<test>::s3`).

use crate::support::s3::{BUCKET, S3Server};
use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use serde::{Deserialize, Serialize};
use sobot_sync::core::secret::Secret;
use sobot_sync::io::sink::{WindowFile, list_files, write_window};
use sobot_sync::io::state::store::{StateError, StateStore};
use sobot_sync::io::store::{Location, S3Options, StoreError};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// One backend under test. `disk` is where the location's objects land as files, so
/// tests can check the bytes on disk as well as through the store.
struct Backend {
    loc: Location,
    disk: PathBuf,
    _dir: Option<tempfile::TempDir>,
    _server: Option<S3Server>,
}

async fn local() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let wh = dir.path().join("warehouse");
    let url = format!("file://{}", wh.display());
    let loc = Location::parse(&url, &S3Options::default()).expect("local location");
    Backend {
        loc,
        disk: wh.canonicalize().expect("warehouse directory was created"),
        _dir: Some(dir),
        _server: None,
    }
}

async fn s3() -> Backend {
    let server = S3Server::start().await;
    let loc =
        Location::parse(&format!("s3://{BUCKET}/wh"), &server.options()).expect("s3 location");
    Backend {
        loc,
        disk: server.root().join(BUCKET).join("wh"),
        _dir: None,
        _server: Some(server),
    }
}

/// Each test function runs once per backend, as `<name>::local` and `<name>::s3`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn local() {
                    super::$name(super::local().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn s3() {
                    super::$name(super::s3().await).await;
                }
            }
        )*
    };
}

on_both_backends!(
    window_file_round_trip,
    rerun_replaces_the_window_file,
    empty_batch_removes_the_window_file,
    listing_never_sees_partial_files,
    a_rerun_window_inside_a_wider_file_replaces_only_its_rows,
    a_wider_file_replaces_the_files_inside_it,
    overlapping_spans_merge_into_one_file,
    a_file_left_inside_a_wider_one_is_removed_on_the_next_write,
    create_refuses_an_existing_object,
    state_commits_in_sequence,
    concurrent_commits_one_wins,
    corrupt_latest_state_is_reported,
    lock_is_busy_for_another_owner,
    lock_is_taken_over_after_expiry,
    lock_renew_and_release,
    concurrent_acquirers_one_wins,
);

// ---------------------------------------------------------------- fixtures

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("talk_id", DataType::Utf8, false),
        Field::new(
            "start_time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("duration_s", DataType::Int64, true),
    ]))
}

/// `rows` talks whose ids carry `tag`, so a rewrite is told apart from the original.
fn talks(tag: &str, rows: usize) -> RecordBatch {
    let base = 1_709_251_200_000_i64; // 2024-03-01T00:00:00Z
    let ids: Vec<String> = (0..rows).map(|i| format!("{tag}-{i:06}")).collect();
    let times: Vec<i64> = (0..rows).map(|i| base + i as i64 * 1_000).collect();
    let durations: Vec<Option<i64>> = (0..rows)
        .map(|i| (i % 7 != 0).then_some(i as i64 % 600))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(ids)),
        Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
        Arc::new(Int64Array::from(durations)),
    ];
    RecordBatch::try_new(schema(), columns).expect("batch")
}

fn utc(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, h, m, 0).unwrap()
}

fn window(table: &str, hour: u32) -> WindowFile {
    WindowFile {
        table: table.to_string(),
        dt: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
        start: utc(hour, 0),
        end: utc(hour + 1, 0),
    }
}

async fn fetch(loc: &Location, rel: &str) -> Bytes {
    loc.store()
        .get(&loc.path(rel))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body")
}

fn read_parquet(bytes: Bytes) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("parquet footer")
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches")
}

fn concat(batches: &[RecordBatch]) -> RecordBatch {
    arrow::compute::concat_batches(&schema(), batches).expect("concat")
}

// ---------------------------------------------------------------- spans and merging

fn ts_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    )
}

fn span_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("talk_id", DataType::Utf8, false),
        ts_field("start_time"),
        ts_field("_window_start"),
        ts_field("_window_end"),
    ]))
}

/// `per` rows in each of the hourly windows `hours` (of 2024-03-01 UTC), ids tagged.
fn hourly_rows(tag: &str, hours: std::ops::Range<u32>, per: usize) -> RecordBatch {
    let (mut ids, mut times, mut ws, mut we) = (vec![], vec![], vec![], vec![]);
    for h in hours {
        for i in 0..per {
            ids.push(format!("{tag}-{h:02}-{i}"));
            times.push(utc(h, 0).timestamp_millis() + i as i64 * 1_000);
            ws.push(utc(h, 0).timestamp_millis());
            we.push((utc(h, 0) + chrono::Duration::hours(1)).timestamp_millis());
        }
    }
    let ts = |v: Vec<i64>| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
    };
    RecordBatch::try_new(
        span_schema(),
        vec![Arc::new(StringArray::from(ids)), ts(times), ts(ws), ts(we)],
    )
    .expect("batch")
}

fn span(table: &str, from_hour: u32, to_hour: u32) -> WindowFile {
    WindowFile {
        table: table.to_string(),
        dt: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
        start: utc(0, 0) + chrono::Duration::hours(from_hour.into()),
        end: utc(0, 0) + chrono::Duration::hours(to_hour.into()),
    }
}

/// Every file of `table` with its row ids, in file order.
async fn ids_by_file(loc: &Location, table: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for rel in list_files(loc, table).await.expect("list") {
        let batch =
            arrow::compute::concat_batches(&span_schema(), &read_parquet(fetch(loc, &rel).await))
                .expect("concat");
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("ids")
            .iter()
            .map(|v| v.expect("id").to_string())
            .collect();
        out.push((rel.rsplit('/').next().unwrap_or_default().to_string(), ids));
    }
    out
}

fn expected_ids(parts: &[(&str, std::ops::Range<u32>, usize)]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|(tag, hours, per)| {
            hours
                .clone()
                .flat_map(move |h| (0..*per).map(move |i| format!("{tag}-{h:02}-{i}")))
        })
        .collect()
}

async fn a_rerun_window_inside_a_wider_file_replaces_only_its_rows(b: Backend) {
    write_window(&b.loc, &span("t", 0, 24), &hourly_rows("day", 0..24, 3))
        .await
        .expect("day file");
    let written = write_window(&b.loc, &span("t", 5, 6), &hourly_rows("rerun", 5..6, 2))
        .await
        .expect("rerun")
        .expect("a file");
    assert_eq!(written.path, span("t", 0, 24).relative_path());
    assert_eq!(written.rows, 23 * 3 + 2);
    let files = ids_by_file(&b.loc, "t").await;
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        files[0].1,
        expected_ids(&[("day", 0..5, 3), ("rerun", 5..6, 2), ("day", 6..24, 3)])
    );
    // A window inside that now has no rows removes just its rows.
    let empty = hourly_rows("none", 0..0, 0);
    write_window(&b.loc, &span("t", 6, 7), &empty)
        .await
        .expect("empty rerun");
    let files = ids_by_file(&b.loc, "t").await;
    assert_eq!(
        files[0].1,
        expected_ids(&[("day", 0..5, 3), ("rerun", 5..6, 2), ("day", 7..24, 3)])
    );
}

async fn a_wider_file_replaces_the_files_inside_it(b: Backend) {
    for h in [2, 3, 7] {
        write_window(
            &b.loc,
            &span("t", h, h + 1),
            &hourly_rows("hour", h..h + 1, 4),
        )
        .await
        .expect("hour file");
    }
    write_window(&b.loc, &span("t", 0, 24), &hourly_rows("day", 0..24, 1))
        .await
        .expect("day file");
    let files = ids_by_file(&b.loc, "t").await;
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].1, expected_ids(&[("day", 0..24, 1)]));
}

async fn overlapping_spans_merge_into_one_file(b: Backend) {
    // An earlier backfill from 10:00, then one of the morning up to 12:00.
    write_window(&b.loc, &span("t", 10, 24), &hourly_rows("late", 10..24, 2))
        .await
        .expect("first");
    let written = write_window(&b.loc, &span("t", 0, 12), &hourly_rows("early", 0..12, 1))
        .await
        .expect("second")
        .expect("a file");
    assert_eq!(written.path, span("t", 0, 24).relative_path());
    let files = ids_by_file(&b.loc, "t").await;
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        files[0].1,
        expected_ids(&[("early", 0..12, 1), ("late", 12..24, 2)])
    );
}

async fn a_file_left_inside_a_wider_one_is_removed_on_the_next_write(b: Backend) {
    write_window(&b.loc, &span("t", 0, 24), &hourly_rows("day", 0..24, 1))
        .await
        .expect("day file");
    // What a process killed between storing a day file and deleting the hour files it
    // replaced leaves behind: an hour file inside the day's span.
    let stale = span("t", 4, 5).relative_path();
    let bytes = sobot_sync::io::sink::encode(&hourly_rows("stale", 4..5, 9)).expect("encode");
    b.loc
        .store()
        .put(&b.loc.path(&stale), PutPayload::from(bytes))
        .await
        .expect("put stale");
    assert_eq!(list_files(&b.loc, "t").await.expect("list").len(), 2);
    // Any later write to the partition cleans it up and keeps the day's rows.
    write_window(&b.loc, &span("t", 9, 10), &hourly_rows("rerun", 9..10, 1))
        .await
        .expect("rerun");
    let files = ids_by_file(&b.loc, "t").await;
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        files[0].1,
        expected_ids(&[("day", 0..9, 1), ("rerun", 9..10, 1), ("day", 10..24, 1)])
    );
}

// ---------------------------------------------------------------- sink

async fn window_file_round_trip(b: Backend) {
    let file = window("talks", 0);
    let batch = talks("a", 1_000);
    let written = write_window(&b.loc, &file, &batch)
        .await
        .expect("write")
        .expect("non-empty batch writes a file");
    assert_eq!(
        written.path,
        "talks/dt=2024-03-01/20240301T000000Z_20240301T010000Z.parquet"
    );
    assert_eq!(written.rows, 1_000);

    let on_disk = std::fs::read(b.disk.join(&written.path)).expect("file on disk");
    assert_eq!(on_disk.len(), written.bytes);
    assert_eq!(&on_disk[..4], b"PAR1");

    let bytes = fetch(&b.loc, &written.path).await;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).expect("footer");
    assert_eq!(builder.schema().as_ref(), schema().as_ref());
    let meta = builder.metadata().clone();
    assert_eq!(meta.file_metadata().num_rows(), 1_000);
    for rg in meta.row_groups() {
        for col in rg.columns() {
            assert!(
                matches!(col.compression(), Compression::ZSTD(_)),
                "{:?} not zstd",
                col.column_path()
            );
            assert!(col.statistics().is_some(), "no chunk statistics");
            assert!(col.column_index_offset().is_some(), "no page statistics");
        }
    }
    assert_eq!(concat(&read_parquet(bytes)), batch);
    assert_eq!(
        list_files(&b.loc, "talks").await.expect("list"),
        vec![written.path]
    );
}

async fn rerun_replaces_the_window_file(b: Backend) {
    let file = window("talks", 3);
    write_window(&b.loc, &file, &talks("old", 50))
        .await
        .expect("first");
    let other = write_window(&b.loc, &window("talks", 4), &talks("next", 5))
        .await
        .expect("neighbour")
        .expect("written");
    let new = talks("new", 20);
    let written = write_window(&b.loc, &file, &new)
        .await
        .expect("rerun")
        .expect("written");

    let files = list_files(&b.loc, "talks").await.expect("list");
    assert_eq!(files, vec![written.path.clone(), other.path]);
    let rows = concat(&read_parquet(fetch(&b.loc, &written.path).await));
    assert_eq!(rows, new);
}

async fn empty_batch_removes_the_window_file(b: Backend) {
    let file = window("parties", 7);
    let written = write_window(&b.loc, &file, &talks("x", 10))
        .await
        .expect("write")
        .expect("written");
    assert!(b.disk.join(&written.path).exists());

    let empty = talks("x", 0);
    assert_eq!(
        write_window(&b.loc, &file, &empty).await.expect("remove"),
        None
    );
    assert!(
        list_files(&b.loc, "parties")
            .await
            .expect("list")
            .is_empty()
    );
    assert!(!b.disk.join(&written.path).exists());
    // A window that never had a file: nothing to remove, still fine.
    assert_eq!(
        write_window(&b.loc, &file, &empty).await.expect("again"),
        None
    );
}

async fn listing_never_sees_partial_files(b: Backend) {
    const REWRITES: usize = 12;
    let loc = b.loc.clone();
    let done = Arc::new(AtomicBool::new(false));
    write_window(&loc, &window("talks", 0), &talks("w0", 10))
        .await
        .expect("seed");

    let mut readers = Vec::new();
    for _ in 0..2 {
        let (loc, done) = (loc.clone(), Arc::clone(&done));
        readers.push(tokio::spawn(async move {
            let mut parsed = 0usize;
            loop {
                let finished = done.load(Ordering::SeqCst);
                for rel in list_files(&loc, "talks").await.expect("list") {
                    let rows: usize = read_parquet(fetch(&loc, &rel).await)
                        .iter()
                        .map(RecordBatch::num_rows)
                        .sum();
                    assert!(rows > 0, "{rel} has no rows");
                    parsed += 1;
                }
                if finished {
                    return parsed;
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for i in 0..REWRITES {
        // Alternate sizes so a torn read could not pass for a whole file by chance.
        let rows = if i % 2 == 0 { 40_000 } else { 3 };
        for hour in 0..2 {
            write_window(&loc, &window("talks", hour), &talks(&format!("w{i}"), rows))
                .await
                .expect("rewrite");
        }
    }
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        let parsed = reader.await.expect("reader task");
        assert!(parsed > 0);
    }
    assert_eq!(list_files(&loc, "talks").await.expect("list").len(), 2);
}

// ---------------------------------------------------------------- state

/// The primitive everything below rests on: the second create of one key fails.
async fn create_refuses_an_existing_object(b: Backend) {
    use object_store::{PutMode, PutOptions};
    let key = b.loc.path("_state/probe/state/00000000000000000001.json");
    let create = || PutOptions::from(PutMode::Create);
    b.loc
        .store()
        .put_opts(&key, PutPayload::from_static(b"{}"), create())
        .await
        .expect("first create");
    let err = b
        .loc
        .store()
        .put_opts(&key, PutPayload::from_static(b"[]"), create())
        .await
        .expect_err("second create");
    assert!(
        matches!(
            err,
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
        ),
        "{err:?}"
    );
    assert_eq!(
        fetch(&b.loc, "_state/probe/state/00000000000000000001.json")
            .await
            .as_ref(),
        b"{}"
    );
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Watermark {
    until: String,
    windows: u32,
}

fn mark(windows: u32) -> Watermark {
    Watermark {
        until: format!("2024-03-01T{windows:02}:00:00Z"),
        windows,
    }
}

async fn state_commits_in_sequence(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    assert!(
        state
            .load::<Watermark>("talks")
            .await
            .expect("load")
            .is_none()
    );
    assert!(state.pipelines().await.expect("pipelines").is_empty());

    assert_eq!(
        state.commit("talks", None, &mark(1)).await.expect("first"),
        1
    );
    assert_eq!(
        state
            .commit("talks", Some(1), &mark(2))
            .await
            .expect("second"),
        2
    );
    let loaded = state
        .load::<Watermark>("talks")
        .await
        .expect("load")
        .expect("some");
    assert_eq!((loaded.version, loaded.value), (2, mark(2)));

    // A stale expectation, and a "first" commit when versions exist, are conflicts.
    for stale in [Some(1), None, Some(5)] {
        let err = state
            .commit("talks", stale, &mark(9))
            .await
            .expect_err("stale");
        assert!(
            matches!(err, StateError::Conflict { ref pipeline, expected } if pipeline == "talks" && expected == stale),
            "{err:?}"
        );
    }
    let loaded = state
        .load::<Watermark>("talks")
        .await
        .expect("load")
        .expect("some");
    assert_eq!((loaded.version, loaded.value), (2, mark(2)));

    // Old versions are pruned to the newest 20.
    for v in 2..30 {
        state
            .commit("talks", Some(v), &mark(v as u32))
            .await
            .expect("commit");
    }
    let dir = b.disk.join("_state/talks/state");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("state dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 20, "{names:?}");
    assert_eq!(
        names.first().map(String::as_str),
        Some("00000000000000000011.json")
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("00000000000000000030.json")
    );

    state
        .commit("agents", None, &mark(1))
        .await
        .expect("agents");
    // A lock alone does not make a pipeline.
    let lock = state
        .acquire_lock("parties", "me", Duration::from_secs(60))
        .await
        .expect("lock");
    lock.release().await.expect("release");
    assert_eq!(
        state.pipelines().await.expect("pipelines"),
        vec!["agents", "talks"]
    );

    let err = state
        .commit("Bad/Name", None, &mark(1))
        .await
        .expect_err("invalid");
    assert!(matches!(err, StateError::InvalidPipeline { .. }), "{err:?}");
}

async fn concurrent_commits_one_wins(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    state.commit("talks", None, &mark(0)).await.expect("first");
    for round in 1..=4u64 {
        let mut tasks = Vec::new();
        for writer in 0..6u32 {
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                state.commit("talks", Some(round), &mark(writer)).await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(v) => {
                    assert_eq!(v, round + 1);
                    winners += 1;
                }
                Err(StateError::Conflict { .. }) => {}
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
        let loaded = state
            .load::<Watermark>("talks")
            .await
            .expect("load")
            .expect("some");
        assert_eq!(loaded.version, round + 1);
    }
}

async fn corrupt_latest_state_is_reported(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    state.commit("talks", None, &mark(1)).await.expect("first");
    let bad = "talks/state/00000000000000000002.json";
    state
        .location()
        .store()
        .put(
            &state.location().path(bad),
            PutPayload::from_static(b"{\"until\": 12"),
        )
        .await
        .expect("plant corrupt version");
    let err = state.load::<Watermark>("talks").await.expect_err("corrupt");
    match err {
        StateError::Corrupt { pipeline, path, .. } => {
            assert_eq!(pipeline, "talks");
            assert!(path.ends_with(bad), "{path}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Valid JSON of the wrong shape is just as unreadable.
    state
        .location()
        .store()
        .put(
            &state.location().path(bad),
            PutPayload::from_static(b"[1,2]"),
        )
        .await
        .expect("plant wrong shape");
    assert!(matches!(
        state.load::<Watermark>("talks").await,
        Err(StateError::Corrupt { .. })
    ));
}

// ---------------------------------------------------------------- lock

const LONG: Duration = Duration::from_secs(600);

async fn lock_is_busy_for_another_owner(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    let held = state
        .acquire_lock("talks", "run-a", LONG)
        .await
        .expect("acquire");
    assert_eq!(held.owner(), "run-a");
    let err = state
        .acquire_lock("talks", "run-b", LONG)
        .await
        .expect_err("busy");
    match err {
        StateError::Busy {
            pipeline,
            holder,
            expires_at,
        } => {
            assert_eq!(pipeline, "talks");
            assert_eq!(holder, "run-a");
            assert_eq!(expires_at, held.expires_at());
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // Other pipelines are independent.
    state
        .acquire_lock("parties", "run-b", LONG)
        .await
        .expect("other pipeline");
}

async fn lock_is_taken_over_after_expiry(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    let mut stale = state
        .acquire_lock("talks", "run-a", Duration::from_millis(300))
        .await
        .expect("acquire");
    // Let the wall clock pass the expiry; the outcome is checked below, not assumed.
    while Utc::now() <= stale.expires_at() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh = state
        .acquire_lock("talks", "run-b", LONG)
        .await
        .expect("takeover");
    assert_eq!(fresh.owner(), "run-b");
    assert!(fresh.generation() > stale.generation());

    let err = stale.renew().await.expect_err("lost");
    assert!(
        matches!(err, StateError::Busy { ref holder, .. } if holder == "run-b"),
        "{err:?}"
    );
    // Releasing a lost lock must not free the new holder's lock.
    stale
        .release()
        .await
        .expect("release of a lost lock is a no-op");
    let err = state
        .acquire_lock("talks", "run-c", LONG)
        .await
        .expect_err("busy");
    assert!(
        matches!(err, StateError::Busy { ref holder, .. } if holder == "run-b"),
        "{err:?}"
    );
}

async fn lock_renew_and_release(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    let mut lock = state
        .acquire_lock("talks", "run-a", Duration::from_secs(30))
        .await
        .expect("acquire");
    let (gen0, exp0) = (lock.generation(), lock.expires_at());
    for _ in 0..8 {
        lock.renew().await.expect("renew");
    }
    assert_eq!(lock.generation(), gen0 + 8);
    assert!(lock.expires_at() >= exp0);
    let lock_dir = b.disk.join("_state/talks/lock");
    assert_eq!(std::fs::read_dir(&lock_dir).expect("lock dir").count(), 5);

    let err = state
        .acquire_lock("talks", "run-b", LONG)
        .await
        .expect_err("busy");
    assert!(
        matches!(err, StateError::Busy { ref holder, .. } if holder == "run-a"),
        "{err:?}"
    );
    lock.release().await.expect("release");
    let next = state
        .acquire_lock("talks", "run-b", LONG)
        .await
        .expect("after release");
    assert_eq!(next.owner(), "run-b");
}

async fn concurrent_acquirers_one_wins(b: Backend) {
    let state = StateStore::new(b.loc.join("_state"));
    for round in 0..4 {
        let pipeline = format!("p{round}");
        let winners = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for racer in 0..6 {
            let (state, pipeline) = (state.clone(), pipeline.clone());
            tasks.push(tokio::spawn(async move {
                let owner = format!("racer-{racer}");
                state
                    .acquire_lock(&pipeline, &owner, LONG)
                    .await
                    .map(|l| l.owner().to_string())
            }));
        }
        let mut winner = None;
        let mut holders = Vec::new();
        for task in tasks {
            match task.await.expect("task") {
                Ok(owner) => {
                    winners.fetch_add(1, Ordering::SeqCst);
                    winner = Some(owner);
                }
                Err(StateError::Busy { holder, .. }) => holders.push(holder),
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }
        assert_eq!(winners.load(Ordering::SeqCst), 1, "round {round}");
        let winner = winner.expect("a winner");
        assert!(
            holders.iter().all(|h| *h == winner),
            "{holders:?} vs {winner}"
        );
    }
}

// ---------------------------------------------------------------- locations

#[test]
fn invalid_urls_are_rejected_naming_the_url() {
    let cases = [
        ("", ""),
        ("warehouse", "warehouse"),
        ("/abs/path", "/abs/path"),
        ("gs://bucket/x", "gs://bucket/x"),
        ("http://example.com/x", "http://example.com/x"),
        ("s3://", "s3://"),
        ("s3:///prefix", "s3:///prefix"),
        ("s3://Bad_Bucket/x", "s3://Bad_Bucket/x"),
        ("s3://bucket/x?versionId=1", "s3://bucket/x?versionId=1"),
        ("file://", "file://"),
        ("gs://key:hunter2@bucket/x", "gs://bucket/x"),
    ];
    for (url, shown) in cases {
        match Location::parse(url, &S3Options::default()) {
            Err(StoreError::InvalidUrl { url: named, reason }) => {
                assert_eq!(named, shown, "for {url:?}");
                assert!(!reason.is_empty());
                let msg = StoreError::InvalidUrl { url: named, reason }.to_string();
                assert!(msg.contains(&format!("{shown:?}")), "{msg}");
                assert!(!msg.contains("hunter2"), "{msg}");
            }
            other => panic!("{url:?} gave {other:?}"),
        }
    }
}

#[test]
fn no_secret_in_debug_or_url() {
    let opts = S3Options {
        endpoint: Some("http://127.0.0.1:9".into()),
        access_key_id: Some("AKIDEXAMPLE".into()),
        secret_access_key: Some(Secret::new("wJalrXUtnFEMI-very-secret")),
        region: None,
        allow_http: true,
    };
    let loc = Location::parse("s3://AKIDEXAMPLE:pw-in-url@warehouse/data/", &opts).expect("parse");
    assert_eq!(loc.url(), "s3://warehouse/data");
    assert_eq!(loc.join("_state").url(), "s3://warehouse/data/_state");
    assert_eq!(loc.path("talks/x.parquet").as_ref(), "data/talks/x.parquet");
    assert!(loc.local_dir().is_none());
    for shown in [
        format!("{loc:?}"),
        format!("{opts:?}"),
        loc.url().to_string(),
    ] {
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("pw-in-url"), "{shown}");
    }
    let root = Location::parse("s3://warehouse", &opts).expect("no prefix");
    assert_eq!(root.url(), "s3://warehouse");
    assert_eq!(root.path("a/b").as_ref(), "a/b");
}

#[test]
fn file_urls_absolute_and_relative() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("a b/wh");
    let url = url::Url::from_directory_path(&target)
        .expect("url")
        .to_string();
    let loc = Location::parse(&url, &S3Options::default()).expect("absolute");
    let canonical = target.canonicalize().expect("created");
    assert_eq!(loc.local_dir(), Some(canonical.clone()));
    assert!(loc.url().starts_with("file:///"));
    assert_eq!(
        loc.join("_state").local_dir(),
        Some(canonical.join("_state"))
    );

    // Relative forms resolve against the current directory (the crate root under cargo).
    let rel = format!("target/storage-it-{}", uuid::Uuid::new_v4());
    let cwd = std::env::current_dir().expect("cwd");
    for url in [format!("file://./{rel}/x"), format!("file://{rel}/x")] {
        let loc = Location::parse(&url, &S3Options::default()).expect("relative");
        let expected = cwd.join(&rel).join("x").canonicalize().expect("created");
        assert_eq!(loc.local_dir(), Some(expected));
    }
    std::fs::remove_dir_all(cwd.join(&rel)).expect("cleanup");
}
