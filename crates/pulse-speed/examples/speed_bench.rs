//! Speed-layer benchmark against a real Redis (`PULSE_BENCH_REDIS_URL`, default the local
//! one): posts/s applied, next to the raw pipelined INCR rate measured in the same run;
//! Redis memory per post and per channel-day by key kind; window read latency.
//!
//! Run: `scripts/bench-speed` (or `cargo run --release -p pulse-speed --example speed_bench`).
//! `PULSE_BENCH_POSTS` sets the number of posts (default 60,000 over 3 channels and 24 h).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use pulse_core::config::SpeedConfig;
use pulse_core::{
    EnrichedPost, Enrichment, Entity, EntityKind, Keyword, Post, Sentiment, SentimentLabel, Series,
};
use pulse_speed::{minute_of, SpeedLayer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHANNELS: usize = 3;
const EMOTIONS: [&str; 7] = [
    "anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral",
];

fn posts(n: usize) -> Vec<EnrichedPost> {
    let mut rng = StdRng::seed_from_u64(1);
    let now = Utc::now();
    (0..n)
        .map(|i| {
            let label = [SentimentLabel::Negative, SentimentLabel::Neutral, SentimentLabel::Positive][rng.random_range(0..3)];
            // Zipf-like vocabulary of 2,000 terms and 300 entities.
            let mut term = |size: f64| (rng.random_range(0.0f64..1.0).powi(3) * size) as usize;
            let keywords = (0..5).map(|_| Keyword { term: format!("term{}", term(2_000.0)), score: 0.5 }).collect();
            let entities = (0..2)
                .map(|_| Entity { text: format!("Name{}", term(300.0)), kind: EntityKind::Organization, start: 0, end: 1, score: 0.9 })
                .collect();
            let emotions = EMOTIONS.iter().map(|e| (e.to_string(), rng.random_range(0.0f32..1.0))).collect();
            let post = Post {
                id: format!("bench:{i}"),
                source: "synthetic".into(),
                channel: format!("bench/{}", i % CHANNELS),
                author: Some(format!("user{}", rng.random_range(0..5_000))),
                text: "Benchmarking the speed layer with a post of realistic length, about twenty words or so. #bench".into(),
                created_at: now - chrono::Duration::seconds(rng.random_range(0..86_400)),
                url: None,
                lang: Some("en".into()),
                parent_id: None,
                meta: Default::default(),
                extra: Default::default(),
            };
            let sentiment = Some(Sentiment { label, score: rng.random_range(-1.0f32..1.0), probs: Default::default() });
            EnrichedPost::new(post, Enrichment { sentiment, emotions, entities, keywords }, "bench@1".into(), now)
        })
        .collect()
}

fn kind_of(key: &str) -> &'static str {
    // Post ids contain ':' themselves, so look for the layout's markers, not the last part.
    if key.contains(":seen:") {
        "seen marks"
    } else if key.ends_with(":feed") {
        "feeds"
    } else if key.contains(":mk:") || key.contains(":me:") {
        "minute term sets"
    } else if key.contains(":hk:") || key.contains(":he:") {
        "hour term sets"
    } else if key.contains(":m:") {
        "minute counters"
    } else if key.contains(":h:") {
        "hour counters"
    } else {
        "registry"
    }
}

/// Redis commands the apply script runs for one post of this benchmark: SET NX, 4 counter
/// increments and 7 emotion sums into minute and hour counters, 5 keywords and 2 entities
/// into minute and hour sets, XADD, 7 EXPIREs.
const COMMANDS_PER_POST: f64 = 1.0 + 2.0 * (4.0 + 7.0) + 2.0 * 5.0 + 2.0 * 2.0 + 1.0 + 7.0;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url =
        std::env::var("PULSE_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let n: usize = std::env::var("PULSE_BENCH_POSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let prefix = format!("pulse-bench:{}", std::process::id());
    let client = redis::Client::open(url.as_str())?;
    let mut connection = client.get_multiplexed_async_connection().await?;

    // Baseline: raw pipelined INCR, 500 per round trip.
    let incrs = n * 20;
    let started = Instant::now();
    for chunk in (0..incrs).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("INCR")
                .arg(format!("{prefix}:incr:{}", i % 1_000))
                .ignore();
        }
        pipe.query_async::<()>(&mut connection).await?;
    }
    let incr_rate = incrs as f64 / started.elapsed().as_secs_f64();

    let layer = SpeedLayer::connect(&SpeedConfig {
        redis_url: url.clone(),
        key_prefix: prefix.clone(),
        ..SpeedConfig::default()
    })?;
    let posts = posts(n);
    let started = Instant::now();
    for batch in posts.chunks(500) {
        layer.apply(batch).await?;
    }
    let apply_rate = n as f64 / started.elapsed().as_secs_f64();

    // Memory by key kind.
    let mut bytes: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let keys: Vec<String> = {
        let mut keys = Vec::new();
        let mut iter: redis::AsyncIter<String> =
            redis::AsyncCommands::scan_match(&mut connection, format!("{prefix}:*")).await?;
        while let Some(key) = iter.next_item().await {
            keys.push(key?);
        }
        keys
    };
    for key in keys.iter().filter(|k| !k.contains(":incr:")) {
        let usage: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut connection)
            .await?;
        let entry = bytes.entry(kind_of(key)).or_default();
        entry.0 += 1;
        entry.1 += usage.unwrap_or(0);
    }
    let total: u64 = bytes.values().map(|(_, b)| b).sum();

    // Window reads, as a dashboard polling each channel would do.
    let end = minute_of(Utc::now()) + 1;
    let mut latencies = Vec::new();
    let windows = [
        ("5m", 5, 10, Series::Minute),
        ("1h", 60, 10, Series::Minute),
        ("24h", 1_440, 10, Series::Minute),
        ("24h without terms", 1_440, 0, Series::Minute),
        ("24h by hours", 1_440, 10, Series::Hour),
        ("24h totals only", 1_440, 0, Series::None),
    ];
    for (name, minutes, top, series) in windows {
        let mut samples = Vec::new();
        for i in 0..100 {
            let started = Instant::now();
            layer
                .window_with(
                    &format!("bench/{}", i % CHANNELS),
                    end - minutes,
                    end,
                    top,
                    series,
                )
                .await?;
            samples.push(started.elapsed());
        }
        latencies.push((
            name,
            (
                percentile(&mut samples, 0.5),
                percentile(&mut samples, 0.99),
            ),
        ));
    }

    // Clean up.
    for chunk in keys.chunks(500) {
        redis::cmd("UNLINK")
            .arg(chunk)
            .query_async::<()>(&mut connection)
            .await?;
    }

    println!(
        "speed layer benchmark: {n} posts over {CHANNELS} channels and 24 h, batches of 500, {url}"
    );
    println!("  raw pipelined INCR (baseline, same run): {incr_rate:>10.0} commands/s");
    println!(
        "  posts applied (one script, up to {COMMANDS_PER_POST} commands, per post): {apply_rate:>8.0} posts/s = up to {:.0} commands/s",
        apply_rate * COMMANDS_PER_POST
    );
    println!("  redis memory: {total} bytes in all = {:.0} bytes/post; per channel-day at {} posts/channel/day: {:.1} MiB", total as f64 / n as f64, n / CHANNELS, total as f64 / CHANNELS as f64 / 1_048_576.0);
    for (kind, (count, size)) in &bytes {
        println!(
            "    {kind:<18} {count:>8} keys {:>10.1} bytes/post",
            *size as f64 / n as f64
        );
    }
    for (name, (p50, p99)) in &latencies {
        println!(
            "  window {name:<17} read: p50 {:>7.2} ms, p99 {:>7.2} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
