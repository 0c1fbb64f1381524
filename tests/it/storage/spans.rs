//! Spans and merging: a file may hold a run of windows; rewriting a window inside it
//! replaces only its rows, and wider or overlapping writes leave one file.

use super::*;

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

pub(super) async fn a_rerun_window_inside_a_wider_file_replaces_only_its_rows(b: Backend) {
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

pub(super) async fn a_wider_file_replaces_the_files_inside_it(b: Backend) {
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

pub(super) async fn overlapping_spans_merge_into_one_file(b: Backend) {
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

pub(super) async fn a_file_left_inside_a_wider_one_is_removed_on_the_next_write(b: Backend) {
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
