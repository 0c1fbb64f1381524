//! Requests and headers: what the client sends, and gzip answers decoded.

use super::*;

#[tokio::test]
async fn post_sends_headers_and_body_and_returns_data() {
    let (mock, base) = Mock::new()
        .script([Reply::ok(json!({"total": 1, "list": [{"callID": "c1"}]}))])
        .start()
        .await;
    let api = client(settings(
        &format!("{base}/"),
        Credentials::Token(Secret::new("static-tok")),
    ));
    let data = api.post(SEARCH, &search_body()).await.unwrap();
    assert_eq!(data, json!({"total": 1, "list": [{"callID": "c1"}]}));

    let hits = mock.hits();
    assert_eq!(hits.len(), 1);
    let hit = &hits[0];
    assert_eq!(hit.path, SEARCH);
    assert_eq!(hit.header("authorization").as_deref(), Some("static-tok"));
    assert_eq!(hit.header("timezoneid").as_deref(), Some("Asia/Singapore"));
    assert_eq!(
        hit.header("content-type").as_deref(),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&hit.body).unwrap(),
        search_body()
    );
    assert_eq!(api.stats().requests, 1);
}

#[tokio::test]
async fn get_sends_query_parameters() {
    let (mock, base) = Mock::new().start().await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    let path = "/callservice/tm/tm-reports/maincdrs/abc 123/partycdrs";
    api.get(
        path,
        &[
            ("hideNumber".into(), "2".into()),
            ("q".into(), "a&b".into()),
        ],
    )
    .await
    .unwrap();
    let hits = mock.hits();
    assert_eq!(
        hits[0].path,
        "/callservice/tm/tm-reports/maincdrs/abc%20123/partycdrs"
    );
    assert_eq!(hits[0].query.as_deref(), Some("hideNumber=2&q=a%26b"));
    assert!(hits[0].body.is_empty());
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks: enough to
/// prove the client asks for and decodes gzip, without a compression crate.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = data.chunks(65_535).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[tokio::test]
async fn gzip_response_is_decoded() {
    let data = json!({"total": 2, "list": [{"callID": "a"}, {"callID": "b"}]});
    let body = gzip_stored(envelope(200, "", data.clone()).to_string().as_bytes());
    let (mock, base) = Mock::new()
        .script([Reply::raw(200, body).header("content-encoding", "gzip")])
        .start()
        .await;
    let api = client(settings(&base, Credentials::Token(Secret::new("t"))));
    assert_eq!(api.post(SEARCH, &search_body()).await.unwrap(), data);
    let accept = mock.hits()[0].header("accept-encoding").unwrap_or_default();
    assert!(accept.contains("gzip"), "accept-encoding was {accept:?}");
}
