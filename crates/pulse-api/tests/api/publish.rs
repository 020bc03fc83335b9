//! `POST /api/v1/posts`: posts published to the raw topic with a token, refused without.

use pulse_core::config::ApiConfig;
use pulse_core::Post;
use pulse_testkit::kafka_config;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_are_published_with_a_token_and_refused_without_one() {
    let config = ApiConfig {
        tokens: vec!["s3cret-one".into(), "s3cret-two".into()],
        max_ingest_posts: 5,
        ..ApiConfig::default()
    };
    let api = start("ingest", keywords_only(), config).await;
    pulse_kafka::admin::create_topics(
        &kafka_config(1),
        &[&api.raw_topic, &format!("{}.dlq", api.raw_topic)],
    )
    .await
    .expect("topics created (is the stack running? scripts/stack start)");
    let post = |id: &str, text: &str| {
        json!({"id": id, "source": "http", "channel": "api/ingest", "text": text,
               "created_at": "2026-11-24T10:00:00Z", "author": "someone"})
    };
    let batch = json!([
        post("h:1", "first post"),
        post("h:2", "second post"),
        post("h:3", "third")
    ]);
    let send = |body: Value, token: Option<&'static str>| {
        api.call(reqwest::Method::POST, "/api/v1/posts", Some(body), token)
    };

    let unauthorized = StatusCode::UNAUTHORIZED;
    assert_error(
        send(batch.clone(), None).await,
        unauthorized,
        "unauthorized",
    );
    // The token is checked before the body is read.
    assert_error(
        send(json!({"not": "a list of posts"}), None).await,
        unauthorized,
        "unauthorized",
    );
    assert_error(
        send(batch.clone(), Some("s3cret-on")).await,
        unauthorized,
        "unauthorized",
    );
    assert_error(
        send(batch.clone(), Some("S3CRET-ONE")).await,
        unauthorized,
        "unauthorized",
    );
    let detail = assert_error(
        send(
            json!([post("h:9", "fine"), {"id": "h:10", "channel": "c"}, post("h:11", "  ")]),
            Some("s3cret-two"),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_posts",
    );
    assert!(
        detail.starts_with("2 of the posts are not valid"),
        "{detail}"
    );
    assert!(
        detail.contains("post 1:") && detail.contains("post 2:"),
        "{detail}"
    );
    let six: Vec<Value> = (0..6).map(|i| post(&format!("x:{i}"), "text")).collect();
    assert_error(
        send(json!(six), Some("s3cret-one")).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_error(
        send(json!({"not": "an array"}), Some("s3cret-one")).await,
        StatusCode::BAD_REQUEST,
        "bad_body",
    );

    assert_eq!(
        send(batch.clone(), Some("s3cret-two")).await,
        (StatusCode::ACCEPTED, json!({"accepted": 3}))
    );
    // Only the accepted request reached the topic, keyed by id, posts unchanged.
    let topic = api.raw_topic.clone();
    let published = tokio::task::spawn_blocking(move || records(&topic))
        .await
        .expect("read");
    let keys: Vec<&str> = published.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["h:1", "h:2", "h:3"]);
    for ((_, value), sent) in published.iter().zip(batch.as_array().expect("posts")) {
        let stored: Post = serde_json::from_value(value.clone()).expect("a post");
        let expected: Post = serde_json::from_value(sent.clone()).expect("a post");
        assert_eq!(stored, expected);
    }
}

/// A post that is valid but larger as a Kafka record than `kafka.max_record_bytes` (under
/// the body limit, through a large field of its own) is refused for good: 413 naming the
/// limit, and nothing published or dead-lettered, so a client that sends it again gets the
/// same answer and fills nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_larger_than_a_record_may_be_is_413_naming_the_limit() {
    let config = ApiConfig {
        tokens: vec!["t0ken".into()],
        ..ApiConfig::default()
    };
    let api = start("ingest-large", keywords_only(), config).await;
    let dlq = format!("{}.dlq", api.raw_topic);
    pulse_kafka::admin::create_topics(&kafka_config(1), &[&api.raw_topic, &dlq])
        .await
        .expect("topics created (is the stack running? scripts/stack start)");
    let large = json!([{
        "id": "h:large", "source": "http", "channel": "api/ingest", "text": "a short text",
        "created_at": "2026-11-24T10:00:00Z", "attachment": "x".repeat(1_040_000),
    }]);
    for _ in 0..2 {
        let detail = assert_error(
            api.call(
                reqwest::Method::POST,
                "/api/v1/posts",
                Some(large.clone()),
                Some("t0ken"),
            )
            .await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "record_too_large",
        );
        assert!(
            detail.starts_with(
                "1 of the posts are larger as a Kafka record than the limit of 1000000 bytes \
                 (kafka.max_record_bytes), nothing was published: post 0 (h:large) is 1040"
            ) && detail.ends_with(" bytes"),
            "{detail}"
        );
    }
    let raw_topic = api.raw_topic.clone();
    let (raw, dead) = tokio::task::spawn_blocking(move || (records(&raw_topic), records(&dlq)))
        .await
        .expect("read");
    assert_eq!((raw.len(), dead.len()), (0, 0), "{raw:?} {dead:?}");
}
