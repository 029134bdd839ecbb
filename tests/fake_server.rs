//! The fake Postmark follows the reference where connectors break: auth, paging limits, order,
//! Eastern dates and timestamp format. (The connector's tests are only as good as this.)

use chrono::{DateTime, Duration, Utc};
use fake_postmark::{FakeConfig, FakePostmark, default_streams, generate};
use serde_json::Value;

async fn get(fake: &FakePostmark, token: &str, path_and_query: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path_and_query}", fake.base_url()))
        .header("X-Postmark-Server-Token", token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Auth, paging limits (422/700, never clamped), newest-first order and the timestamp format.
#[tokio::test]
async fn fake_follows_the_reference() {
    let now = Utc::now();
    let messages = generate::between(1, "outbound", now - Duration::days(3), now - Duration::days(1), 12_000);
    let fake = FakePostmark::start(FakeConfig::default(), default_streams(), messages);
    let token = fake.token().to_string();

    let (status, body) = get(&fake, "nope", "/messages/outbound?count=1&offset=0").await;
    assert_eq!((status, body["ErrorCode"].as_i64()), (401, Some(10)));
    for bad in ["count=501&offset=0", "count=500&offset=9501", "offset=0", "count=10&offset=-1"] {
        let (status, body) = get(&fake, &token, &format!("/messages/outbound?{bad}")).await;
        assert_eq!((status, body["ErrorCode"].as_i64()), (422, Some(700)), "{bad}");
    }
    let (status, body) = get(&fake, &token, "/Messages/Outbound/?Count=500&Offset=9500").await;
    assert_eq!(status, 200);
    assert_eq!(body["TotalCount"], 12_000);
    assert_eq!(body["Messages"].as_array().unwrap().len(), 500);

    let (_, body) = get(&fake, &token, "/messages/outbound?count=50&offset=0").await;
    let times: Vec<DateTime<Utc>> = body["Messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let raw = m["ReceivedAt"].as_str().unwrap();
            assert!(
                raw.len() == "2025-06-03T09:14:07.5512093-04:00".len() && (raw.ends_with("-04:00") || raw.ends_with("-05:00")),
                "{raw}"
            );
            DateTime::parse_from_rfc3339(raw).unwrap().with_timezone(&Utc)
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "not newest first");

    let (status, body) = get(&fake, &token, "/messages/outbound?count=1&offset=0&messagestream=nope").await;
    assert_eq!((status, body["ErrorCode"].as_i64()), (422, Some(1226)));
}
