//! `/api/v1/history`: batch rollups up to the watermark, speed minutes after it.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use pulse_core::config::ApiConfig;
use pulse_core::{EnrichedPost, Granularity};
use reqwest::StatusCode;
use serde_json::json;

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_takes_batch_rollups_up_to_the_watermark_and_speed_minutes_after() {
    const GAMMA: &str = "api/gamma";
    let api = start("history", keywords_only(), ApiConfig::default()).await;
    let now = Utc::now();
    let hour = Granularity::Hour.floor(now);
    // Both layers get 6 posts 2.5 hours ago and 4 in the current hour; the batch layer
    // alone one more old post, the speed layer alone one more recent post, so the figures
    // say which layer each bucket came from.
    let old_at = |i: usize| hour - Duration::minutes(150) + Duration::seconds(i as i64);
    let recent_at = |i: usize| hour + (now - hour) / 2 + Duration::milliseconds(i as i64);
    let old: Vec<EnrichedPost> = (0..7).map(|i| post(GAMMA, i, old_at(i))).collect();
    let recent: Vec<EnrichedPost> = (10..15).map(|i| post(GAMMA, i, recent_at(i))).collect();
    write(&api.batch, &old).await;
    write(&api.batch, &recent[..4]).await;
    api.speed.apply(&old[..6]).await.expect("applied");
    api.speed.apply(&recent).await.expect("applied");
    api.batch
        .recompute(None, now, &|_| {})
        .await
        .expect("recomputed");

    let from = (hour - Duration::hours(5)).to_rfc3339_opts(SecondsFormat::Secs, true);
    // An explicit end keeps the six buckets if the clock passes the hour meanwhile.
    let to = (hour + Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let (status, history) = api
        .get(&format!(
            "/api/v1/history?channel={GAMMA}&from={from}&to={to}&granularity=hour&top=3"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let watermark: DateTime<Utc> =
        serde_json::from_value(history["watermark"].clone()).expect("a watermark");
    assert_eq!(watermark, hour, "recompute runs up to the current hour");
    let buckets = history["buckets"].as_array().expect("buckets");
    let summary: Vec<(DateTime<Utc>, String, u64, bool)> = buckets
        .iter()
        .map(|b| {
            (
                serde_json::from_value(b["start"].clone()).expect("a start"),
                b["source"].as_str().expect("a source").to_string(),
                b["posts"].as_u64().expect("posts"),
                b["complete"].as_bool().expect("complete"),
            )
        })
        .collect();
    let h = |n: i64| hour - Duration::hours(n);
    let batch = |n, posts| (h(n), "batch".to_string(), posts, true);
    assert_eq!(
        summary,
        [
            batch(5, 0),
            batch(4, 0),
            batch(3, 7),
            batch(2, 0),
            batch(1, 0),
            (hour, "speed".to_string(), 5, true),
        ]
    );
    let old_bucket = &buckets[2];
    assert_eq!(
        old_bucket["labels"],
        json!({"negative": 2, "neutral": 2, "positive": 3})
    );
    assert_eq!(
        old_bucket["keywords"],
        json!([{"term": "rust", "count": 7}, {"term": "kafka", "count": 4}])
    );
    // 3 x 0.8 + 2 x 0.0 + 2 x -0.6 over 7.
    let mean = old_bucket["mean_score"].as_f64().expect("a mean");
    assert!((mean - 1.2 / 7.0).abs() < 1e-6, "{mean}");
    assert_eq!(
        buckets[5]["labels"],
        json!({"negative": 2, "neutral": 2, "positive": 1})
    );
    assert_eq!(
        buckets[5]["keywords"],
        json!([{"term": "rust", "count": 5}, {"term": "kafka", "count": 3}])
    );

    let bad = StatusCode::BAD_REQUEST;
    let base = format!("/api/v1/history?channel={GAMMA}");
    assert_error(
        api.get(&format!("{base}&from={from}&granularity=week"))
            .await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!("{base}&from=now&to=now-1h")).await,
        bad,
        "bad_parameter",
    );
    let detail = assert_error(
        api.get(&format!("{base}&from=2000-01-01")).await,
        bad,
        "bad_parameter",
    );
    assert!(detail.contains("at most 2000"), "{detail}");
    assert_error(
        api.get(&format!("{base}&from={from}&top=1000")).await,
        bad,
        "bad_parameter",
    );
}
