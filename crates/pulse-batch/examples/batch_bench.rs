//! Batch-layer benchmark against a real CQL server (`PULSE_BENCH_CQL_NODES`, default the
//! local stack's): rows/s and posts/s written by the sink's write path, next to the raw
//! prepared-insert rate of the driver measured in the same run (same concurrency, rows of a
//! post's size); then a recompute of what was written, and paged range reads.
//!
//! Run: `scripts/bench-batch` (or `cargo run --release -p pulse-batch --example batch_bench`).
//! `PULSE_BENCH_POSTS` sets the number of posts (default 20,000 over 3 channels and 24 h).

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{stream, StreamExt, TryStreamExt};
use pulse_batch::{schema, BatchStore, PostQuery};
use pulse_core::config::{BatchConfig, PipelineConfig};
use pulse_core::{
    EnrichedPost, Enrichment, Entity, EntityKind, Granularity, Keyword, Post, Sentiment,
    SentimentLabel,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scylla::client::session_builder::SessionBuilder;

const CHANNELS: usize = 3;
const EMOTIONS: [&str; 7] = [
    "anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral",
];

fn posts(n: usize, end: chrono::DateTime<Utc>) -> Vec<EnrichedPost> {
    let mut rng = StdRng::seed_from_u64(1);
    (0..n)
        .map(|i| {
            let label = [
                SentimentLabel::Negative,
                SentimentLabel::Neutral,
                SentimentLabel::Positive,
            ][rng.random_range(0..3)];
            // Zipf-like vocabulary of 2,000 terms and 300 entities.
            let mut term = |size: f64| (rng.random_range(0.0f64..1.0).powi(3) * size) as usize;
            let keywords = (0..5)
                .map(|_| Keyword {
                    term: format!("term{}", term(2_000.0)),
                    score: 0.5,
                })
                .collect();
            let entities = (0..2)
                .map(|_| Entity {
                    text: format!("Name{}", term(300.0)),
                    kind: EntityKind::Organization,
                    start: 0,
                    end: 1,
                    score: 0.9,
                })
                .collect();
            let emotions = EMOTIONS
                .iter()
                .map(|e| (e.to_string(), rng.random_range(0.0f32..1.0)))
                .collect();
            let post = Post {
                id: format!("bench:{i}"),
                source: "synthetic".into(),
                channel: format!("bench/{}", i % CHANNELS),
                author: Some(format!("user{}", rng.random_range(0..5_000))),
                text: "Benchmarking the batch layer with a post of realistic length, about \
                       twenty words or so. #bench"
                    .into(),
                created_at: end - chrono::Duration::seconds(rng.random_range(1..=86_400)),
                url: None,
                lang: Some("en".into()),
                parent_id: None,
                meta: Default::default(),
                extra: Default::default(),
            };
            let sentiment = Some(Sentiment {
                label,
                score: rng.random_range(-1.0f32..1.0),
                probs: Default::default(),
            });
            EnrichedPost::new(
                post,
                Enrichment {
                    sentiment,
                    emotions,
                    entities,
                    keywords,
                },
                "bench@1".into(),
                end,
            )
        })
        .collect()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let nodes = std::env::var("PULSE_BENCH_CQL_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into());
    let n: usize = std::env::var("PULSE_BENCH_POSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let config = BatchConfig {
        nodes: nodes.clone(),
        keyspace: format!("bench_{}_{}", std::process::id(), Utc::now().timestamp()),
        ..BatchConfig::default()
    };
    let batch_size = PipelineConfig::default().batch_size;
    schema::apply(&config).await?;
    let store = BatchStore::connect(&config).await?;
    let end = Granularity::Hour.floor(Utc::now());
    let posts = posts(n, end);
    let json: Vec<String> = posts
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()?;
    let average_json = json.iter().map(String::len).sum::<usize>() / n.max(1);

    // The sink's write path, batch by batch as `pulse sink batch` hands them over.
    let started = Instant::now();
    let mut rows = 0;
    for (posts, json) in posts.chunks(batch_size).zip(json.chunks(batch_size)) {
        let pairs: Vec<(&EnrichedPost, &str)> =
            posts.iter().zip(json.iter().map(String::as_str)).collect();
        rows += store.write(&pairs).await?.rows;
    }
    let sink_seconds = started.elapsed().as_secs_f64();

    // Baseline: the driver's raw prepared inserts, same concurrency, rows of a post's size.
    let session = SessionBuilder::new().known_node(&nodes).build().await?;
    let table = format!("{}.baseline", config.keyspace);
    session
        .query_unpaged(
            format!("CREATE TABLE IF NOT EXISTS {table} (id text, body text, PRIMARY KEY (id))"),
            &[],
        )
        .await?;
    let insert = session
        .prepare(format!("INSERT INTO {table} (id, body) VALUES (?, ?)"))
        .await?;
    let body = "x".repeat(average_json);
    let started = Instant::now();
    let inserts: Vec<_> = (0..rows)
        .map(|i| session.execute_unpaged(&insert, (format!("row{i}"), body.as_str())))
        .collect();
    stream::iter(inserts)
        .buffer_unordered(config.max_concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let raw_rate = rows as f64 / started.elapsed().as_secs_f64();

    // Recompute of the day written.
    let started = Instant::now();
    let report = store
        .recompute(Some(end - chrono::Duration::hours(24)), end, &|_| {})
        .await?;
    let recompute_seconds = started.elapsed().as_secs_f64();

    // Paged reads: the newest 100 posts of a channel over 24 h.
    let mut latencies = Vec::new();
    for i in 0..300 {
        let started = Instant::now();
        store
            .posts(&PostQuery {
                channel: format!("bench/{}", i % CHANNELS),
                from: end - chrono::Duration::hours(24),
                to: end,
                sentiment: None,
                entity: None,
                keyword: None,
                lang: None,
                limit: 100,
                cursor: None,
            })
            .await?;
        latencies.push(started.elapsed());
    }

    println!(
        "batch layer benchmark: {n} posts ({average_json} bytes of JSON each) over {CHANNELS} \
         channels and 24 h, {nodes}, {} writes in flight",
        config.max_concurrency
    );
    println!("  raw prepared INSERT (baseline, same run): {raw_rate:>9.0} rows/s",);
    println!(
        "  sink write path (batches of {batch_size}):      {:>9.0} rows/s = {:.0} posts/s \
         ({:.1} rows per post: by channel, by id, mentions, registry)",
        rows as f64 / sink_seconds,
        n as f64 / sink_seconds,
        rows as f64 / n as f64
    );
    println!(
        "  recompute: {} posts, {} channel-days, {} hours in {recompute_seconds:.2} s = {:.0} posts/s",
        report.posts,
        report.channel_days,
        report.hours,
        report.posts as f64 / recompute_seconds
    );
    println!(
        "  newest 100 posts of a channel over 24 h: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&mut latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&mut latencies, 0.99).as_secs_f64() * 1e3
    );
    Ok(())
}
