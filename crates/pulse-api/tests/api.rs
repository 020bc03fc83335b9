//! The query API against the real local Redis and CQL server (`PULSE_TEST_REDIS_URL`,
//! `PULSE_TEST_CQL_NODES`), served on a free port and called over HTTP. Each test has its
//! own Redis key prefix and keyspace.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use futures::StreamExt;
use prometheus_client::registry::Registry;
use pulse_api::{ApiMetrics, ApiState, Telemetry};
use pulse_batch::{schema, BatchStore};
use pulse_core::config::{ApiConfig, BatchConfig, EnrichConfig, KafkaConfig, SpeedConfig};
use pulse_core::{EnrichedPost, Enrichment, Granularity, Keyword, Post, Sentiment, SentimentLabel};
use pulse_nlp::Enricher;
use pulse_pipeline::publish::Publisher;
use pulse_pipeline::PipelineMetrics;
use pulse_speed::SpeedLayer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const ALPHA: &str = "api/alpha";
const BETA: &str = "api/beta";

struct Api {
    base: String,
    client: reqwest::Client,
    /// What was stored, newest first per channel.
    alpha: Vec<EnrichedPost>,
    beta: Vec<EnrichedPost>,
    /// The test's keyspace.
    batch_config: BatchConfig,
    /// The stores behind the API, to add what a test needs.
    speed: SpeedLayer,
    batch: BatchStore,
    /// Where `POST /api/v1/posts` publishes (created by the tests that use it).
    raw_topic: String,
}

impl Api {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    /// `method path` with an optional JSON body and bearer token.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn post(
        &self,
        path: &str,
        body: reqwest::Body,
        content_type: &str,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }
}

fn unique(test: &str) -> String {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{test}_{}_{nanos}", std::process::id())
}

fn speed_config(test: &str) -> SpeedConfig {
    SpeedConfig {
        redis_url: std::env::var("PULSE_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        key_prefix: format!("pulse-test:{}", unique(test)),
        ..SpeedConfig::default()
    }
}

fn post(channel: &str, index: usize, created_at: DateTime<Utc>) -> EnrichedPost {
    let label = [
        SentimentLabel::Positive,
        SentimentLabel::Neutral,
        SentimentLabel::Negative,
    ][index % 3];
    let score = [0.8, 0.0, -0.6][index % 3];
    let mut keywords = vec![Keyword {
        term: "rust".into(),
        score: 0.9,
    }];
    if index.is_multiple_of(2) {
        keywords.push(Keyword {
            term: "kafka".into(),
            score: 0.5,
        });
    }
    let post = Post {
        id: format!("{channel}:{index}"),
        source: "file".into(),
        channel: channel.into(),
        author: Some(format!("user{index}")),
        text: format!("post {index} of {channel}"),
        created_at,
        url: None,
        // Every fourth post is in Spanish: the language counts and filters have two values.
        lang: Some(if index % 4 == 3 { "es" } else { "en" }.into()),
        parent_id: None,
        meta: Default::default(),
        extra: Default::default(),
    };
    let enrichment = Enrichment {
        sentiment: Some(Sentiment {
            label,
            score,
            probs: BTreeMap::new(),
        }),
        emotions: BTreeMap::from([("joy".to_string(), 0.5)]),
        entities: Vec::new(),
        keywords,
    };
    EnrichedPost::new(post, enrichment, "test@1".into(), created_at)
}

/// Starts the API over fresh stores holding 24 posts of `ALPHA` from the last 3 minutes
/// and 5 of `BETA` from half an hour ago, with `enricher` for `/analyze`.
async fn start(test: &str, enricher: Enricher, api: ApiConfig) -> Api {
    let speed = SpeedLayer::connect(&speed_config(test)).expect("redis client");
    let batch_config = BatchConfig {
        nodes: std::env::var("PULSE_TEST_CQL_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into()),
        keyspace: format!("t_{}", unique(test)),
        ..BatchConfig::default()
    };
    schema::apply(&batch_config)
        .await
        .expect("schema applied (is the stack running? scripts/stack start)");
    let batch = BatchStore::connect(&batch_config).await.expect("connected");

    let now = Utc::now();
    let alpha: Vec<EnrichedPost> = (0..24)
        .map(|i| post(ALPHA, i, now - Duration::seconds(8 * i as i64 + 1)))
        .collect();
    let beta: Vec<EnrichedPost> = (0..5)
        .map(|i| {
            post(
                BETA,
                i,
                now - Duration::minutes(30) - Duration::seconds(i as i64),
            )
        })
        .collect();
    let all: Vec<EnrichedPost> = alpha.iter().chain(&beta).cloned().collect();
    speed.apply(&all).await.expect("applied to the speed layer");
    write(&batch, &all).await;

    let raw_topic = format!("test.api.{}.raw", unique(test));
    let state = ApiState::new(
        speed.clone(),
        batch.clone(),
        Arc::new(enricher),
        api,
        publisher(&raw_topic),
        CancellationToken::new(),
    )
    .with_telemetry(telemetry());
    Api {
        base: serve(state).await,
        client: reqwest::Client::new(),
        alpha,
        beta,
        batch_config,
        speed,
        batch,
        raw_topic,
    }
}

/// Serves the router on a free loopback port; returns its base URL.
async fn serve(state: ApiState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("bound address");
    tokio::spawn(async move {
        pulse_api::serve(listener, state)
            .await
            .expect("server runs");
    });
    format!("http://{address}")
}

fn kafka() -> KafkaConfig {
    KafkaConfig {
        brokers: std::env::var("PULSE_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        partitions: 1,
        ..KafkaConfig::default()
    }
}

/// The producers' publisher into `raw_topic` (its DLQ next to it); the producer connects
/// on first use, so the topics need to exist only for tests that publish.
fn publisher(raw_topic: &str) -> Publisher {
    Publisher {
        producer: pulse_kafka::create_producer(&kafka()).expect("producer"),
        raw_topic: raw_topic.to_string(),
        dlq_topic: format!("{raw_topic}.dlq"),
        limits: EnrichConfig::default().post_limits(),
        max_in_flight: 100,
        max_record_bytes: 1_000_000,
        metrics: PipelineMetrics::register(&mut Registry::default()).for_stage("test"),
    }
}

/// Every (key, JSON value) of partition 0 of `topic`, up to its high watermark.
fn records(topic: &str) -> Vec<(String, Value)> {
    let consumer: BaseConsumer = pulse_kafka::consumer_config(&kafka(), "unused")
        .create()
        .expect("consumer");
    let (_, end) = consumer
        .fetch_watermarks(topic, 0, std::time::Duration::from_secs(10))
        .expect("watermarks");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assigned");
    let mut found = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while (found.len() as i64) < end {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} stalled"
        );
        let Some(message) = consumer.poll(std::time::Duration::from_millis(500)) else {
            continue;
        };
        let message = message.expect("a record");
        let key = String::from_utf8(message.key().expect("a key").to_vec()).expect("utf-8 key");
        let value = serde_json::from_slice(message.payload().expect("a payload")).expect("JSON");
        found.push((key, value));
    }
    found
}

/// A registry of the API's metrics only.
fn telemetry() -> Telemetry {
    let mut registry = Registry::default();
    let metrics = ApiMetrics::register(&mut registry);
    Telemetry {
        metrics,
        registry: Arc::new(registry),
    }
}

fn keywords_only() -> Enricher {
    Enricher::with_models(&EnrichConfig::default(), &[]).expect("enricher")
}

fn shipped_model() -> Enricher {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(pulse_core::config::DEFAULT_MODEL);
    Enricher::with_models(&EnrichConfig::default(), &[dir]).expect("the shipped model loads")
}

fn ids(posts: &Value) -> Vec<String> {
    posts
        .as_array()
        .expect("posts")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_string())
        .collect()
}

fn assert_error(response: (StatusCode, Value), status: StatusCode, code: &str) -> String {
    let (got, body) = response;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"], code, "{body}");
    body["detail"]
        .as_str()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| panic!("a detail in {body}"))
        .to_string()
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_its_time_budget_is_stopped_with_a_json_error() {
    let config = ApiConfig {
        request_timeout_ms: 1,
        ..ApiConfig::default()
    };
    let api = start("budget", keywords_only(), config).await;
    // 80 days by hours read 1,920 buckets of rollups: far over a millisecond.
    let detail = assert_error(
        api.get(&format!(
            "/api/v1/history?channel={ALPHA}&from=now-80d&granularity=hour"
        ))
        .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
    );
    assert!(detail.contains("api.request_timeout_ms"), "{detail}");
    // Probes are outside the budget of /api/v1.
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_posts_page_newest_first_and_filter() {
    let api = start("posts", keywords_only(), ApiConfig::default()).await;
    let newest_first: Vec<String> = api.alpha.iter().map(|p| p.post.id.clone()).collect();

    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/api/v1/posts?channel={ALPHA}&from=now-1h&limit=7");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = api.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        paged.extend(ids(&page["posts"]));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, newest_first, "every post once, newest first");
    assert_eq!(pages, 4, "7 + 7 + 7 + 3");

    let (_, negative) = api
        .get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&sentiment=negative&limit=100"
        ))
        .await;
    let expected: Vec<String> = api
        .alpha
        .iter()
        .filter(|p| {
            p.enrichment.sentiment.as_ref().map(|s| s.label) == Some(SentimentLabel::Negative)
        })
        .map(|p| p.post.id.clone())
        .collect();
    assert_eq!(ids(&negative["posts"]), expected);
    assert_eq!(expected.len(), 8);
    let (_, spanish) = api
        .get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&lang=es&limit=100"
        ))
        .await;
    let expected: Vec<String> = api
        .alpha
        .iter()
        .filter(|p| p.post.lang.as_deref() == Some("es"))
        .map(|p| p.post.id.clone())
        .collect();
    assert_eq!(ids(&spanish["posts"]), expected);
    assert_eq!(expected.len(), 6);
    let (_, kafka) = api
        .get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&keyword=KAFKA&limit=100"
        ))
        .await;
    assert_eq!(ids(&kafka["posts"]).len(), 12);
    let (_, beta) = api
        .get(&format!(
            "/api/v1/posts?channel={BETA}&from=now-1h&to=now-10m"
        ))
        .await;
    assert_eq!(
        ids(&beta["posts"]),
        api.beta
            .iter()
            .map(|p| p.post.id.clone())
            .collect::<Vec<_>>()
    );

    // Without a channel, a keyword searches every channel: alpha's and beta's even posts,
    // newest first across both, paged.
    let mut everywhere: Vec<&EnrichedPost> = api
        .alpha
        .iter()
        .chain(&api.beta)
        .filter(|p| p.enrichment.keywords.iter().any(|k| k.term == "kafka"))
        .collect();
    everywhere.sort_by_key(|p| std::cmp::Reverse(p.post.created_at));
    let expected: Vec<String> = everywhere.iter().map(|p| p.post.id.clone()).collect();
    assert_eq!(expected.len(), 15);
    let (status, first) = api
        .get("/api/v1/posts?keyword=kafka&from=now-1h&limit=10")
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let (_, second) = api
        .get(&format!(
            "/api/v1/posts?keyword=kafka&from=now-1h&limit=10&cursor={cursor}"
        ))
        .await;
    assert!(second["next_cursor"].is_null());
    let mut paged = ids(&first["posts"]);
    paged.extend(ids(&second["posts"]));
    assert_eq!(paged, expected);
    for (query, needle) in [
        ("from=now-1h", "give channel"),
        ("from=now-1h&keyword=kafka&entity=person:x", "give channel"),
        ("from=now-1h&entity=Berlin", "kind:text"),
        (
            "from=now-1h&keyword=kafka&sentiment=negative",
            "give channel",
        ),
        ("from=now-1h&keyword=kafka&lang=es", "give channel"),
        (
            &format!("channel={ALPHA}&from=now-1h&lang=EN"),
            "language code",
        ),
    ] {
        let detail = assert_error(
            api.get(&format!("/api/v1/posts?{query}")).await,
            StatusCode::BAD_REQUEST,
            "bad_parameter",
        );
        assert!(detail.contains(needle), "{query}: {detail}");
    }

    let id = &api.alpha[5].post.id;
    let (status, one) = api
        .get(&format!("/api/v1/posts/{}", id.replace('/', "%2F")))
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    let stored: EnrichedPost = serde_json::from_value(one).expect("an enriched post");
    assert_eq!(stored, api.alpha[5]);

    let bad = StatusCode::BAD_REQUEST;
    assert_error(
        api.get("/api/v1/posts/no-such-post").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let detail = assert_error(
        api.get(&format!("/api/v1/posts?channel={ALPHA}&from=yesterday"))
            .await,
        bad,
        "bad_parameter",
    );
    assert!(detail.contains("from"), "{detail}");
    assert_error(
        api.get(&format!("/api/v1/posts?channel={ALPHA}")).await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&to=now-2h"
        ))
        .await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&limit=0"
        ))
        .await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&sentiment=happy"
        ))
        .await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&cursor=garbage"
        ))
        .await,
        bad,
        "bad_parameter",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_enriches_texts_in_order_and_refuses_bad_bodies() {
    let limits = ApiConfig {
        max_body_bytes: 4_096,
        max_analyze_texts: 3,
        ..ApiConfig::default()
    };
    let api = start("analyze", shipped_model(), limits).await;
    let body = json!({"texts": [
        "I love this, what a wonderful day!",
        "",
        "This is awful, I hate it so much.",
    ]});
    let (status, answer) = api
        .post(
            "/api/v1/analyze",
            body.to_string().into(),
            "application/json",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["model"], "pulse-minilm-multitask@1.0.0");
    let enrichments = answer["enrichments"].as_array().expect("enrichments");
    assert_eq!(enrichments.len(), 3);
    assert_eq!(enrichments[0]["sentiment"]["label"], "positive");
    assert_eq!(enrichments[1]["sentiment"], Value::Null, "nothing to read");
    assert_eq!(enrichments[2]["sentiment"]["label"], "negative");
    assert_eq!(
        enrichments[0]["emotions"].as_object().map(|e| e.len()),
        Some(7)
    );

    // The same texts through `Enricher::enrich` directly (what `pulse analyze` calls).
    let direct = shipped_model()
        .enrich(&["I love this, what a wonderful day!"])
        .expect("enriched");
    assert_eq!(
        enrichments[0]["keywords"],
        serde_json::to_value(&direct[0].keywords).unwrap()
    );

    let (status, empty) = api
        .post(
            "/api/v1/analyze",
            json!({"texts": []}).to_string().into(),
            "application/json",
        )
        .await;
    assert_eq!(
        (status, empty["enrichments"].clone()),
        (StatusCode::OK, json!([]))
    );

    let too_many = json!({"texts": ["a", "b", "c", "d"]}).to_string();
    let detail = assert_error(
        api.post("/api/v1/analyze", too_many.into(), "application/json")
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert!(detail.contains("at most 3 texts"), "{detail}");
    let oversized = json!({"texts": ["x".repeat(5_000)]}).to_string();
    assert_error(
        api.post("/api/v1/analyze", oversized.into(), "application/json")
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_error(
        api.post(
            "/api/v1/analyze",
            "{\"texts\": [".into(),
            "application/json",
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_body",
    );
    assert_error(
        api.post(
            "/api/v1/analyze",
            json!({"text": "x"}).to_string().into(),
            "application/json",
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_body",
    );
    assert_error(
        api.post(
            "/api/v1/analyze",
            json!({"texts": ["x"]}).to_string().into(),
            "text/plain",
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_is_a_503_naming_it() {
    let api = start("down", keywords_only(), ApiConfig::default()).await;
    // A second server over the same batch layer, with a Redis nobody listens on.
    let nowhere = SpeedConfig {
        redis_url: "redis://127.0.0.1:1".into(),
        ..speed_config("down")
    };
    let unreachable = SpeedLayer::connect(&nowhere).expect("lazy client");
    let state = ApiState::new(
        unreachable.clone(),
        api.batch.clone(),
        Arc::new(keywords_only()),
        ApiConfig::default(),
        publisher(&api.raw_topic),
        CancellationToken::new(),
    );
    let down = Api {
        base: serve(state).await,
        client: reqwest::Client::new(),
        alpha: Vec::new(),
        beta: Vec::new(),
        batch_config: api.batch_config.clone(),
        speed: unreachable,
        batch: api.batch.clone(),
        raw_topic: api.raw_topic.clone(),
    };
    let detail = assert_error(
        down.get("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert!(detail.contains("redis"), "{detail}");
    assert_error(
        down.get(&format!("/api/v1/live?channel={ALPHA}")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert_eq!(
        down.get("/healthz").await.0,
        StatusCode::OK,
        "alive while a store is down"
    );
    assert_eq!(api.get("/readyz").await.0, StatusCode::OK);
}

async fn write(batch: &BatchStore, posts: &[EnrichedPost]) {
    let json: Vec<String> = posts
        .iter()
        .map(|p| serde_json::to_string(p).expect("json"))
        .collect();
    let pairs: Vec<(&EnrichedPost, &str)> =
        posts.iter().zip(json.iter().map(String::as_str)).collect();
    batch
        .write(&pairs)
        .await
        .expect("written to the batch layer");
}

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

/// Reads server-sent events from `response` until `n` `post` events came; returns their ids.
async fn post_ids(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    n: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < n {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let kind = event.lines().find_map(|l| l.strip_prefix("event: "));
            let data = event.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some("post"), Some(data)) = (kind, data) {
                let post: Value = serde_json::from_str(data).expect("a post in data");
                ids.push(post["id"].as_str().expect("an id").to_string());
            }
        }
        if ids.len() >= n {
            break;
        }
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), body.next())
            .await
            .expect("an event within 30 s")
            .expect("the stream goes on")
            .expect("bytes");
        buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8 events"));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_the_backlog_then_new_posts_as_they_arrive() {
    let api = start("stream", keywords_only(), ApiConfig::default()).await;
    let open = |path: String| {
        let request = api.client.get(format!("{}{path}", api.base));
        async move {
            let response = request.send().await.expect("stream opened");
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                response.headers()["content-type"],
                "text/event-stream",
                "server-sent events"
            );
            response.bytes_stream()
        }
    };
    let mut alpha = open(format!("/api/v1/stream?channel={ALPHA}&backlog=2")).await;
    let mut every = open("/api/v1/stream".to_string()).await;
    let mut spanish = open(format!("/api/v1/stream?channel={ALPHA}&lang=es,pt")).await;
    let (mut alpha_buffer, mut every_buffer) = (String::new(), String::new());
    let mut spanish_buffer = String::new();

    // The two posts the feed got last (it is in arrival order: `start` applied alpha's
    // posts by index), in the order they arrived.
    let backlog = post_ids(&mut alpha, &mut alpha_buffer, 2).await;
    assert_eq!(
        backlog,
        [api.alpha[22].post.id.clone(), api.alpha[23].post.id.clone()]
    );

    let now = Utc::now();
    let fresh: Vec<EnrichedPost> = (100..104).map(|i| post(ALPHA, i, now)).collect();
    let elsewhere = post("api/delta", 200, now);
    api.speed.apply(&fresh).await.expect("applied");
    api.speed
        .apply(std::slice::from_ref(&elsewhere))
        .await
        .expect("applied");
    let fresh_ids: Vec<String> = fresh.iter().map(|p| p.post.id.clone()).collect();
    assert_eq!(post_ids(&mut alpha, &mut alpha_buffer, 4).await, fresh_ids);
    // Filtered by language: the English posts before it in the feed are not sent.
    assert_eq!(
        post_ids(&mut spanish, &mut spanish_buffer, 1).await,
        [fresh[3].post.id.clone()]
    );

    // Following every channel: alpha's new posts, and delta, a channel that appeared later.
    let mut seen = post_ids(&mut every, &mut every_buffer, 5).await;
    seen.sort();
    let mut expected = fresh_ids.clone();
    expected.push(elsewhere.post.id.clone());
    expected.sort();
    assert_eq!(seen, expected);

    assert_error(
        api.get(&format!("/api/v1/stream?channel={ALPHA}&backlog=1000"))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!("/api/v1/stream?channel={ALPHA}&lang=en,"))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_parameter",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_are_published_with_a_token_and_refused_without_one() {
    let config = ApiConfig {
        tokens: vec!["s3cret-one".into(), "s3cret-two".into()],
        max_ingest_posts: 5,
        ..ApiConfig::default()
    };
    let api = start("ingest", keywords_only(), config).await;
    pulse_kafka::admin::create_topics(
        &kafka(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_their_rate_get_429_and_cors_allows_configured_origins() {
    let config = ApiConfig {
        rate_limit_per_second: 1,
        rate_limit_burst: 3,
        cors_origins: vec!["https://dash.example".into()],
        ..ApiConfig::default()
    };
    let api = start("limits", keywords_only(), config).await;
    let channels = |origin: &'static str| {
        api.client
            .get(format!("{}/api/v1/channels", api.base))
            .header("origin", origin)
            .send()
    };
    for _ in 0..3 {
        let response = channels("https://dash.example").await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "https://dash.example"
        );
    }
    let refused = channels("https://elsewhere.example").await.expect("sent");
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the burst of 3 is spent"
    );
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "an origin not configured gets no CORS grant"
    );
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"], "rate_limited");
    // Probes are not limited.
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(api.get("/readyz").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_with_its_parameters() {
    let api = start("openapi", keywords_only(), ApiConfig::default()).await;
    let (status, document) = api.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{document}"
    );
    let paths: Vec<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        paths,
        [
            "/api/v1/admin/jobs/{id}",
            "/api/v1/admin/recompute",
            "/api/v1/admin/replay",
            "/api/v1/analyze",
            "/api/v1/channels",
            "/api/v1/history",
            "/api/v1/live",
            "/api/v1/posts",
            "/api/v1/posts/{id}",
            "/api/v1/stream",
            "/healthz",
            "/readyz",
        ]
    );
    let live = &document["paths"]["/api/v1/live"]["get"];
    let parameters: Vec<(&str, bool)> = live["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["required"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        parameters,
        [
            ("channel", true),
            ("window", false),
            ("top", false),
            ("series", false)
        ]
    );
    assert_eq!(
        live["parameters"][1]["schema"]["enum"],
        json!(["5m", "1h", "24h"])
    );
    assert!(document["paths"]["/api/v1/posts"]["post"]["security"].is_array());
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Every route the document names answers (none is a 404 of the fallback).
    for path in [
        "/api/v1/channels",
        "/api/v1/openapi.json",
        "/healthz",
        "/readyz",
    ] {
        assert_eq!(api.get(path).await.0, StatusCode::OK, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_route_template_and_status() {
    let api = start("metrics", keywords_only(), ApiConfig::default()).await;
    for _ in 0..3 {
        assert_eq!(
            api.get(&format!("/api/v1/live?channel={ALPHA}")).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        api.get("/api/v1/live?window=5m").await.0,
        StatusCode::BAD_REQUEST
    );
    for id in ["a", "b"] {
        assert_eq!(
            api.get(&format!("/api/v1/posts/{id}")).await.0,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(api.get("/nowhere").await.0, StatusCode::NOT_FOUND);

    let response = api
        .client
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("text");
    for line in [
        r#"pulse_http_requests_total{route="/api/v1/live",method="GET",status="200"} 3"#,
        r#"pulse_http_requests_total{route="/api/v1/live",method="GET",status="400"} 1"#,
        // Ids in paths do not make series: both unknown posts count under the template.
        r#"pulse_http_requests_total{route="/api/v1/posts/{id}",method="GET",status="404"} 2"#,
        r#"pulse_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        r#"pulse_http_request_seconds_count{route="/api/v1/live"} 4"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recompute_without_an_end_leaves_hours_still_receiving_posts_open() {
    let config = ApiConfig {
        tokens: vec!["admin-token".into()],
        ..ApiConfig::default()
    };
    let api = start("recompute_default", keywords_only(), config).await;
    let before = pulse_batch::settled_end(Utc::now());
    let (status, started) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/admin/recompute",
            Some(json!({})),
            Some("admin-token"),
        )
        .await;
    let after = pulse_batch::settled_end(Utc::now());
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let job = finished_job(&api, started["id"].as_u64().expect("an id"), "admin-token").await;
    assert_eq!(job["state"], "done", "{job}");
    let watermark: DateTime<Utc> =
        serde_json::from_value(job["report"]["watermark"].clone()).expect("a watermark");
    // The end the CLI takes too: the last hour that ended over 5 minutes ago.
    assert!(watermark == before || watermark == after, "{job}");
    assert!(watermark <= Granularity::Hour.floor(Utc::now()));
    assert!(
        Utc::now() - watermark > pulse_batch::RECOMPUTE_SETTLE,
        "{job}"
    );
    // Only the fixture's posts before the watermark are rolled up; the rest wait.
    let rolled = api
        .alpha
        .iter()
        .chain(&api.beta)
        .filter(|p| p.post.created_at < watermark)
        .count();
    assert_eq!(job["report"]["posts"], rolled, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recompute_job_runs_in_the_background_and_reports_its_outcome() {
    let config = ApiConfig {
        tokens: vec!["admin-token".into()],
        ..ApiConfig::default()
    };
    let api = start("admin", keywords_only(), config).await;
    let call = |method, path: &'static str, body, token| api.call(method, path, body, token);
    let post_method = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let unauthorized = StatusCode::UNAUTHORIZED;
    assert_error(
        call(
            post_method.clone(),
            "/api/v1/admin/recompute",
            Some(json!({})),
            None,
        )
        .await,
        unauthorized,
        "unauthorized",
    );
    assert_error(
        call(get.clone(), "/api/v1/admin/jobs/1", None, Some("wrong")).await,
        unauthorized,
        "unauthorized",
    );
    assert_error(
        call(
            post_method.clone(),
            "/api/v1/admin/recompute",
            Some(json!({"from": "last week"})),
            Some("admin-token"),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_parameter",
    );

    // Up to an explicit hour, so that the expected count does not move with the clock.
    let hour = Granularity::Hour.floor(Utc::now());
    // Three posts surely before the hour, next to the fixture's recent ones.
    let older: Vec<EnrichedPost> = (0..3)
        .map(|i| post("api/epsilon", i, hour - Duration::hours(2)))
        .collect();
    write(&api.batch, &older).await;
    let expected = api
        .alpha
        .iter()
        .chain(&api.beta)
        .chain(&older)
        .filter(|p| p.post.created_at < hour)
        .count();
    assert!(expected >= 3);
    let body = json!({"to": hour.to_rfc3339_opts(SecondsFormat::Secs, true)});
    let (status, started) = call(
        post_method.clone(),
        "/api/v1/admin/recompute",
        Some(body),
        Some("admin-token"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["kind"], "recompute");
    let id = started["id"].as_u64().expect("an id");
    let job = finished_job(&api, id, "admin-token").await;
    assert_eq!(job["state"], "done", "{job}");
    // Every post of the test's keyspace before the hour is read.
    assert_eq!(job["report"]["posts"], expected, "{job}");
    assert_eq!(job["progress"]["days_done"], job["progress"]["days_total"]);
    assert_eq!(job["request"]["to"], json!(hour));
    let watermark: DateTime<Utc> =
        serde_json::from_value(job["report"]["watermark"].clone()).expect("a watermark");
    assert_eq!(watermark, hour);
    assert!(job["finished_at"].is_string());
    // The watermark gauge (what the stale-rollups alert reads) follows within its refresh.
    let gauge = format!(
        "pulse_batch_watermark_timestamp_seconds {:?}",
        hour.timestamp() as f64
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let metrics = api
            .client
            .get(format!("{}/metrics", api.base))
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("text");
        if metrics.lines().any(|line| line == gauge) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{gauge} not in\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    assert_error(
        call(
            get.clone(),
            "/api/v1/admin/jobs/999",
            None,
            Some("admin-token"),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        call(get, "/api/v1/admin/jobs/x", None, Some("admin-token")).await,
        StatusCode::BAD_REQUEST,
        "bad_parameter",
    );
}

/// Polls a job until it is no longer running.
async fn finished_job(api: &Api, id: u64, token: &str) -> Value {
    let path = format!("/api/v1/admin/jobs/{id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, job) = api
            .call(reqwest::Method::GET, &path, None, Some(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if job["state"] != "running" {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job still running: {job}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_job_reads_a_topic_range_into_a_stage() {
    let api = start("replay", keywords_only(), ApiConfig::default()).await;
    let enriched = format!("test.api.{}.enriched", unique("replay"));
    let dlq = format!("{enriched}.dlq");
    pulse_kafka::admin::create_topics(&kafka(), &[&enriched, &dlq])
        .await
        .expect("topics created (is the stack running? scripts/stack start)");
    let channel = "api/replayed";
    let now = Utc::now();
    let producer = pulse_kafka::create_producer(&kafka()).expect("producer");
    for i in 0..6 {
        let payload =
            serde_json::to_vec(&post(channel, i, now - Duration::seconds(i as i64))).expect("json");
        let key = format!("{channel}:{i}");
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&enriched)
                    .key(&key)
                    .payload(&payload),
                std::time::Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produced");
    }

    // A server that can replay into the speed layer only (no batch layer given).
    let mut kafka = kafka();
    kafka.topics.enriched = enriched.clone();
    kafka.topics.dlq = dlq.clone();
    let pulse = pulse_core::PulseConfig {
        kafka,
        ..pulse_core::PulseConfig::default()
    };
    let replayer = pulse_pipeline::replay::Replayer::new(
        &pulse,
        PipelineMetrics::register(&mut Registry::default()),
        pulse_kafka::create_producer(&pulse.kafka).expect("producer"),
    )
    .with_speed(api.speed.clone());
    let state = ApiState::new(
        api.speed.clone(),
        api.batch.clone(),
        Arc::new(keywords_only()),
        ApiConfig {
            tokens: vec!["admin-token".into()],
            ..ApiConfig::default()
        },
        publisher(&api.raw_topic),
        CancellationToken::new(),
    )
    .with_replayer(replayer);
    let api = Api {
        base: serve(state).await,
        ..api
    };
    let replay = |body: Value, token: Option<&'static str>| {
        api.call(
            reqwest::Method::POST,
            "/api/v1/admin/replay",
            Some(body),
            token,
        )
    };
    let token = Some("admin-token");

    assert_error(
        replay(json!({"into": "sink-speed", "from_offset": 0}), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    for bad in [
        json!({"into": "nowhere", "from_offset": 0}),
        json!({"into": "sink-speed"}),
        json!({"into": "sink-speed", "from_offset": 0, "from_time": "now-1h"}),
        json!({"into": "sink-speed", "from_time": "yesterday"}),
        json!({"into": "sink-speed", "from_time": "now", "to_time": "now-1h"}),
        json!({"into": "sink-speed", "from_offset": {"zero": 1}}),
    ] {
        assert_error(
            replay(bad, token).await,
            StatusCode::BAD_REQUEST,
            "bad_parameter",
        );
    }
    assert_error(
        replay(
            json!({"into": "sink-speed", "from_offset": 0, "extra": true}),
            token,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_body",
    );
    let detail = assert_error(
        replay(
            json!({"into": "sink-speed", "topic": "test.api.no-such-topic", "from_offset": 0}),
            token,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert!(detail.contains("does not exist"), "{detail}");
    let detail = assert_error(
        replay(json!({"into": "sink-batch", "from_offset": 0}), token).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert!(detail.contains("batch layer"), "{detail}");

    // The last four records of the topic, then all of it: each post counted once.
    let (status, job) = replay(json!({"into": "sink-speed", "from_offset": -4}), token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["kind"], "replay");
    assert_eq!(job["request"]["topic"], enriched.as_str());
    assert_eq!(
        job["request"]["spans"],
        json!([{"partition": 0, "from": 2, "to": 6}])
    );
    let done = finished_job(&api, job["id"].as_u64().expect("id"), "admin-token").await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["report"]["replayed"], 4);
    assert_eq!(done["progress"]["replayed"], 4);
    let live = format!("/api/v1/live?channel={channel}");
    assert_eq!(api.get(&live).await.1["totals"]["count"], 4);

    // Per partition, as a stopped job's resume_at: only offset 5 on.
    let (status, job) = replay(
        json!({"into": "sink-speed", "from_offset": {"0": 5}}),
        token,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(
        job["request"]["spans"],
        json!([{"partition": 0, "from": 5, "to": 6}])
    );
    let done = finished_job(&api, job["id"].as_u64().expect("id"), "admin-token").await;
    assert_eq!(done["report"]["replayed"], 1, "{done}");
    assert_eq!(done["report"]["resume_at"], json!({"0": 6}));
    assert_eq!(api.get(&live).await.1["totals"]["count"], 4);

    let (status, job) = replay(json!({"into": "speed", "from_time": "now-1d"}), token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let done = finished_job(&api, job["id"].as_u64().expect("id"), "admin-token").await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["report"]["replayed"], 6);
    assert_eq!(done["report"]["dead_lettered"], 0);
    assert_eq!(api.get(&live).await.1["totals"]["count"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_at_the_root() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = ApiConfig {
        dashboard_dir: repo.join("dashboards/live"),
        ..ApiConfig::default()
    };
    let api = start("dashboard", keywords_only(), config).await;
    for (path, content_type, contains) in [
        ("/", "text/html", "<title>Pulse"),
        ("/app.js", "text/javascript", "api/v1"),
        ("/style.css", "text/css", ".post"),
        ("/vendor/echarts.min.js", "text/javascript", "echarts"),
    ] {
        let response = api
            .client
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .expect("sent");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{path} (is ECharts installed? scripts/setup)"
        );
        let served = response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_string();
        assert!(served.starts_with(content_type), "{path}: {served}");
        let body = response.text().await.expect("text");
        assert!(body.contains(contains), "{path}");
    }
    // The rest of the directory is not served.
    for path in [
        "/package.json",
        "/test/browser.mjs",
        "/node_modules/echarts/package.json",
    ] {
        assert_error(api.get(path).await, StatusCode::NOT_FOUND, "not_found");
    }

    let elsewhere = tempfile_dir();
    let missing = start(
        "dashboard_missing",
        keywords_only(),
        ApiConfig {
            dashboard_dir: elsewhere.clone(),
            ..ApiConfig::default()
        },
    )
    .await;
    let detail = assert_error(missing.get("/").await, StatusCode::NOT_FOUND, "not_found");
    assert!(
        detail.contains("the dashboard is not installed"),
        "{detail}"
    );
    assert!(detail.contains("index.html"), "{detail}");
}

/// A directory that does not exist (no dashboard there).
fn tempfile_dir() -> PathBuf {
    std::env::temp_dir().join(format!("pulse-no-dashboard-{}", unique("dir")))
}

/// Reads `socket` until the server closes it (EOF or reset); false if still open after
/// `within`.
async fn closed_within(socket: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(within, async {
        while let Ok(n) = socket.read(&mut buffer).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_surplus_clients_are_bounded() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let config = ApiConfig {
        header_timeout_ms: 1_000,
        max_connections: 3,
        max_streams: 1,
        ..ApiConfig::default()
    };
    let api = start("limits", keywords_only(), config).await;
    let address = api.base.trim_start_matches("http://").to_string();
    let ten_seconds = std::time::Duration::from_secs(10);

    // Headers that never end (slowloris): the connection is closed.
    let mut slow = TcpStream::connect(&address).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: pulse\r\nX-Slow: 1\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut slow, ten_seconds).await,
        "slow headers kept open"
    );

    // A kept-alive connection left idle after its request is closed too.
    let mut idle = TcpStream::connect(&address).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: pulse\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut idle, ten_seconds).await,
        "idle connection kept open"
    );

    // Three connections fill the server: a fourth client is answered only once one of
    // them has been closed for its silence.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(&address).await.expect("connect"));
    }
    // A new client, so no pooled connection is reused.
    let answer = reqwest::get(format!("{}/healthz", api.base))
        .await
        .expect("answered");
    assert_eq!(answer.status(), StatusCode::OK);
    let mut closed = 0;
    for socket in &mut silent {
        if closed_within(socket, std::time::Duration::from_millis(1)).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 1,
        "the fourth client was served while three connections were open"
    );

    // One event stream at most: the second gets 503 while the first is open.
    let first = api
        .client
        .get(format!("{}/api/v1/stream", api.base))
        .send()
        .await
        .expect("stream opens");
    assert_eq!(first.status(), StatusCode::OK);
    let detail = assert_error(
        api.get("/api/v1/stream").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert!(detail.contains("api.max_streams"), "{detail}");
    drop(first);
}
