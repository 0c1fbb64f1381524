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

mod lock;
mod sink;
mod spans;
mod state;

// The scenarios live by topic; `on_both_backends!` below runs them all from here, so their
// tests keep the names `storage::<test>::local` and `storage::<test>::s3`.
use lock::*;
use sink::*;
use spans::*;
use state::*;

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
