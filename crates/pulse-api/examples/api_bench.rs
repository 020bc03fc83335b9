//! Query API benchmark on loopback: `wrk` against `GET /api/v1/live` of a channel with 24 h
//! of speed-layer data (5 min; 24 h with its per-minute series; 24 h by hours), next to
//! `GET /healthz` (no store work) measured in the same run; requests/s and latency
//! percentiles of each.
//!
//! Run: `scripts/bench-api` (installs wrk; needs the local stack). `PULSE_BENCH_POSTS`
//! (default 40,000 over 24 h), `PULSE_BENCH_SECONDS` per measurement (default 10) and
//! `PULSE_BENCH_CONNECTIONS` (default 8) adjust it. The rate limit is off for the run.

use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{Duration, Utc};
use prometheus_client::registry::Registry;
use pulse_api::ApiState;
use pulse_batch::{schema, BatchStore};
use pulse_core::config::{ApiConfig, BatchConfig, EnrichConfig, KafkaConfig, SpeedConfig};
use pulse_core::{
    EnrichedPost, Enrichment, Entity, EntityKind, Keyword, Post, Sentiment, SentimentLabel,
};
use pulse_nlp::Enricher;
use pulse_pipeline::publish::Publisher;
use pulse_pipeline::PipelineMetrics;
use pulse_speed::SpeedLayer;
use tokio_util::sync::CancellationToken;

const CHANNEL: &str = "bench/api";
const TERMS: [&str; 12] = [
    "rust",
    "kafka",
    "redis",
    "latency",
    "release",
    "dashboard",
    "tokio",
    "scylla",
    "stream",
    "window",
    "rollup",
    "replay",
];

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name} is not a number")),
        Err(_) => Ok(default),
    }
}

/// `n` enriched posts spread evenly over the last 24 hours.
fn posts(n: u64) -> Vec<EnrichedPost> {
    let now = Utc::now();
    (0..n)
        .map(|i| {
            let created_at = now - Duration::milliseconds((i * 86_400_000 / n.max(1)) as i64);
            let label = [
                SentimentLabel::Negative,
                SentimentLabel::Neutral,
                SentimentLabel::Positive,
            ][(i % 3) as usize];
            let keywords = (0..4)
                .map(|k| Keyword {
                    term: TERMS[((i * 7 + k * 5) % TERMS.len() as u64) as usize].into(),
                    score: 0.5,
                })
                .collect();
            let entities = vec![Entity {
                text: format!("Name{}", i % 40),
                kind: EntityKind::Person,
                start: 0,
                end: 6,
                score: 0.9,
            }];
            let post = Post {
                id: format!("bench:{i}"),
                source: "synthetic".into(),
                channel: CHANNEL.into(),
                author: None,
                text: "a post of the API benchmark".into(),
                created_at,
                url: None,
                lang: Some("en".into()),
                parent_id: None,
                meta: Default::default(),
                extra: Default::default(),
            };
            let enrichment = Enrichment {
                sentiment: Some(Sentiment {
                    label,
                    score: [-0.7, 0.0, 0.8][(i % 3) as usize],
                    probs: Default::default(),
                }),
                emotions: [("joy", 0.4), ("anger", 0.1), ("neutral", 0.5)]
                    .into_iter()
                    .map(|(e, p)| (e.to_string(), p))
                    .collect(),
                entities,
                keywords,
            };
            EnrichedPost::new(post, enrichment, "bench@1".into(), created_at)
        })
        .collect()
}

/// Requests/s and the latency percentiles wrk printed.
struct Measurement {
    requests_per_second: String,
    percentiles: Vec<(String, String)>,
}

fn wrk(url: &str, seconds: u64, connections: u64) -> anyhow::Result<Measurement> {
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .output()
        .context("cannot run wrk (scripts/bench-api installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if text.contains("Non-2xx") {
        bail!("some responses were errors:\n{text}");
    }
    let requests_per_second = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let percentiles = text
        .lines()
        .skip_while(|l| !l.contains("Latency Distribution"))
        .skip(1)
        .take(4)
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect();
    Ok(Measurement {
        requests_per_second,
        percentiles,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = env_number("PULSE_BENCH_POSTS", 40_000)?;
    let seconds = env_number("PULSE_BENCH_SECONDS", 10)?;
    let connections = env_number("PULSE_BENCH_CONNECTIONS", 8)?;
    let tag = format!("{}_{}", std::process::id(), Utc::now().timestamp());

    let speed = SpeedLayer::connect(&SpeedConfig {
        key_prefix: format!("pulse-bench:api:{tag}"),
        ..SpeedConfig::default()
    })?;
    let batch_config = BatchConfig {
        keyspace: format!("bench_api_{tag}"),
        ..BatchConfig::default()
    };
    schema::apply(&batch_config)
        .await
        .context("is the local stack running? scripts/stack start")?;
    let batch = BatchStore::connect(&batch_config).await?;

    let seeded = posts(n);
    for chunk in seeded.chunks(1_000) {
        speed.apply(chunk).await?;
    }
    println!("seeded {n} posts over 24 h into the speed layer for channel {CHANNEL}");

    let publisher = Publisher {
        producer: pulse_kafka::create_producer(&KafkaConfig::default())?,
        raw_topic: "bench.api.raw".into(),
        dlq_topic: "bench.api.dlq".into(),
        limits: EnrichConfig::default().post_limits(),
        max_in_flight: 100,
        max_record_bytes: 1_000_000,
        metrics: PipelineMetrics::register(&mut Registry::default()).for_stage("bench"),
    };
    let config = ApiConfig {
        rate_limit_per_second: 0,
        ..ApiConfig::default()
    };
    let shutdown = CancellationToken::new();
    let enricher = Enricher::with_models(&EnrichConfig::default(), &[])?;
    let state = ApiState::new(
        speed,
        batch,
        Arc::new(enricher),
        config,
        publisher,
        shutdown.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(pulse_api::serve(listener, state));

    println!(
        "wrk: 2 threads, {connections} connections, {seconds} s each, on loopback; {} cores \
         shared by wrk and the server",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let targets = [
        ("GET /healthz (baseline)", format!("{base}/healthz")),
        (
            "GET /api/v1/live 5m",
            format!("{base}/api/v1/live?channel={CHANNEL}&window=5m"),
        ),
        (
            "GET /api/v1/live 24h",
            format!("{base}/api/v1/live?channel={CHANNEL}&window=24h"),
        ),
        (
            "GET /api/v1/live 24h hourly",
            format!("{base}/api/v1/live?channel={CHANNEL}&window=24h&series=hour"),
        ),
    ];
    for (name, url) in targets {
        let measurement =
            tokio::task::spawn_blocking(move || wrk(&url, seconds, connections)).await??;
        let percentiles: Vec<String> = measurement
            .percentiles
            .iter()
            .map(|(p, v)| format!("p{} {v}", p.trim_end_matches('%')))
            .collect();
        println!(
            "{name:<26} {:>10} req/s   {}",
            measurement.requests_per_second,
            percentiles.join("  ")
        );
    }
    shutdown.cancel();
    server.await??;
    Ok(())
}
