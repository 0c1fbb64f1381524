//! Simulator behaviour over real HTTP. OWNER: simulator helper.
//!
//! Every test starts its own simulator on a free port and talks to it with reqwest, as
//! the sync engine does, then checks what came back against the `Dataset` ground truth.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::sim_http::{self, Answer, Client, start, utc};
use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sobot_sync::sim;
use sobot_sync::sim::{Faults, SimConfig, SimHandle};

const MAINCDRS: &str = "/callservice/tm/tm-reports/maincdrs/_search";
const CDRS: &str = "/callservice/tm/tm-reports/cdrs/_search";
const HISTORIES: &str = "/callservice/tm/tm-reports/agent-histories/_search";

fn config() -> SimConfig {
    sim_http::config("2024-01-10T00:00:00Z")
}

/// The endpoints these tests page through.
impl Client {
    async fn talk_page(&self, from: i64, to: i64, page: u64, size: u64) -> Answer {
        self.post(
            MAINCDRS,
            &json!({"startTime": from, "endTime": to, "pageNum": page, "pageSize": size}),
        )
        .await
    }

    /// Every talk of `[from, to]` by paging until the page comes back empty.
    async fn all_talks(&self, from: i64, to: i64, size: u64) -> (u64, Vec<Value>) {
        let mut out = Vec::new();
        let mut total = 0;
        for page in 1.. {
            let a = self.talk_page(from, to, page, size).await;
            assert_eq!(a.status, StatusCode::OK);
            let v = a.json();
            assert_eq!(v["code"], 200, "{v}");
            total = v["data"]["total"].as_u64().unwrap_or(0);
            let list = v["data"]["list"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                break;
            }
            out.extend(list);
        }
        (total, out)
    }

    async fn histories(&self, start: &str, end: &str, page: u64, size: u64) -> Answer {
        self.post(
            HISTORIES,
            &json!({"startTime": start, "endTime": end, "pageNum": page, "pageSize": size}),
        )
        .await
    }

    async fn all_histories(&self, start: &str, end: &str) -> (u64, Vec<Value>) {
        let mut out = Vec::new();
        let mut total = 0;
        for page in 1.. {
            let v = self.histories(start, end, page, 200).await.json();
            assert_eq!(v["code"], 200, "{v}");
            total = v["data"]["total"].as_u64().unwrap_or(0);
            let list = v["data"]["pageData"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if list.is_empty() {
                break;
            }
            out.extend(list);
        }
        (total, out)
    }

    async fn parties(&self, call_id: &str) -> Answer {
        let id = call_id.replace(' ', "%20");
        self.get(
            &format!("/callservice/tm/tm-reports/maincdrs/{id}/partycdrs"),
            None,
        )
        .await
    }
}

fn ids(records: &[Value], key: &str) -> Vec<String> {
    records
        .iter()
        .map(|r| r[key].as_str().unwrap_or_default().trim().to_string())
        .collect()
}

fn ms(s: &str) -> i64 {
    utc(s).timestamp_millis()
}

async fn token_answer(client: &reqwest::Client, base: &str, secret: &str, time_ms: i64) -> Value {
    let t = time_ms.to_string();
    let body = json!({
        "responseType": "token",
        "appId": "sim-app",
        "currentTime": time_ms,
        "sign": sim::token_sign("sim-app", &t, "token", secret),
    });
    let resp = client
        .post(format!("{base}/tokens/company"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("token request: {e}"));
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json()
        .await
        .unwrap_or_else(|e| panic!("token body: {e}"))
}

#[tokio::test]
async fn token_sign_is_checked_and_issued_tokens_open_data_endpoints() {
    let sim = start(SimConfig {
        static_token: None,
        ..config()
    })
    .await;
    let http = reqwest::Client::new();
    let base = sim.base_url();
    let now = Utc::now().timestamp_millis();

    let wrong = token_answer(&http, &base, "not-the-secret", now).await;
    assert_eq!(wrong["code"], 401, "{wrong}");
    let stale = token_answer(&http, &base, "sim-secret", now - 11 * 60 * 1000).await;
    assert_eq!(stale["code"], 401, "{stale}");

    let mut client = Client::new(&sim);
    // Three answers, three shapes; each token works on a data endpoint.
    for style in 0..3 {
        let v = token_answer(&http, &base, "sim-secret", now).await;
        assert_eq!(v["code"], 200, "{v}");
        let d = &v["data"];
        let token = match style {
            0 => {
                assert_eq!(d["expires_in"], 7200);
                d["access_token"].as_str()
            }
            1 => {
                assert_eq!(d["expiresIn"], 7200);
                d["accessToken"].as_str()
            }
            _ => {
                assert!(d.get("expiresIn").is_none());
                d["accessToken"].as_str()
            }
        };
        client.token = token.map(str::to_string);
        let a = client.talk_page(0, ms("2024-01-01T01:00:00Z"), 1, 10).await;
        assert_eq!((a.status, a.code()), (StatusCode::OK, 200));
    }
    let stats = sim.stats();
    assert_eq!(stats.token_requests, 5);
    assert_eq!(stats.by_endpoint_status.get("maincdrs 200"), Some(&3));
    sim.shutdown().await;
}

#[tokio::test]
async fn data_endpoints_refuse_missing_unknown_and_expired_tokens() {
    let sim = start(SimConfig {
        faults: Faults {
            token_ttl_secs: Some(0),
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let mut client = Client::new(&sim);
    client.token = None;
    let a = client.talk_page(0, 1, 1, 10).await;
    assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, 401));
    client.token = Some("made-up".to_string());
    let a = client.talk_page(0, 1, 1, 10).await;
    assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, 401));

    // A token with a zero lifetime is expired by the time it is used.
    let v = token_answer(
        &reqwest::Client::new(),
        &sim.base_url(),
        "sim-secret",
        Utc::now().timestamp_millis(),
    )
    .await;
    assert_eq!(v["data"]["expires_in"], 0);
    client.token = v["data"]["access_token"].as_str().map(str::to_string);
    let a = client.talk_page(0, 1, 1, 10).await;
    assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, 401));
    assert_eq!(sim.stats().by_endpoint_status.get("maincdrs 401"), Some(&3));
}

#[tokio::test]
async fn talk_pages_serve_every_record_of_the_range_exactly_once() {
    let sim = start(config()).await;
    let client = Client::new(&sim);
    let (from, to) = (ms("2024-01-03T00:00:00Z"), ms("2024-01-03T11:59:59.999Z"));
    let (total, served) = client.all_talks(from, to, 37).await;
    let truth = sim
        .dataset()
        .talks(utc("2024-01-03T00:00:00Z"), utc("2024-01-03T12:00:00Z"));
    assert!(truth.len() > 100, "only {} talks", truth.len());
    assert_eq!(total as usize, truth.len());
    assert_eq!(served, truth, "served records differ from the ground truth");
    let unique: BTreeSet<String> = ids(&served, "callID").into_iter().collect();
    assert_eq!(unique.len(), served.len());
    // Some ids are served padded, as in the API document.
    assert!(
        served
            .iter()
            .any(|t| t["callID"].as_str().is_some_and(|s| s.starts_with(' ')))
    );
    // A few carry a field no schema knows.
    assert!(served.iter().any(|t| t.get("queueTag").is_some()));
}

#[tokio::test]
async fn talk_range_is_inclusive_at_both_ends() {
    let sim = start(config()).await;
    let client = Client::new(&sim);
    let truth = sim
        .dataset()
        .talks(utc("2024-01-04T00:00:00Z"), utc("2024-01-04T02:00:00Z"));
    let t = truth[10]["startTime"].as_i64().unwrap_or(0);
    let id = truth[10]["callID"].as_str().unwrap_or_default().to_string();
    let served = |v: Value| {
        ids(
            v["data"]["list"].as_array().map_or(&[][..], |l| l),
            "callID",
        )
    };
    let exact = served(client.talk_page(t, t, 1, 200).await.json());
    assert!(exact.contains(&id.trim().to_string()));
    let ending = served(client.talk_page(t - 60_000, t, 1, 200).await.json());
    assert!(ending.contains(&id.trim().to_string()));
    let before = served(client.talk_page(t - 60_000, t - 1, 1, 200).await.json());
    assert!(!before.contains(&id.trim().to_string()));
    let after = served(client.talk_page(t + 1, t + 60_000, 1, 200).await.json());
    assert!(!after.contains(&id.trim().to_string()));
}

#[tokio::test]
async fn only_ended_calls_are_visible_at_the_simulated_now() {
    let sim = start(config()).await;
    let client = Client::new(&sim);
    let now = utc("2024-01-05T03:30:00Z");
    sim.set_now(Some(now));
    let (from, to) = (utc("2024-01-05T02:00:00Z"), utc("2024-01-05T04:00:00Z"));
    let truth = sim.dataset().talks(from, to);
    let ended: Vec<&Value> = truth
        .iter()
        .filter(|t| t["endTime"].as_i64().unwrap_or(i64::MAX) <= now.timestamp_millis())
        .collect();
    assert!(ended.len() < truth.len());
    let (total, served) = client
        .all_talks(from.timestamp_millis(), to.timestamp_millis() - 1, 200)
        .await;
    assert_eq!(total as usize, ended.len());
    assert_eq!(served.iter().collect::<Vec<_>>(), ended);

    // A call still in progress has no parties yet either.
    let running = truth
        .iter()
        .find(|t| {
            t["endTime"].as_i64().unwrap_or(0) > now.timestamp_millis() && t["callResult"] == 8
        })
        .and_then(|t| t["callID"].as_str())
        .unwrap_or_default();
    let a = client.parties(running).await.json();
    assert_eq!(a["data"]["list"], json!([]));

    // Moving now forward over the control endpoint reveals the rest.
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{}/_sim/now", sim.base_url()))
        .json(&json!({"now": "2024-01-06T00:00:00+08:00"}))
        .send()
        .await
        .map(|r| r.status());
    assert_eq!(put.ok(), Some(StatusCode::OK));
    let (total, _) = client
        .all_talks(from.timestamp_millis(), to.timestamp_millis() - 1, 200)
        .await;
    assert_eq!(total as usize, truth.len());
}

#[tokio::test]
async fn parties_and_combined_search_agree_with_the_dataset() {
    let sim = start(config()).await;
    let client = Client::new(&sim);
    let ds = sim.dataset();
    let truth = ds.talks(utc("2024-01-02T09:00:00Z"), utc("2024-01-02T10:00:00Z"));
    let mut legs = 0;
    let mut padded = 0;
    for talk in &truth {
        let id = talk["callID"].as_str().unwrap_or_default();
        padded += usize::from(id.starts_with(' '));
        let expected = ds.parties(id);
        assert_eq!(ds.parties(id.trim()), expected);
        let a = client.parties(id).await;
        assert_eq!(a.status, StatusCode::OK);
        let v = a.json();
        assert_eq!(
            v["data"]["list"],
            Value::Array(expected.clone()),
            "call {id}"
        );
        for p in &expected {
            assert_eq!(p["callID"], talk["callID"]);
        }
        legs += expected.len();
    }
    assert!(
        legs > truth.len() / 2 && padded > 0,
        "legs {legs} padded {padded}"
    );

    let talk = &truth[3];
    let id = talk["callID"].as_str().unwrap_or_default();
    let v = client
        .post(CDRS, &json!({"callID": id, "hideNumber": 1}))
        .await
        .json();
    let one = &v["data"]["list"][0];
    assert_eq!(one["callID"], talk["callID"]);
    assert_eq!(one["parties"], Value::Array(ds.parties(id)));
    let plain = talk["customerNumber"].as_str().unwrap_or_default();
    let masked = format!("{}****{}", &plain[..3], &plain[plain.len() - 4..]);
    assert_eq!(one["customerNumber"], json!(masked));

    let unknown = client.parties(&"0".repeat(32)).await.json();
    assert_eq!(unknown["data"]["list"], json!([]));
}

#[tokio::test]
async fn agent_history_minutes_are_inclusive_at_both_edges() {
    let sim = start(config()).await;
    let client = Client::new(&sim);
    // Singapore is UTC+8: local 2024-01-03 10:00-12:00 is 02:00-04:00 UTC.
    let truth = sim
        .dataset()
        .agent_histories(utc("2024-01-03T02:00:00Z"), utc("2024-01-03T04:00:00Z"));
    let (total, served) = client
        .all_histories("2024-01-03 10:00", "2024-01-03 11:59")
        .await;
    assert_eq!(total as usize, truth.len());
    assert_eq!(served, truth);

    let rec = &truth[truth.len() / 2];
    let minute = rec["startTime"].as_str().unwrap_or_default().to_string();
    let id = rec["id"].as_str().unwrap_or_default().to_string();
    let (_, same) = client.all_histories(&minute, &minute).await;
    assert!(
        ids(&same, "id").contains(&id),
        "start and end minute both {minute}"
    );
    for r in &same {
        assert_eq!(r["startTime"], json!(minute));
    }
    let start_ms = rec["startTimeMs"].as_i64().unwrap_or(0);
    let fmt = |ms: i64| {
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(|t| {
                t.with_timezone(&chrono_tz::Asia::Singapore)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let (_, later) = client
        .all_histories(&fmt(start_ms + 60_000), &fmt(start_ms + 600_000))
        .await;
    assert!(!ids(&later, "id").contains(&id));
    let (_, earlier) = client
        .all_histories(&fmt(start_ms - 600_000), &fmt(start_ms - 60_000))
        .await;
    assert!(!ids(&earlier, "id").contains(&id));
}

#[tokio::test]
async fn agent_histories_follow_new_york_across_dst_changes() {
    let sim = start(SimConfig {
        timezone: chrono_tz::America::New_York,
        now: Some(utc("2024-12-01T00:00:00Z")),
        agents: 3,
        ..config()
    })
    .await;
    let mut client = Client::new(&sim);
    client.timezone = Some("America/New_York".to_string());
    let ds = sim.dataset();

    // Fall back: 2024-11-03 has 25 hours, 04:00Z to 05:00Z the next day.
    let truth = ds.agent_histories(utc("2024-11-03T04:00:00Z"), utc("2024-11-04T05:00:00Z"));
    let (total, served) = client
        .all_histories("2024-11-03 00:00", "2024-11-03 23:59")
        .await;
    assert_eq!(total as usize, truth.len());
    assert_eq!(served, truth);
    let repeated: BTreeSet<i64> = served
        .iter()
        .filter(|r| {
            r["startTime"]
                .as_str()
                .is_some_and(|s| s.starts_with("2024-11-03 01:"))
        })
        .filter_map(|r| r["startTimeMs"].as_i64())
        .map(|ms| ms / 3_600_000)
        .collect();
    assert_eq!(repeated.len(), 2, "01:xx local occurs in two UTC hours");

    // An ambiguous end minute reaches to its later instant.
    let (_, to_amb) = client
        .all_histories("2024-11-03 00:00", "2024-11-03 01:59")
        .await;
    let expected = ds.agent_histories(utc("2024-11-03T04:00:00Z"), utc("2024-11-03T07:00:00Z"));
    assert_eq!(to_amb, expected);

    // Spring forward: 2024-03-10 has 23 hours; 02:30 does not exist and means 03:00.
    let truth = ds.agent_histories(utc("2024-03-10T05:00:00Z"), utc("2024-03-11T04:00:00Z"));
    let (total, served) = client
        .all_histories("2024-03-10 00:00", "2024-03-10 23:59")
        .await;
    assert_eq!((total as usize, served.clone()), (truth.len(), truth));
    let (_, gap) = client
        .all_histories("2024-03-10 02:30", "2024-03-10 03:00")
        .await;
    let expected = ds.agent_histories(utc("2024-03-10T07:00:00Z"), utc("2024-03-10T07:01:00Z"));
    assert_eq!(gap, expected);
}

#[tokio::test]
async fn bad_requests_get_envelope_400() {
    let sim = start(config()).await;
    let mut client = Client::new(&sim);
    for body in [
        json!({"endTime": 1, "pageNum": 1, "pageSize": 10}),
        json!({"startTime": "soon", "endTime": 1, "pageNum": 1, "pageSize": 10}),
        json!({"startTime": 0, "endTime": 1, "pageNum": 0, "pageSize": 10}),
        json!({"startTime": 0, "endTime": 1, "pageNum": 1}),
    ] {
        let a = client.post(MAINCDRS, &body).await;
        assert_eq!((a.status, a.code()), (StatusCode::OK, 400), "{body}");
    }
    let a = client
        .histories("2024-01-03", "2024-01-03 10:00", 1, 10)
        .await;
    assert_eq!(a.code(), 400);
    // Numbers as strings are fine, and pageSize is capped.
    let v = client
        .post(
            MAINCDRS,
            &json!({"startTime": "0", "endTime": ms("2024-01-03T00:00:00Z").to_string(),
                   "pageNum": "1", "pageSize": "5000"}),
        )
        .await
        .json();
    assert_eq!(v["code"], 200);
    assert_eq!(v["data"]["pageSize"], 200);
    assert_eq!(v["data"]["list"].as_array().map(Vec::len), Some(200));
    client.timezone = Some("Mars/Olympus".to_string());
    let a = client.talk_page(0, 1, 1, 10).await;
    assert_eq!((a.status, a.code()), (StatusCode::OK, 400));
}

#[tokio::test]
async fn every_nth_faults_are_observable() {
    let sim = start(config()).await;
    let client = Client::new(&sim);
    let (from, to) = (ms("2024-01-02T00:00:00Z"), ms("2024-01-02T06:00:00Z"));

    sim.set_faults(Faults {
        rate_limit_every: Some(2),
        retry_after_secs: 3,
        ..Faults::default()
    });
    let first = client.talk_page(from, to, 1, 10).await;
    let second = client.talk_page(from, to, 1, 10).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        second
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );

    sim.set_faults(Faults {
        server_error_every: Some(1),
        ..Faults::default()
    });
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(client.talk_page(from, to, 1, 10).await.status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![500, 502, 503]);

    sim.set_faults(Faults {
        envelope_error_every: Some(1),
        ..Faults::default()
    });
    let a = client.talk_page(from, to, 1, 10).await;
    assert_eq!((a.status, a.code()), (StatusCode::OK, 500));

    sim.set_faults(Faults {
        truncate_every: Some(1),
        ..Faults::default()
    });
    let a = client.talk_page(from, to, 1, 10).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.len() > 100);
    assert!(serde_json::from_slice::<Value>(&a.body).is_err());

    sim.set_faults(Faults {
        slow_every: Some(1),
        slow_ms: 300,
        ..Faults::default()
    });
    let t0 = Instant::now();
    let a = client.talk_page(from, to, 1, 10).await;
    assert_eq!(a.code(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));

    // Faults switched off over the control endpoint: clean answers again.
    let put = reqwest::Client::new()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(&json!({}))
        .send()
        .await
        .map(|r| r.status());
    assert_eq!(put.ok(), Some(StatusCode::OK));
    let a = client.talk_page(from, to, 1, 10).await;
    assert_eq!((a.status, a.code()), (StatusCode::OK, 200));

    let stats: Value = reqwest::Client::new()
        .get(format!("{}/_sim/stats", sim.base_url()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("stats: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("stats body: {e}"));
    assert_eq!(stats["requests"], 9);
    assert_eq!(stats["by_endpoint_status"]["maincdrs 429"], 1);
    assert_eq!(stats["by_endpoint_status"]["maincdrs 502"], 1);
}

#[tokio::test]
async fn late_records_appear_late_secs_after_they_end() {
    let now = utc("2024-01-05T12:00:00Z");
    let sim = start(SimConfig {
        now: Some(now),
        ..config()
    })
    .await;
    let client = Client::new(&sim);
    let (from, to) = (utc("2024-01-05T09:00:00Z"), utc("2024-01-05T12:00:00Z"));
    let on_time = client
        .all_talks(from.timestamp_millis(), to.timestamp_millis() - 1, 200)
        .await
        .0;
    sim.set_faults(Faults {
        late_fraction: 1.0,
        late_secs: 3600,
        ..Faults::default()
    });
    let truth = sim.dataset().talks(from, to);
    let expected = truth
        .iter()
        .filter(|t| t["endTime"].as_i64().unwrap_or(i64::MAX) + 3_600_000 <= now.timestamp_millis())
        .count();
    let (late_total, late) = client
        .all_talks(from.timestamp_millis(), to.timestamp_millis() - 1, 200)
        .await;
    assert_eq!(late_total as usize, expected);
    assert_eq!(late.len(), expected);
    assert!(late_total < on_time);

    // A fraction: some but not all of the calls of a closed window are held back.
    sim.set_faults(Faults {
        late_fraction: 0.3,
        late_secs: 100_000,
        ..Faults::default()
    });
    let early = (utc("2024-01-04T00:00:00Z"), utc("2024-01-04T12:00:00Z"));
    let all = sim.dataset().talks(early.0, early.1).len() as u64;
    let (part, _) = client
        .all_talks(
            early.0.timestamp_millis(),
            early.1.timestamp_millis() - 1,
            200,
        )
        .await;
    assert!(part < all && part > all / 2, "{part} of {all}");
}

#[tokio::test]
async fn broken_window_always_fails() {
    let sim = start(SimConfig {
        faults: Faults {
            broken_from: Some(utc("2024-01-03T05:00:00Z")),
            broken_to: Some(utc("2024-01-03T06:00:00Z")),
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let client = Client::new(&sim);
    for _ in 0..3 {
        let a = client
            .talk_page(
                ms("2024-01-03T04:00:00Z"),
                ms("2024-01-03T05:00:00Z"),
                1,
                10,
            )
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::INTERNAL_SERVER_ERROR, 500)
        );
    }
    let before = client
        .talk_page(
            ms("2024-01-03T04:00:00Z"),
            ms("2024-01-03T04:59:59.999Z"),
            1,
            10,
        )
        .await;
    assert_eq!(before.status, StatusCode::OK);
    let after = client
        .talk_page(
            ms("2024-01-03T06:00:00Z"),
            ms("2024-01-03T07:00:00Z"),
            1,
            10,
        )
        .await;
    assert_eq!(after.status, StatusCode::OK);
    // Local 13:00 Singapore is 05:00Z.
    let a = client
        .histories("2024-01-03 13:30", "2024-01-03 13:40", 1, 10)
        .await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    let a = client
        .histories("2024-01-03 12:00", "2024-01-03 12:59", 1, 10)
        .await;
    assert_eq!(a.status, StatusCode::OK);

    let ds = sim.dataset();
    let inside = ds.talks(utc("2024-01-03T05:00:00Z"), utc("2024-01-03T06:00:00Z"));
    let outside = ds.talks(utc("2024-01-03T06:00:00Z"), utc("2024-01-03T07:00:00Z"));
    let id = |t: &Value| t["callID"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        client.parties(&id(&inside[0])).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        client.parties(&id(&outside[0])).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn shifting_page_size_leaves_a_pager_short_of_total() {
    let sim = start(SimConfig {
        faults: Faults {
            shifting_page_size: true,
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let client = Client::new(&sim);
    let (from, to) = (ms("2024-01-03T00:00:00Z"), ms("2024-01-03T23:59:59.999Z"));
    let mut served = 0;
    let mut short_pages = 0;
    let mut total = 0;
    for page in 1.. {
        let v = client.talk_page(from, to, page, 20).await.json();
        assert_eq!(v["data"]["pageSize"], 20);
        total = v["data"]["total"].as_u64().unwrap_or(0);
        let n = v["data"]["list"].as_array().map_or(0, Vec::len) as u64;
        if page * 20 > total + 20 {
            break;
        }
        if n < 20 && page * 20 <= total {
            short_pages += 1;
        }
        served += n;
    }
    assert!(short_pages > 0);
    assert!(served < total, "served {served} of {total}");
}

#[tokio::test]
async fn max_rps_refuses_requests_beyond_the_limit() {
    let sim = start(SimConfig {
        faults: Faults {
            max_rps: Some(5),
            ..Faults::default()
        },
        ..config()
    })
    .await;
    let client = Client::new(&sim);
    let mut refused = 0;
    let t0 = Instant::now();
    for _ in 0..12 {
        let a = client.talk_page(0, ms("2024-01-01T01:00:00Z"), 1, 5).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(a.headers.contains_key("retry-after"));
            refused += 1;
        }
    }
    // Twelve requests within one second against a cap of five.
    if t0.elapsed() < Duration::from_millis(900) {
        assert_eq!(refused, 7);
    } else {
        assert!(refused > 0);
    }
    let stats = sim.stats();
    assert!(stats.max_requests_in_one_second >= 6);
    assert_eq!(
        stats.by_endpoint_status.get("maincdrs 429").copied(),
        Some(refused)
    );
}

#[tokio::test]
async fn same_seed_serves_identical_bytes() {
    let a = start(config()).await;
    let b = start(config()).await;
    let c = start(SimConfig {
        seed: 43,
        ..config()
    })
    .await;
    let (ca, cb, cc) = (Client::new(&a), Client::new(&b), Client::new(&c));
    let (from, to) = (ms("2024-01-02T00:00:00Z"), ms("2024-01-02T05:00:00Z"));
    let body = |x: &Answer, sim: &SimHandle| {
        String::from_utf8_lossy(&x.body).replace(&sim.base_url(), "BASE")
    };
    for page in 1..4 {
        let (x, y) = (
            ca.talk_page(from, to, page, 50).await,
            cb.talk_page(from, to, page, 50).await,
        );
        assert_eq!(body(&x, &a), body(&y, &b));
        let z = cc.talk_page(from, to, page, 50).await;
        assert_ne!(body(&x, &a), body(&z, &c));
    }
    let (x, y) = (
        ca.histories("2024-01-02 08:00", "2024-01-02 12:00", 1, 100)
            .await,
        cb.histories("2024-01-02 08:00", "2024-01-02 12:00", 1, 100)
            .await,
    );
    assert_eq!(x.body, y.body);
    let id = a
        .dataset()
        .talks(utc("2024-01-02T01:00:00Z"), utc("2024-01-02T02:00:00Z"))[0]["callID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (x, y) = (ca.parties(&id).await, cb.parties(&id).await);
    assert_eq!(x.body, y.body);
}

/// issue 15, billing settles later: a revised call is served by all three call endpoints
/// with fees 0 until its settling instant, then as the ground truth.
#[tokio::test]
async fn revised_calls_are_served_preliminary_then_final() {
    let faults = Faults {
        revise_fraction: 0.3,
        revise_secs: 6 * 3600,
        ..Faults::default()
    };
    // Calls end at most 20 minutes after they start, so every call of the window shows
    // before the first revised one settles.
    let (from, to) = (utc("2024-01-03T00:00:00Z"), utc("2024-01-03T04:00:00Z"));
    let sim = start(SimConfig {
        faults: faults.clone(),
        ..config()
    })
    .await;
    let ds = sim.dataset();
    let revised = ds.revised_calls(from, to, &faults);
    let truth = ds.talks(from, to);
    assert!(!revised.is_empty() && revised.len() < truth.len());
    // Just after the window's calls all show, before any of them settles.
    let first_settled = revised.iter().map(|r| r.1).min().unwrap_or(to);
    let now1 = first_settled - chrono::Duration::seconds(1);
    assert!(
        truth
            .iter()
            .all(|t| t["endTime"].as_i64().unwrap_or(i64::MAX) <= now1.timestamp_millis())
    );
    let fee_fields = ["feeSeconds", "feeMinutes"];
    let party_fee_fields = ["fee", "feeSeconds", "feeMinutes"];
    let unbilled = |v: &Value, fields: &[&str]| fields.iter().all(|k| v[*k].as_f64() == Some(0.0));
    let client = Client::new(&sim);
    let (lo, hi) = (from.timestamp_millis(), to.timestamp_millis() - 1);
    let is_revised = |id: &str| revised.iter().any(|r| r.0 == id.trim());
    let settled_all = revised.iter().map(|r| r.1).max().unwrap_or(to);
    for (now, settled) in [(now1, false), (settled_all, true)] {
        sim.set_now(Some(now));
        assert_eq!(ds.talks_at(from, to, &faults, now) == truth, settled);
        let (_, served) = client.all_talks(lo, hi, 200).await;
        assert_eq!(
            served,
            ds.talks_at(from, to, &faults, now),
            "talks at {now}"
        );
        let mut changed = 0;
        for (talk, fin) in served.iter().zip(&truth) {
            let id = fin["callID"].as_str().unwrap_or_default();
            let legs = client.parties(id).await.json()["data"]["list"].clone();
            let one = client.post(CDRS, &json!({"callID": id})).await.json();
            let one = &one["data"]["list"][0];
            assert_eq!(legs, Value::Array(ds.parties_at(id, &faults, now)), "{id}");
            assert_eq!(one["parties"], legs, "{id}");
            assert_eq!(one["feeSeconds"], talk["feeSeconds"], "{id}");
            if is_revised(id) && !settled {
                assert!(unbilled(talk, &fee_fields), "{id}");
                assert!(
                    legs.as_array()
                        .is_some_and(|l| l.iter().all(|p| unbilled(p, &party_fee_fields))),
                    "{id}"
                );
                changed += usize::from(talk != fin);
            } else {
                assert_eq!(talk, fin, "{id}");
                assert_eq!(legs, Value::Array(ds.parties(id)), "{id}");
            }
        }
        assert_eq!(
            changed > 0,
            !settled,
            "some calls are served preliminary at {now}"
        );
    }
}
