//! No acknowledged push is lost: a receiver killed under load, a WAL or dead-letter
//! store that cannot be written (503), and an S3 warehouse across restarts.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_under_load_loses_no_acknowledged_push() {
    let mut r = Receiver::new().await;
    // No flush before the kill: every acknowledged push is in the WAL only.
    r.env
        .set("SOBOT_SYNC_RECEIVE_FLUSH_ROWS", "1000000")
        .set("SOBOT_SYNC_RECEIVE_FLUSH_SECS", "3600");
    r.start().await;
    let all = records(&PushKind::ALL, 24);
    assert!(all.len() > 2000, "{}", all.len());
    let mut plan = r.plan(all.clone());
    plan.concurrency = 16;
    plan.repeat_every = Some(5);
    let sender = tokio::spawn({
        let plan = plan.clone();
        async move { push::send(&plan).await }
    });
    // Kill once a good part has been acknowledged.
    let client = reqwest::Client::new();
    for _ in 0..400 {
        let m = client
            .get(format!("{}/metrics", r.url()))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        if metric(&m, "sobot_sync_push_acknowledged_total", &[]) > 600.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut child = r.child.take().expect("receiver");
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let first = sender.await.expect("sender");
    let acked_first: usize = first.iter().filter(|s| s.acknowledged()).count();
    assert!(
        acked_first > 0 && acked_first < first.len(),
        "the kill came mid-load: {acked_first} of {} acknowledged",
        first.len()
    );
    assert!(
        !r.env.warehouse().join("push_talks").exists(),
        "nothing was flushed before the kill"
    );
    // Restart, flushing often: the WAL is replayed and flushed while Sobot retries
    // everything (acknowledged or not), so rows arrive again after their flush.
    r.env
        .set("SOBOT_SYNC_RECEIVE_FLUSH_ROWS", "150")
        .set("SOBOT_SYNC_RECEIVE_FLUSH_SECS", "1");
    r.start().await;
    // Sobot retries what was not acknowledged; a few acknowledged ones come again too
    // (a retry whose 200 was lost), which must not add rows.
    let retry: Vec<(PushKind, Value)> = all
        .iter()
        .zip(&first)
        .enumerate()
        .filter(|(i, (_, s))| !s.acknowledged() || i % 10 == 0)
        .map(|(_, (r, _))| r.clone())
        .collect();
    let mut again = plan.clone();
    again.records = retry;
    again.repeat_every = None;
    let second = push::send(&again).await;
    assert!(second.iter().all(Sent::acknowledged));
    let out = r.stop().await;
    assert!(
        out.all().contains("replaying the write-ahead log"),
        "{}",
        out.all()
    );
    let wh = r.env.warehouse();
    for kind in PushKind::ALL {
        let keys = keys_once(&wh, kind);
        let before = acked(&first, kind);
        assert!(
            before.is_subset(&keys),
            "{}: acknowledged before the kill but missing: {:?}",
            kind.table(),
            before.difference(&keys).take(5).collect::<Vec<_>>()
        );
        let all_acked: BTreeSet<String> = before.union(&acked(&second, kind)).cloned().collect();
        assert_eq!(keys, all_acked, "{}", kind.table());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_pushes_answer_503_when_the_wal_cannot_be_written() {
    let mut r = Receiver::new().await;
    r.start().await;
    let talks = records(&[PushKind::Talk], 1);
    let sent = push::send(&r.plan(talks[..1].to_vec())).await;
    assert!(sent[0].acknowledged());
    // Wait for the flush (it closes the segment), then take the WAL folder away.
    let wal = r.env.path().join("wal");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if r.env.warehouse().join("push_talks").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::remove_dir_all(&wal).expect("remove wal");
    std::fs::write(&wal, b"not a folder").expect("block wal");
    let sent = push::send(&r.plan(talks[1..2].to_vec())).await;
    assert_eq!(sent[0].attempts[0].status, Some(503));
    let h = client
        .get(format!("{}/healthz", r.url()))
        .send()
        .await
        .expect("healthz");
    assert_eq!(h.status(), 503);
    // Disk back: pushes are durable again.
    std::fs::remove_file(&wal).expect("unblock");
    std::fs::create_dir(&wal).expect("wal folder");
    let sent = push::send(&r.plan(talks[2..3].to_vec())).await;
    assert!(sent[0].acknowledged());
    let h = client
        .get(format!("{}/healthz", r.url()))
        .send()
        .await
        .expect("healthz");
    assert_eq!(h.status(), 200);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_body_whose_dead_letter_cannot_be_stored_gets_503() {
    let mut r = Receiver::new().await;
    r.start().await;
    // The warehouse is a plain file: nothing can be stored under it.
    let wh = r.env.warehouse();
    let _ = std::fs::remove_dir_all(&wh);
    std::fs::write(&wh, b"not a folder").expect("block the warehouse");
    let ts = Utc::now().timestamp_millis().to_string();
    let sign = sobot_sync::core::push::sign::sign(&company(), &ts, "rc", APP_KEY);
    let res = reqwest::Client::new()
        .post(format!("{}/push/talks", r.url()))
        .header("X-Log-TimeStamp", &ts)
        .header("X-Log-RandomCode", "rc")
        .header("X-Log-Sign", sign)
        .body("not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 503, "Sobot must retry what could not be kept");
    let m = r.metrics().await;
    assert_eq!(
        metric(
            &m,
            "sobot_sync_push_refused_total",
            &["reason=\"dead_letter_failed\""]
        ),
        1.0,
        "{m}"
    );
    std::fs::remove_file(&wh).expect("unblock");
    r.stop().await;
}

/// Every row of `kind`'s table in an S3 warehouse, by key (read with the crate's store).
async fn s3_keys(loc: &sobot_sync::io::store::Location, kind: PushKind) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let files = sobot_sync::io::sink::list_files(loc, kind.table())
        .await
        .expect("table listing");
    for rel in files {
        let bytes = sobot_sync::io::sink::fetch(loc, &rel)
            .await
            .unwrap_or_else(|e| panic!("read {rel}: {e}"));
        let batch = parquet_file::decode(bytes, &rel);
        for i in 0..batch.num_rows() {
            *counts.entry(row_key(kind, &batch, i)).or_default() += 1;
        }
    }
    counts
}

/// The receiver against the in-process S3 warehouse, across two restarts (the second
/// after its local key index was deleted, as with a lost disk, so the keys are read back
/// from S3) and Sobot's retries of pushes already stored: every acknowledged push is a
/// row, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_land_once_in_an_s3_warehouse_across_restarts_and_a_lost_key_index() {
    let wh = crate::support::rig::Warehouse::s3().await;
    let mut r = Receiver::new().await;
    r.env.set("SOBOT_SYNC_WAREHOUSE", &wh.url);
    for (k, v) in wh.env() {
        r.env.set(k, v);
    }
    let kinds = [PushKind::Talk, PushKind::CallEvent];
    let all = records(&kinds, 6);
    let (a, b) = all.split_at(all.len() / 2);
    r.start().await;
    let mut plan = r.plan(a.to_vec());
    plan.repeat_every = Some(3);
    let mut sent = push::send(&plan).await;
    r.stop().await;
    // Restart: new pushes, and retries of some already stored.
    r.start().await;
    let mut again: Vec<_> = b.to_vec();
    again.extend(a.iter().step_by(7).cloned());
    sent.extend(push::send(&r.plan(again)).await);
    r.stop().await;
    let keys = r.env.path().join("wal/keys");
    assert!(keys.join("push_talks").is_dir(), "the key index is on disk");
    std::fs::remove_dir_all(&keys).expect("delete the key index");
    r.start().await;
    let retries: Vec<_> = all.iter().step_by(5).cloned().collect();
    sent.extend(push::send(&r.plan(retries)).await);
    r.stop().await;
    assert!(
        sent.iter().all(Sent::acknowledged),
        "every push acknowledged"
    );
    let s3 = sobot_sync::io::store::S3Options {
        endpoint: wh.env().get("AWS_ENDPOINT_URL").cloned(),
        access_key_id: wh.env().get("AWS_ACCESS_KEY_ID").cloned(),
        secret_access_key: wh
            .env()
            .get("AWS_SECRET_ACCESS_KEY")
            .map(sobot_sync::core::secret::Secret::new),
        region: wh.env().get("AWS_REGION").cloned(),
        allow_http: true,
    };
    let loc = sobot_sync::io::store::Location::parse(&wh.url, &s3).expect("warehouse URL");
    for kind in kinds {
        let counts = s3_keys(&loc, kind).await;
        let dup: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dup.is_empty(), "{}: duplicate keys {dup:?}", kind.table());
        let expected = acked(&sent, kind);
        assert!(!expected.is_empty(), "{kind:?}: the sender sent some");
        let rows: usize = counts.values().sum();
        assert_eq!(
            rows,
            expected.len(),
            "{}: rows = acknowledged",
            kind.table()
        );
        assert_eq!(
            counts.into_keys().collect::<BTreeSet<_>>(),
            expected,
            "{}",
            kind.table()
        );
    }
}
