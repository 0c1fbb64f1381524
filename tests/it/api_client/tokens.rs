//! Tokens: the three answer styles, refresh at half life or JWT `exp`, one shared refresh
//! for concurrent requests and 401s, and no secret in any error.

use super::*;

#[tokio::test]
async fn all_three_token_answer_styles_are_understood() {
    let jwt = jwt_with_exp(now_ms() / 1000 + 3600);
    let styles: Vec<(&str, Value)> = vec![
        (
            "snake",
            json!({"access_token": "tok-snake", "expires_in": 7200}),
        ),
        (
            "camel",
            json!({"accessToken": "tok-camel", "expiresIn": "7200"}),
        ),
        ("jwt", json!({"accessToken": jwt})),
    ];
    for (name, answer) in styles {
        let token = answer
            .get("access_token")
            .or_else(|| answer.get("accessToken"))
            .and_then(Value::as_str)
            .unwrap()
            .to_owned();
        let (mock, base) = Mock::new()
            .checking_tokens()
            .token_style(move |_| answer.clone())
            .start()
            .await;
        let api = client(settings(&base, company()));
        api.authenticate()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        api.post(SEARCH, &search_body())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        api.post(SEARCH, &search_body())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The signature was checked by the server; one token served both requests.
        assert_eq!(mock.token_requests(), 1, "{name}");
        let hits = mock.hits();
        assert_eq!(hits.len(), 2, "{name}");
        assert!(
            hits.iter()
                .all(|h| h.header("authorization").as_deref() == Some(token.as_str()))
        );
        assert_eq!(api.stats().token_refreshes, 1, "{name}");
    }
}

#[tokio::test]
async fn wrong_secret_is_an_auth_error_without_secrets() {
    let (mock, base) = Mock::new().secret("the-server-knows-another").start().await;
    let api = client(settings(&base, company()));
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Auth { endpoint, .. } if endpoint == "/tokens/company"),
        "{err:?}"
    );
    let (text, debug) = (err.to_string(), format!("{err:?}"));
    assert!(
        text.contains("/tokens/company") && text.contains("refused"),
        "{text}"
    );
    for leak in [APP_SECRET, "the-server-knows-another", "sign invalid"] {
        assert!(
            !text.contains(leak) && !debug.contains(leak),
            "{leak} leaked: {debug}"
        );
    }
    // A refusal is permanent: one token request, no data request.
    assert_eq!(mock.token_requests(), 1);
    assert!(mock.hits().is_empty());
}

#[tokio::test]
async fn token_is_refreshed_at_half_life() {
    let (mock, base) = Mock::new()
        .checking_tokens()
        .token_style(|n| json!({"access_token": format!("tok-{n}"), "expires_in": 1}))
        .start()
        .await;
    let api = client(settings(&base, company()));
    api.post(SEARCH, &search_body()).await.unwrap();
    api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(
        mock.token_requests(),
        1,
        "still within the first half of the lifetime"
    );
    // Past half of the one-second lifetime, though the token would still be valid.
    tokio::time::sleep(Duration::from_millis(600)).await;
    api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(mock.token_requests(), 2);
    let tokens: Vec<_> = mock
        .hits()
        .iter()
        .map(|h| h.header("authorization"))
        .collect();
    assert_eq!(
        tokens,
        vec![
            Some("tok-1".into()),
            Some("tok-1".into()),
            Some("tok-2".into())
        ]
    );
    assert_eq!(api.stats().token_refreshes, 2);
}

#[tokio::test]
async fn jwt_exp_drives_the_refresh() {
    // exp one to two seconds ahead: half-life passes within a second.
    let (mock, base) = Mock::new()
        .token_style(
            |n| json!({"accessToken": jwt_with_exp(now_ms() / 1000 + 2) + &format!("{n}")}),
        )
        .start()
        .await;
    let api = client(settings(&base, company()));
    api.authenticate().await.unwrap();
    api.authenticate().await.unwrap();
    assert_eq!(mock.token_requests(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    api.authenticate().await.unwrap();
    assert_eq!(mock.token_requests(), 2);
}

#[tokio::test]
async fn concurrent_requests_share_one_token_request() {
    let (mock, base) = Mock::new()
        .checking_tokens()
        .token_script([
            Reply::ok(json!({"access_token": "tok-slow", "expires_in": 3600}))
                .delayed(Duration::from_millis(100)),
        ])
        .start()
        .await;
    // The scripted token answer bypasses the server's issuing, so register it.
    mock.valid_tokens.lock().unwrap().insert("tok-slow".into());
    let api = client(settings(&base, company()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.post(SEARCH, &search_body()).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(mock.token_requests(), 1);
    assert_eq!(mock.hits().len(), 8);
}

#[tokio::test]
async fn http_401_refreshes_once_and_repeats() {
    let (mock, base) = Mock::new().checking_tokens().start().await;
    let api = client(settings(&base, company()));
    api.post(SEARCH, &search_body()).await.unwrap();
    mock.revoke_all_tokens();
    api.post(SEARCH, &search_body()).await.unwrap();
    let tokens: Vec<_> = mock
        .hits()
        .iter()
        .map(|h| h.header("authorization"))
        .collect();
    assert_eq!(
        tokens,
        vec![
            Some("tok-1".into()),
            Some("tok-1".into()),
            Some("tok-2".into())
        ]
    );
    assert_eq!(mock.token_requests(), 2);
    assert_eq!(api.stats().token_refreshes, 2);
    assert_eq!(api.stats().retries, 0, "a refresh is not a backoff retry");
}

#[tokio::test]
async fn concurrent_401s_share_one_refresh() {
    let (mock, base) = Mock::new().checking_tokens().start().await;
    let api = client(settings(&base, company()));
    api.authenticate().await.unwrap();
    mock.revoke_all_tokens();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.post(SEARCH, &search_body()).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(mock.token_requests(), 2);
}

#[tokio::test]
async fn envelope_401_refreshes_and_a_second_401_is_an_auth_error() {
    let (mock, base) = Mock::new()
        .script([
            Reply::code(json!("401"), "token expired tok-1"),
            Reply::status(401),
        ])
        .start()
        .await;
    let api = client(settings(&base, company()));
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Auth { endpoint, .. } if endpoint == SEARCH),
        "{err:?}"
    );
    assert_eq!(mock.hits().len(), 2);
    assert_eq!(mock.token_requests(), 2);
    let text = format!("{err} {err:?}");
    assert!(!text.contains("tok-1") && !text.contains("tok-2"), "{text}");
}

#[tokio::test]
async fn static_token_401_is_an_auth_error_naming_the_setting() {
    let (mock, base) = Mock::new().script([Reply::status(401)]).start().await;
    let api = client(settings(
        &base,
        Credentials::Token(Secret::new("STATIC-abc-123")),
    ));
    api.authenticate().await.unwrap();
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    assert!(matches!(&err, ApiError::Auth { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("SOBOT_TOKEN") && text.contains(SEARCH),
        "{text}"
    );
    assert!(!text.contains("STATIC-abc-123") && !format!("{err:?}").contains("STATIC-abc-123"));
    assert_eq!(mock.hits().len(), 1);
    assert_eq!(mock.token_requests(), 0);
}

#[tokio::test]
async fn no_secret_or_token_in_errors_or_debug() {
    let token = "TOKEN-very-secret-42";
    // The token endpoint fails with a body that contains a token, until exhaustion.
    let failing = Reply::raw(
        500,
        envelope(500, token, json!({"access_token": token})).to_string(),
    );
    let (_mock, base) = Mock::new().token_script(vec![failing; 4]).start().await;
    let s = settings(&base, company());
    let api = client(s.clone());
    let err = api.post(SEARCH, &search_body()).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Exhausted { endpoint, attempts: 4, .. } if endpoint == "/tokens/company"),
        "{err:?}"
    );

    // A transient envelope error at the token endpoint, echoing token and secret.
    let echo = Reply::code(json!(500), &format!("{token} {APP_SECRET}"));
    let (_mock2, base2) = Mock::new().token_script(vec![echo; 4]).start().await;
    let err2 = client(settings(&base2, company()))
        .authenticate()
        .await
        .unwrap_err();

    let texts = [
        err.to_string(),
        format!("{err:?}"),
        err2.to_string(),
        format!("{err2:?}"),
        format!("{api:?}"),
        format!("{s:?}"),
    ];
    for text in &texts {
        assert!(!text.contains(token), "token leaked: {text}");
        assert!(!text.contains(APP_SECRET), "secret leaked: {text}");
    }
    assert!(
        texts[4].contains(APP_ID),
        "Debug still names the app: {}",
        texts[4]
    );
}
