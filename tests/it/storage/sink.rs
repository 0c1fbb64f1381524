//! The sink: a window file round-trips, a rerun replaces it, an empty batch removes it,
//! and a listing never sees a partial file.

use super::*;

pub(super) async fn window_file_round_trip(b: Backend) {
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

pub(super) async fn rerun_replaces_the_window_file(b: Backend) {
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

pub(super) async fn empty_batch_removes_the_window_file(b: Backend) {
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

pub(super) async fn listing_never_sees_partial_files(b: Backend) {
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
