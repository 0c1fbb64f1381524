//! What the receiver refuses, and counts: bad signatures, stale timestamps, replays,
//! unknown companies, unreadable bodies (kept as dead letters) and bodies over the limit.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_stale_timestamps_replays_and_unknown_companies_are_refused_and_counted() {
    let mut r = Receiver::new().await;
    r.start().await;
    let talks = records(&[PushKind::Talk], 2);
    assert!(talks.len() >= 8);
    let mut plan = r.plan(talks.clone());
    plan.bad_sign_every = Some(2);
    plan.stale_every = Some(3);
    plan.replay_every = Some(4);
    let sent = push::send(&plan).await;
    let count = |fault: &str, status: u16| {
        sent.iter()
            .flat_map(|s| &s.attempts)
            .filter(|a| a.kind == fault && a.status == Some(status))
            .count()
    };
    let n = talks.len();
    assert_eq!(count("bad_sign", 401), n / 2);
    assert_eq!(count("stale", 401), n / 3);
    assert_eq!(count("replay", 401), n / 4);
    assert_eq!(count("ok", 200), n);
    // An unknown company, signed correctly with the app key.
    let client = reqwest::Client::new();
    let ts = Utc::now().timestamp_millis().to_string();
    let body = serde_json::json!({"companyId": "stranger", "callID": "x1"}).to_string();
    let sign = sobot_sync::core::push::sign::sign("stranger", &ts, "rc-1", APP_KEY);
    let res = client
        .post(format!("{}/push/talks", r.url()))
        .header("X-Log-TimeStamp", &ts)
        .header("X-Log-RandomCode", "rc-1")
        .header("X-Log-Sign", sign)
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 401);
    // No headers at all.
    let res = client
        .post(format!("{}/push/talks", r.url()))
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 401);
    let m = r.metrics().await;
    let refused = "sobot_sync_push_refused_total";
    let talks_401 = ["push=\"talks\"", "status=\"401\""];
    let reason = |why: &str| {
        let label = format!("reason=\"{why}\"");
        metric(&m, refused, &[talks_401[0], talks_401[1], &label])
    };
    assert_eq!(reason("bad_signature"), (n / 2) as f64, "{m}");
    assert_eq!(reason("stale_timestamp"), (n / 3) as f64, "{m}");
    assert_eq!(reason("replay"), (n / 4) as f64, "{m}");
    assert_eq!(reason("unknown_company"), 1.0, "{m}");
    assert_eq!(reason("missing_headers"), 1.0, "{m}");
    let out = r.stop().await;
    assert!(out.all().contains("bad_signature"), "refusals are logged");
    // Refused pushes left no rows; the good ones are there once.
    assert_eq!(
        keys_once(&r.env.warehouse(), PushKind::Talk),
        acked(&sent, PushKind::Talk)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_bodies_get_400_and_are_kept_as_dead_letters() {
    let mut r = Receiver::new().await;
    r.start().await;
    let client = reqwest::Client::new();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("talks", b"{\"companyId\": \"x\", not json".to_vec()),
        (
            "parties",
            br#"{"content":"bm90IGVuY3J5cHRlZCB3aXRoIG91ciBrZXk="}"#.to_vec(),
        ),
        ("call-events", b"[1, 2, 3]".to_vec()),
        ("agent-status", vec![0xff, 0xfe, 0x00, 0x01]),
    ];
    let send = |path: &str, body: Vec<u8>, sign: String, ts: String| {
        client
            .post(format!("{}/push/{path}", r.url()))
            .header("X-Log-TimeStamp", ts)
            .header("X-Log-RandomCode", "rc")
            .header("X-Log-Sign", sign)
            .body(body)
            .send()
    };
    // Unsigned garbage is refused before its body is looked at: nothing is stored.
    for (path, body) in &bodies {
        let ts = Utc::now().timestamp_millis().to_string();
        let res = send(path, body.clone(), "00".into(), ts)
            .await
            .expect("answer");
        assert_eq!(res.status(), 401, "{path}");
    }
    assert!(
        !r.env.warehouse().join("_dead_letters").exists(),
        "no dead letter from an unsigned request"
    );
    // Signed by a configured company: kept as dead letters.
    for (path, body) in &bodies {
        let ts = Utc::now().timestamp_millis().to_string();
        let sign = sobot_sync::core::push::sign::sign(&company(), &ts, "rc", APP_KEY);
        let res = send(path, body.clone(), sign, ts).await.expect("answer");
        assert_eq!(res.status(), 400, "{path}");
    }
    let m = r.metrics().await;
    assert_eq!(
        metric(&m, "sobot_sync_push_dead_letters_total", &[]),
        4.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "sobot_sync_push_refused_total", &["status=\"400\""]),
        4.0,
        "{m}"
    );
    r.stop().await;
    for (path, body) in &bodies {
        let dir = r.env.warehouse().join("_dead_letters").join(path);
        let mut found = Vec::new();
        for part in std::fs::read_dir(&dir).expect("dead letters of the push") {
            for f in std::fs::read_dir(part.expect("dt folder").path()).expect("listing") {
                found.push(f.expect("file").path());
            }
        }
        let letters: Vec<_> = found
            .iter()
            .filter(|p| !p.to_string_lossy().ends_with(".headers.json"))
            .collect();
        assert_eq!(letters.len(), 1, "{path}: {found:?}");
        assert_eq!(&std::fs::read(letters[0]).expect("letter"), body, "{path}");
        let meta: Value = serde_json::from_slice(
            &std::fs::read(letters[0].with_extension("headers.json")).expect("headers file"),
        )
        .expect("headers JSON");
        assert_eq!(meta["headers"]["x-log-randomcode"], "rc");
    }
}

/// A body over `SOBOT_SYNC_RECEIVE_MAX_BODY_BYTES` gets 413, counted and logged, and is not
/// kept; a body of exactly the limit is read and acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_size_limit_gets_413_and_is_counted() {
    let mut r = Receiver::new().await;
    let record = |padding: usize| {
        serde_json::json!({
            "companyId": company(),
            "callID": format!("call-limit-{padding}"),
            "startTime": 1_709_258_400_000_i64,
            "remark": "x".repeat(padding),
        })
        .to_string()
        .into_bytes()
    };
    // The limit is the size of the record padded by 300 bytes.
    let limit = record(300).len();
    r.env
        .set("SOBOT_SYNC_RECEIVE_MAX_BODY_BYTES", &limit.to_string());
    r.start().await;
    let client = reqwest::Client::new();
    let send = |code: &'static str, body: Vec<u8>| {
        let ts = Utc::now().timestamp_millis().to_string();
        let sign = sobot_sync::core::push::sign::sign(&company(), &ts, code, APP_KEY);
        client
            .post(format!("{}/push/talks", r.url()))
            .header("X-Log-TimeStamp", ts)
            .header("X-Log-RandomCode", code)
            .header("X-Log-Sign", sign)
            .body(body)
            .send()
    };
    let at_limit = send("rc-at-limit", record(300)).await.expect("answer");
    assert_eq!(at_limit.status(), 200, "a body of exactly the limit");
    let over = send("rc-over", record(301)).await.expect("answer");
    assert_eq!(over.status(), 413, "one byte over the limit");
    let answer: Value = over.json().await.expect("a JSON answer");
    assert_eq!(answer["error"], "too_large");
    let m = r.metrics().await;
    assert_eq!(
        metric(
            &m,
            "sobot_sync_push_refused_total",
            &["status=\"413\"", "reason=\"too_large\"", "push=\"talks\""]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "sobot_sync_push_acknowledged_total", &[]),
        1.0,
        "{m}"
    );
    let out = r.stop().await;
    assert!(
        out.all().contains("SOBOT_SYNC_RECEIVE_MAX_BODY_BYTES"),
        "the log names the setting to raise\n{}",
        out.all()
    );
    assert!(
        !r.env.warehouse().join("_dead_letters").exists(),
        "an oversized body is not kept"
    );
    assert_eq!(
        keys_once(&r.env.warehouse(), PushKind::Talk),
        BTreeSet::from(["call-limit-300".to_string()]),
        "only the body within the limit landed"
    );
}
