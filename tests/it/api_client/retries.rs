//! The envelope and retries: permanent and transient codes, 429 and 5xx, cut and
//! truncated bodies, timeouts, and exhaustion naming the endpoint.

use super::*;

#[tokio::test]
async fn permanent_envelope_code_is_not_retried() {
    let (mock, base) = Mock::new()
        .script([Reply::code(json!(400), "startTime is required")])
        .start()
        .await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    match &err {
        ApiError::Envelope {
            endpoint,
            code,
            message,
        } => {
            assert_eq!((endpoint.as_str(), *code), (SEARCH, 400));
            assert_eq!(message, "startTime is required");
        }
        other => panic!("expected an envelope error, got {other:?}"),
    }
    assert_eq!(mock.hits().len(), 1);
    assert_eq!(api.stats().retries, 0);
}

#[tokio::test]
async fn transient_envelope_code_is_retried() {
    let (mock, base) = Mock::new()
        .script([
            Reply::code(json!("500"), "busy"),
            Reply::code(json!(9999), "odd"),
        ])
        .start()
        .await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(mock.hits().len(), 3);
    assert_eq!(api.stats().retries, 2);
    assert_eq!(api.stats().requests, 3);
}

#[tokio::test]
async fn missing_data_is_a_decode_error() {
    // issue 13: a shape we do not read is retried once, then final.
    let no_data = Reply::raw(200, r#"{"code":200,"message":""}"#);
    let (mock, base) = Mock::new().script([no_data.clone(), no_data]).start().await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Decode { endpoint, .. } if endpoint == SEARCH),
        "{err:?}"
    );
    assert_eq!(mock.hits().len(), 2);
}

#[tokio::test]
async fn http_429_honours_retry_after() {
    let (mock, base) = Mock::new()
        .script([Reply::status(429).header("retry-after", "1")])
        .start()
        .await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    api.post(SEARCH, &search_body()).await.unwrap();
    let hits = mock.hits();
    assert_eq!(hits.len(), 2);
    let gap = hits[1].at - hits[0].at;
    // max_backoff is 20 ms: only the Retry-After explains a gap this long.
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    let stats = api.stats();
    assert_eq!(
        (stats.rate_limited, stats.retries, stats.requests),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn http_5xx_then_success() {
    let (mock, base) = Mock::new()
        .script([
            Reply::status(503),
            Reply::status(502),
            Reply::raw(504, "<html>gateway</html>"),
        ])
        .start()
        .await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    let data = api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(data, json!({"total": 0, "list": []}));
    assert_eq!(mock.hits().len(), 4);
    assert_eq!(api.stats().retries, 3);
}

#[tokio::test]
async fn truncated_json_then_success() {
    let (mock, base) = Mock::new()
        .script([
            Reply::raw(200, r#"{"code":200,"data":{"total":5,"li"#),
            Reply::raw(200, "not json at all"),
        ])
        .start()
        .await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(mock.hits().len(), 3);
}

#[tokio::test]
async fn body_cut_short_by_the_server_then_success() {
    // A raw server: the first answer promises more bytes than it sends and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 8192];
            let _ = socket.read(&mut buf).await;
            let full = envelope(200, "", json!({"ok": true})).to_string();
            let reply = if n == 0 {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    full.len() + 50,
                    &full[..10]
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{full}",
                    full.len()
                )
            };
            let _ = socket.write_all(reply.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    assert_eq!(
        api.post(SEARCH, &search_body()).await.unwrap(),
        json!({"ok": true})
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn timeout_then_success() {
    let (mock, base) = Mock::new()
        .script([Reply::ok(json!("late")).delayed(Duration::from_secs(10))])
        .start()
        .await;
    let mut s = settings(&base, Credentials::Token(Secret::new("t")));
    // Long enough that the second, prompt answer never times out on a loaded machine.
    s.request_timeout = Duration::from_secs(1);
    let api = client(s);
    let started = Instant::now();
    let data = api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(
        data,
        json!({"total": 0, "list": []}),
        "the second answer, not the late one"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(mock.hits().len(), 2);
    assert_eq!(api.stats().retries, 1);
}

#[tokio::test]
async fn exhaustion_names_endpoint_and_attempts() {
    let (mock, base) = Mock::new().default_reply(Reply::status(500)).start().await;
    let mut s = settings(&base, Credentials::Token(Secret::new("t")));
    s.max_retries = 2;
    let api = client(s);
    let err = api
        .post(&format!("{SEARCH}?debug=1"), &search_body())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::Exhausted { endpoint, attempts: 3, last }
            if endpoint == SEARCH && matches!(**last, ApiError::Http { status: 500, .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(SEARCH) && text.contains("3 attempts") && text.contains("500"),
        "{text}"
    );
    assert!(
        !text.contains("127.0.0.1") && !text.contains("debug=1"),
        "{text}"
    );
    assert_eq!(mock.hits().len(), 3);
}

#[tokio::test]
async fn connection_refused_is_retried_then_exhausted() {
    // Bind and drop to get a port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut s = settings(&base, Credentials::Token(Secret::new("t")));
    s.max_retries = 1;
    let api = client(s);
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Exhausted { attempts: 2, last, .. } if matches!(**last, ApiError::Transport { .. })),
        "{err:?}"
    );
    assert_eq!(api.stats().requests, 2);
}
