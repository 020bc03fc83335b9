//! End-to-end latency of a running Pulse (`pulse up`): from the moment a post is produced to
//! Kafka's raw topic to the moment it is visible to a client, on the event stream
//! (`/api/v1/stream`) and in the live window (`/api/v1/live`).
//!
//! First the maximum rate is measured: a burst of posts produced as fast as the producer
//! goes, divided by the time until the last one arrives on the stream. Then posts are
//! produced at 25%, 50% and 90% of that rate, each phase on a channel of its own, and every
//! post's latency is taken:
//! - stream: when its `event: post` arrives (the API polls the speed layer's feed every
//!   250 ms, which bounds the figure from below);
//! - live: the window's count is polled every 50 ms, and the n-th post produced counts as
//!   visible once the count reaches n (posts of a channel are counted in about the order
//!   they were produced; a poll's 50 ms are in the figure).
//!
//! Run: `scripts/bench-latency`, which starts the stack and `pulse up` with this run's own
//! topics, keyspace and key prefix. Reads the Pulse configuration like `pulse` does (file from
//! `PULSE_CONFIG`, then `PULSE_*` variables); `PULSE_BENCH_API` is the API's base URL,
//! `PULSE_BENCH_SECONDS` each phase's length (default 20), `PULSE_BENCH_BURST` the burst's
//! posts (default 6,000), `PULSE_BENCH_STREAM` the folder of post texts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use futures::StreamExt;
use pulse_core::{Post, PulseConfig};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Map, Value};

/// Produce instants and arrival instants of one phase's posts, by post id.
#[derive(Default)]
struct Clock {
    produced: HashMap<String, Instant>,
    /// Produce instants in produce order (for the live count).
    order: Vec<Instant>,
    streamed: HashMap<String, Instant>,
    /// (when, count) of every live poll that saw the count grow.
    counted: Vec<(Instant, u64)>,
}

type Shared = Arc<Mutex<Clock>>;

fn lock(clock: &Shared) -> std::sync::MutexGuard<'_, Clock> {
    clock
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn texts(folder: &PathBuf) -> anyhow::Result<Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("cannot list {}", folder.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut texts = Vec::new();
    for file in files.iter().take(2) {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        texts.extend(
            String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(str::to_owned),
        );
    }
    if texts.is_empty() {
        bail!("{} holds no posts", folder.display());
    }
    Ok(texts)
}

/// Follows the channel's event stream and records when each post arrives.
async fn follow_stream(api: String, channel: String, clock: Shared) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{api}/api/v1/stream"))
        .query(&[("channel", channel.as_str())])
        .send()
        .await?
        .error_for_status()?;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = body.next().await {
        let now = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if !event.lines().any(|line| line == "event: post") {
                continue;
            }
            for data in event.lines().filter_map(|l| l.strip_prefix("data: ")) {
                if let Ok(post) = serde_json::from_str::<Value>(data) {
                    if let Some(id) = post.get("id").and_then(Value::as_str) {
                        lock(&clock).streamed.entry(id.to_string()).or_insert(now);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Polls the channel's live window every 50 ms and records when its count grew; failed polls
/// are skipped and counted.
async fn poll_live(
    api: String,
    channel: String,
    clock: Shared,
    until: Instant,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut last = 0;
    let mut failed = 0_u64;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while Instant::now() < until {
        tick.tick().await;
        // A failed poll (the API busy at saturation) is skipped: the next one tells.
        let Ok(response) = client
            .get(format!("{api}/api/v1/live"))
            .query(&[
                ("channel", channel.as_str()),
                ("window", "5m"),
                ("series", "none"),
                ("top", "1"),
            ])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
        else {
            failed += 1;
            continue;
        };
        let Ok(window) = response.json::<Value>().await else {
            failed += 1;
            continue;
        };
        let count = window["totals"]["count"].as_u64().unwrap_or(0);
        if count > last {
            last = count;
            lock(&clock).counted.push((Instant::now(), count));
        }
    }
    if failed > 0 {
        eprintln!("{channel}: {failed} live polls failed and were skipped");
    }
    Ok(())
}

/// Produces `count` posts to the raw topic at `rate` posts/s (0: as fast as possible).
async fn produce(
    producer: &FutureProducer,
    topic: &str,
    channel: &str,
    texts: &[String],
    count: usize,
    rate: f64,
    clock: &Shared,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..count {
        if rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let id = format!("bench:{channel}:{i}");
        let post = Post {
            id: id.clone(),
            source: "file".into(),
            channel: channel.to_string(),
            author: None,
            text: texts[i % texts.len()].clone(),
            created_at: Utc::now(),
            url: None,
            lang: None,
            parent_id: None,
            meta: Map::new(),
            extra: Map::new(),
        };
        let payload = serde_json::to_vec(&post)?;
        {
            let mut clock = lock(clock);
            let now = Instant::now();
            clock.produced.insert(id.clone(), now);
            clock.order.push(now);
        }
        // Enqueued at once (the delivery future does not borrow the record); a full queue
        // waits for acknowledgements.
        let mut record = FutureRecord::to(topic).key(&id).payload(&payload);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((error, back)) => {
                    if pending.is_empty() {
                        bail!("produce failed: {error}");
                    }
                    record = back;
                    acknowledged(pending.next().await)?;
                }
            }
        }
        while pending.len() > 1_000 {
            acknowledged(pending.next().await)?;
        }
    }
    while let Some(delivery) = pending.next().await {
        acknowledged(Some(delivery))?;
    }
    Ok(())
}

/// Fails on a delivery Kafka refused.
fn acknowledged(
    delivery: Option<
        Result<
            rdkafka::producer::future_producer::OwnedDeliveryResult,
            futures::channel::oneshot::Canceled,
        >,
    >,
) -> anyhow::Result<()> {
    match delivery {
        Some(Ok(Ok(_))) | None => Ok(()),
        Some(Ok(Err((error, _)))) => bail!("produce failed: {error}"),
        Some(Err(_)) => bail!("the producer went away"),
    }
}

/// The p-th percentile (nearest rank) of sorted milliseconds.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Phase {
    label: String,
    rate: f64,
    produced: usize,
    stream: Vec<f64>,
    live: Vec<f64>,
    elapsed: f64,
}

/// One phase on a channel of its own: produces, waits until every post is on the stream and
/// counted live (or `settle` passes), and returns the latencies.
#[allow(clippy::too_many_arguments)]
async fn phase(
    label: &str,
    api: &str,
    producer: &FutureProducer,
    topic: &str,
    texts: &[String],
    count: usize,
    rate: f64,
    settle: Duration,
) -> anyhow::Result<Phase> {
    let channel = format!("bench/{}/{label}", std::process::id());
    let clock: Shared = Arc::default();
    let stream = tokio::spawn(follow_stream(
        api.to_string(),
        channel.clone(),
        clock.clone(),
    ));
    // The stream subscribes before the first post is produced.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let begin = Instant::now();
    let producing = if rate > 0.0 { count as f64 / rate } else { 0.0 };
    let deadline = begin + Duration::from_secs_f64(producing) + settle;
    let live = tokio::spawn(poll_live(
        api.to_string(),
        channel.clone(),
        clock.clone(),
        deadline,
    ));
    produce(producer, topic, &channel, texts, count, rate, &clock).await?;
    loop {
        let done = {
            let clock = lock(&clock);
            clock.streamed.len() >= count
                && clock
                    .counted
                    .last()
                    .is_some_and(|(_, n)| *n >= count as u64)
        };
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = {
        let clock = lock(&clock);
        let last = clock
            .streamed
            .values()
            .max()
            .copied()
            .unwrap_or_else(Instant::now);
        last.duration_since(begin).as_secs_f64()
    };
    stream.abort();
    live.abort();
    let clock = lock(&clock);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut stream: Vec<f64> = clock
        .streamed
        .iter()
        .filter_map(|(id, at)| clock.produced.get(id).map(|p| ms(at.duration_since(*p))))
        .collect();
    let mut live: Vec<f64> = Vec::new();
    let mut counted = clock.counted.iter().peekable();
    for (n, produced) in clock.order.iter().enumerate() {
        while counted.peek().is_some_and(|(_, c)| *c < n as u64 + 1) {
            counted.next();
        }
        if let Some((at, _)) = counted.peek() {
            live.push(ms(at.duration_since(*produced)));
        }
    }
    stream.sort_by(f64::total_cmp);
    live.sort_by(f64::total_cmp);
    if stream.len() < count || live.len() < count {
        eprintln!(
            "{label}: {} of {count} posts on the stream and {} counted live within the wait",
            stream.len(),
            live.len()
        );
    }
    Ok(Phase {
        label: label.to_string(),
        rate,
        produced: count,
        stream,
        live,
        elapsed,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = PulseConfig::load(
        std::env::var_os("PULSE_CONFIG")
            .map(PathBuf::from)
            .as_deref(),
    )?;
    let api = std::env::var("PULSE_BENCH_API")
        .context("PULSE_BENCH_API (the API's base URL) is unset")?;
    let seconds: f64 = std::env::var("PULSE_BENCH_SECONDS").map_or(Ok(20.0), |s| s.parse())?;
    let burst: usize = std::env::var("PULSE_BENCH_BURST").map_or(Ok(6_000), |s| s.parse())?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let folder = std::env::var("PULSE_BENCH_STREAM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("../shared/data/stream"));
    let texts = texts(&folder)?;
    let producer = pulse_kafka::client::create_producer(&config.kafka)?;
    let topic = config.kafka.topics.raw.clone();

    // Warm-up: models, connections and the JIT-less parts of the path all pay once.
    phase(
        "warmup",
        &api,
        &producer,
        &topic,
        &texts,
        300,
        0.0,
        Duration::from_secs(60),
    )
    .await?;
    let max = phase(
        "max",
        &api,
        &producer,
        &topic,
        &texts,
        burst,
        0.0,
        Duration::from_secs(120),
    )
    .await?;
    if max.stream.len() < burst {
        bail!(
            "the burst did not drain: {} of {burst} posts arrived",
            max.stream.len()
        );
    }
    let max_rate = burst as f64 / max.elapsed;
    println!(
        "maximum rate: {burst} posts produced at once reached the stream in {:.1} s = {max_rate:.0} posts/s",
        max.elapsed
    );
    let mut phases = Vec::new();
    for share in [25, 50, 90] {
        let rate = max_rate * f64::from(share) / 100.0;
        let count = (rate * seconds).round().max(1.0) as usize;
        let label = format!("{share}pct");
        phases.push(
            phase(
                &label,
                &api,
                &producer,
                &topic,
                &texts,
                count,
                rate,
                Duration::from_secs(60),
            )
            .await?,
        );
    }
    println!();
    println!("| load | rate (posts/s) | posts | stream p50 / p95 / p99 (ms) | live p50 / p95 / p99 (ms) |");
    println!("|---|---|---|---|---|");
    for p in &phases {
        println!(
            "| {} of max | {:.0} | {} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} |",
            p.label.replace("pct", "%"),
            p.rate,
            p.produced,
            percentile(&p.stream, 50.0),
            percentile(&p.stream, 95.0),
            percentile(&p.stream, 99.0),
            percentile(&p.live, 50.0),
            percentile(&p.live, 95.0),
            percentile(&p.live, 99.0),
        );
    }
    Ok(())
}
