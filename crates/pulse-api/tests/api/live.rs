//! `/health`, `/api/v1/channels` and the live windows of `/api/v1/live`: what the speed layer
//! holds, per channel and language.

use chrono::{DateTime, Utc};
use pulse_core::config::ApiConfig;
use reqwest::StatusCode;
use serde_json::json;

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_channels_and_live_windows() {
    let api = start("live", keywords_only(), ApiConfig::default()).await;
    assert_eq!(
        api.get("/healthz").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let (status, ready) = api.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "ready");

    let (status, channels) = api.get("/api/v1/channels").await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<(String, u64)> = channels["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| {
            (
                c["channel"].as_str().unwrap().to_string(),
                c["posts_24h"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [(ALPHA.to_string(), 24), (BETA.to_string(), 5)],
        "most recent first"
    );
    let last_seen: DateTime<Utc> =
        serde_json::from_value(channels["channels"][0]["last_seen"].clone()).expect("a time");
    assert_eq!(
        last_seen.timestamp_millis(),
        api.alpha[0].post.created_at.timestamp_millis()
    );

    let (status, live) = api.get(&format!("/api/v1/live?channel={ALPHA}")).await;
    assert_eq!(status, StatusCode::OK, "{live}");
    assert_eq!(live["channel"], ALPHA);
    assert_eq!(live["totals"]["count"], 24);
    assert_eq!(live["totals"]["languages"], json!({"en": 18, "es": 6}));
    assert_eq!(
        live["series"].as_array().map(Vec::len),
        Some(5),
        "one entry per minute"
    );
    let keywords: Vec<(String, u64)> = live["keywords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["term"].as_str().unwrap().to_string(),
                k["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keywords,
        [("rust".to_string(), 24), ("kafka".to_string(), 12)]
    );
    // 8 positive (0.8), 8 neutral (0.0), 8 negative (-0.6): mean 0.0667.
    let mean = live["mean_score"].as_f64().expect("mean score");
    assert!((mean - 0.2 / 3.0).abs() < 1e-6, "{mean}");

    let (_, beta_now) = api
        .get(&format!("/api/v1/live?channel={BETA}&window=5m"))
        .await;
    assert_eq!(
        beta_now["totals"]["count"], 0,
        "beta's posts are 30 minutes old"
    );
    let (_, beta_hour) = api
        .get(&format!("/api/v1/live?channel={BETA}&window=1h&top=1"))
        .await;
    assert_eq!(beta_hour["totals"]["count"], 5);
    assert_eq!(beta_hour["series"].as_array().map(Vec::len), Some(60));
    assert_eq!(beta_hour["keywords"].as_array().map(Vec::len), Some(1));
    let (_, day) = api
        .get(&format!("/api/v1/live?channel={ALPHA}&window=24h"))
        .await;
    assert_eq!(day["totals"]["count"], 24);
    assert_eq!(day["series"].as_array().map(Vec::len), Some(1_440));
    // By hours: the same figures, one entry per clock hour the day touches, summing up.
    let (status, hourly) = api
        .get(&format!(
            "/api/v1/live?channel={ALPHA}&window=24h&series=hour"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{hourly}");
    assert_eq!(hourly["totals"], day["totals"]);
    assert_eq!(hourly["keywords"], day["keywords"]);
    let hours = hourly["series"].as_array().expect("series");
    assert!((24..=25).contains(&hours.len()), "{}", hours.len());
    let summed: u64 = hours.iter().filter_map(|h| h["count"].as_u64()).sum();
    assert_eq!(summed, 24);
    let (_, totals) = api
        .get(&format!(
            "/api/v1/live?channel={ALPHA}&window=24h&series=none"
        ))
        .await;
    assert_eq!(totals["totals"], day["totals"]);
    assert_eq!(totals["series"], json!([]));

    let bad = StatusCode::BAD_REQUEST;
    let detail = assert_error(
        api.get(&format!("/api/v1/live?channel={ALPHA}&window=2h"))
            .await,
        bad,
        "bad_parameter",
    );
    assert!(detail.contains("window"), "{detail}");
    assert_error(api.get("/api/v1/live").await, bad, "bad_parameter");
    assert_error(
        api.get(&format!("/api/v1/live?channel={ALPHA}&top=101"))
            .await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!("/api/v1/live?channel={ALPHA}&top=-1"))
            .await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!("/api/v1/live?channel={ALPHA}&series=week"))
            .await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!("/api/v1/live?channel={ALPHA}&colour=red"))
            .await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get("/api/v1/nothing").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // Every error is the documented JSON: a method a route does not serve, a time out of
    // the calendar's range, a path segment that is not UTF-8.
    assert_error(
        api.call(reqwest::Method::DELETE, "/api/v1/live", None, None)
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let detail = assert_error(
        api.get(&format!(
            "/api/v1/history?channel={ALPHA}&from=now-100000000d"
        ))
        .await,
        bad,
        "bad_parameter",
    );
    assert!(detail.contains("too far back"), "{detail}");
    assert_error(api.get("/api/v1/posts/%FF%FE").await, bad, "bad_parameter");

    // A request target or headers over their limits get 414 / 431 as JSON, naming the key.
    let long = "x".repeat(9_000);
    let detail = assert_error(
        api.get(&format!("/api/v1/live?channel={long}")).await,
        StatusCode::URI_TOO_LONG,
        "uri_too_long",
    );
    assert!(detail.contains("api.max_uri_bytes"), "{detail}");
    let many = (0..150).fold(
        api.client.get(format!("{}/api/v1/channels", api.base)),
        |r, i| r.header(format!("x-extra-{i}"), "1"),
    );
    let large = api
        .client
        .get(format!("{}/healthz", api.base))
        .header("x-large", "y".repeat(40_000));
    for (request, limit) in [(many, "api.max_headers"), (large, "api.max_header_bytes")] {
        let response = request.send().await.expect("sent");
        let status = response.status();
        let detail = assert_error(
            (status, response.json().await.expect("json")),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
        );
        assert!(detail.contains(limit), "{detail}");
    }
}
