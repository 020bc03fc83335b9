//! The API under test: fresh stores holding known posts, served on a free port, and the
//! helpers the route tests share.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use prometheus_client::registry::Registry;
use pulse_api::{ApiMetrics, ApiState, Telemetry};
use pulse_batch::{schema, BatchStore};
use pulse_core::config::{ApiConfig, BatchConfig, EnrichConfig};
use pulse_core::{EnrichedPost, SentimentLabel};
use pulse_nlp::Enricher;
use pulse_pipeline::publish::Publisher;
use pulse_pipeline::PipelineMetrics;
use pulse_speed::SpeedLayer;
use pulse_testkit::{kafka_config, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const ALPHA: &str = "api/alpha";
pub const BETA: &str = "api/beta";

pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    /// What was stored, newest first per channel.
    pub alpha: Vec<EnrichedPost>,
    pub beta: Vec<EnrichedPost>,
    /// The test's keyspace.
    pub batch_config: BatchConfig,
    /// The stores behind the API, to add what a test needs.
    pub speed: SpeedLayer,
    pub batch: BatchStore,
    /// Where `POST /api/v1/posts` publishes (created by the tests that use it).
    pub raw_topic: String,
}

impl Api {
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
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
    pub async fn call(
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

    pub async fn post(
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

/// Post `index` of `channel`: labels cycle positive, neutral, negative; every post has the
/// keyword `rust`, every second one `kafka` too; every fourth is in Spanish, so that the
/// language counts and filters have two values.
pub fn post(channel: &str, index: usize, created_at: DateTime<Utc>) -> EnrichedPost {
    let label = [
        SentimentLabel::Positive,
        SentimentLabel::Neutral,
        SentimentLabel::Negative,
    ][index % 3];
    let score = [0.8, 0.0, -0.6][index % 3];
    let post = pulse_testkit::post(format!("{channel}:{index}"), channel, created_at)
        .source("file")
        .author(format!("user{index}"))
        .text(format!("post {index} of {channel}"))
        .lang(Some(if index % 4 == 3 { "es" } else { "en" }))
        .sentiment(label, score)
        .emotion("joy", 0.5)
        .keyword("rust");
    let post = if index.is_multiple_of(2) {
        post.keyword("kafka")
    } else {
        post
    };
    post.enriched()
}

/// Starts the API over fresh stores holding 24 posts of `ALPHA` from the last 3 minutes
/// and 5 of `BETA` from half an hour ago, with `enricher` for `/analyze`.
pub async fn start(test: &str, enricher: Enricher, api: ApiConfig) -> Api {
    let speed = SpeedLayer::connect(&pulse_testkit::speed_config(test)).expect("redis client");
    let batch_config = pulse_testkit::batch_config(test);
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
pub async fn serve(state: ApiState) -> String {
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

/// The producers' publisher into `raw_topic` (its DLQ next to it); the producer connects
/// on first use, so the topics need to exist only for tests that publish.
pub fn publisher(raw_topic: &str) -> Publisher {
    Publisher {
        producer: pulse_kafka::create_producer(&kafka_config(1)).expect("producer"),
        raw_topic: raw_topic.to_string(),
        dlq_topic: format!("{raw_topic}.dlq"),
        limits: EnrichConfig::default().post_limits(),
        max_in_flight: 100,
        max_record_bytes: 1_000_000,
        metrics: PipelineMetrics::register(&mut Registry::default()).for_stage("test"),
    }
}

/// Every (key, JSON value) of partition 0 of `topic`, up to its high watermark.
pub fn records(topic: &str) -> Vec<(String, Value)> {
    let consumer: BaseConsumer = pulse_kafka::consumer_config(&kafka_config(1), "unused")
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
pub fn telemetry() -> Telemetry {
    let mut registry = Registry::default();
    let metrics = ApiMetrics::register(&mut registry);
    Telemetry {
        metrics,
        registry: Arc::new(registry),
    }
}

pub fn keywords_only() -> Enricher {
    Enricher::with_models(&EnrichConfig::default(), &[]).expect("enricher")
}

pub fn shipped_model() -> Enricher {
    Enricher::with_models(&EnrichConfig::default(), &[pulse_testkit::shipped_model()])
        .expect("the shipped model loads")
}

pub fn ids(posts: &Value) -> Vec<String> {
    posts
        .as_array()
        .expect("posts")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_string())
        .collect()
}

pub fn assert_error(response: (StatusCode, Value), status: StatusCode, code: &str) -> String {
    let (got, body) = response;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"], code, "{body}");
    body["detail"]
        .as_str()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| panic!("a detail in {body}"))
        .to_string()
}

pub async fn write(batch: &BatchStore, posts: &[EnrichedPost]) {
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
