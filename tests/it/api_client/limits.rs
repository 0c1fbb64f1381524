//! Limits: the rate and concurrency caps, and settings refused naming the setting.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_cap_holds_across_concurrent_tasks() {
    let (mock, base) = Mock::new().start().await;
    let mut s = settings(&base, Credentials::Token(Secret::new("t")));
    s.max_rps = 20;
    s.max_concurrency = 8;
    let api = client(s);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (api, next) = (api.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::SeqCst) < 30 {
                    api.post(SEARCH, &search_body()).await?;
                }
                Ok::<_, ApiError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let elapsed = started.elapsed();
    let times: Vec<Instant> = mock.hits().iter().map(|h| h.at).collect();
    assert_eq!(times.len(), 30);
    // Burst 1: at most 20 starts in any half-open second, +1 for arrival jitter.
    let busiest = times
        .iter()
        .map(|&t0| {
            times
                .iter()
                .filter(|&&t| t >= t0 && t < t0 + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(busiest <= 21, "{busiest} requests within one second");
    assert!(
        elapsed >= Duration::from_secs(1),
        "30 requests at 20/s took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_holds() {
    let (mock, base) = Mock::new()
        .default_reply(Reply::ok(json!({})).delayed(Duration::from_millis(150)))
        .start()
        .await;
    let mut s = settings(&base, Credentials::Token(Secret::new("t")));
    s.max_concurrency = 3;
    let api = client(s);
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.post(SEARCH, &search_body()).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(mock.hits().len(), 12);
    assert_eq!(mock.max_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn token_requests_count_against_the_rate_cap() {
    let (mock, base) = Mock::new().start().await;
    let mut s = settings(&base, company());
    s.max_rps = 5;
    let api = client(s);
    let started = Instant::now();
    api.post(SEARCH, &search_body()).await.unwrap();
    api.post(SEARCH, &search_body()).await.unwrap();
    // Token + 2 data requests, evenly spaced at 200 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(mock.token_requests(), 1);
    assert_eq!(api.stats().requests, 3);
}

#[test]
fn invalid_settings_are_rejected_with_the_setting_named() {
    let base = settings("http://127.0.0.1:1", company());
    let cases: Vec<(ApiSettings, &str)> = vec![
        (
            ApiSettings {
                max_rps: 0,
                ..base.clone()
            },
            "SOBOT_MAX_RPS",
        ),
        (
            ApiSettings {
                max_rps: u32::MAX,
                ..base.clone()
            },
            "SOBOT_MAX_RPS",
        ),
        (
            ApiSettings {
                max_concurrency: 0,
                ..base.clone()
            },
            "SOBOT_MAX_CONCURRENCY",
        ),
        (
            ApiSettings {
                base_url: "sg.sobot.io".into(),
                ..base.clone()
            },
            "SOBOT_BASE_URL",
        ),
        (
            ApiSettings {
                timezone: "Asia/\nX".into(),
                ..base.clone()
            },
            "SOBOT_TIMEZONE",
        ),
        (
            ApiSettings {
                credentials: Credentials::Token(Secret::new(" ")),
                ..base.clone()
            },
            "SOBOT_TOKEN",
        ),
        (
            ApiSettings {
                credentials: Credentials::Company {
                    app_id: "".into(),
                    app_secret: Secret::new("x"),
                },
                ..base.clone()
            },
            "SOBOT_APP_ID",
        ),
        (
            ApiSettings {
                agent_token: Some(Secret::new("a\nb")),
                ..base.clone()
            },
            "SOBOT_AGENT_TOKEN",
        ),
    ];
    for (s, name) in cases {
        match ApiClient::new(s) {
            Err(ApiError::Config(m)) => assert!(m.contains(name), "{m}"),
            other => panic!("{name}: expected a config error, got {other:?}"),
        }
    }
}
