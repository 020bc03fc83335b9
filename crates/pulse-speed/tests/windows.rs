//! Acceptance of the speed layer against a real Redis (`PULSE_TEST_REDIS_URL`, default the
//! local one): windows equal the ground truth computed here, redelivery changes nothing,
//! buckets expire and windows shrink. Each test uses its own key prefix.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pulse_core::config::SpeedConfig;
use pulse_core::{EnrichedPost, EntityKind, Sentiment, SentimentLabel, Series, TermCount};
use pulse_speed::{minute_of, FeedEntry, LogPosition, MinuteStats, PostToApply, SpeedLayer};
use pulse_testkit::post;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHANNELS: [&str; 3] = ["test/rust", "test/{braces}", "test/news"];
const VOCABULARY: [&str; 24] = [
    "rust",
    "tokio",
    "kafka",
    "redis",
    "scylla",
    "latency",
    "throughput",
    "async runtime",
    "borrow checker",
    "release",
    "benchmark",
    "dashboard",
    "sentiment",
    "emotion",
    "entity",
    "keyword",
    "stream",
    "window",
    "rollup",
    "watermark",
    "partition",
    "consumer",
    "producer",
    "replay",
];
const NAMES: [(&str, EntityKind); 6] = [
    ("Ferris", EntityKind::Person),
    ("Mozilla", EntityKind::Organization),
    ("Berlin", EntityKind::Location),
    ("Cargo", EntityKind::Product),
    ("The Book", EntityKind::CreativeWork),
    ("Tokio", EntityKind::Organization),
];

fn layer(test: &str, retention_secs: u64) -> SpeedLayer {
    let config = SpeedConfig {
        retention_secs,
        feed_length: 1_000,
        ..pulse_testkit::speed_config(test)
    };
    SpeedLayer::connect(&config).expect("redis client")
}

/// `n` posts spread over the channels and over `minutes` minutes before `end`.
fn posts(seed: u64, n: usize, end: DateTime<Utc>, minutes: i64) -> Vec<EnrichedPost> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let created_at = end - chrono::Duration::seconds(rng.random_range(1..minutes * 60));
            let label = [
                SentimentLabel::Negative,
                SentimentLabel::Neutral,
                SentimentLabel::Positive,
            ][rng.random_range(0..3)];
            let sentiment = (rng.random_range(0..10) > 0).then(|| Sentiment {
                label,
                score: rng.random_range(-10_000..=10_000) as f32 / 10_000.0,
                probs: BTreeMap::new(),
            });
            let emotions: Vec<(&str, f32)> = ["joy", "anger", "fear"]
                .into_iter()
                .map(|e| (e, rng.random_range(0..1_000) as f32 / 1_000.0))
                .collect();
            // Skewed term choice so that counts differ and ties are rare but possible.
            let keywords: Vec<&str> = (0..rng.random_range(0..5))
                .map(|_| {
                    let index =
                        (rng.random_range(0.0f64..1.0).powi(2) * VOCABULARY.len() as f64) as usize;
                    VOCABULARY[index.min(VOCABULARY.len() - 1)]
                })
                .collect();
            let entities: Vec<(&str, EntityKind)> = (0..rng.random_range(0..3))
                .map(|_| NAMES[rng.random_range(0..NAMES.len())])
                .collect();
            let lang = match i % 5 {
                0 => None,
                1 | 2 => Some("es"),
                _ => Some("en"),
            };
            post(
                format!("speed:{seed}:{i}"),
                CHANNELS[i % CHANNELS.len()],
                created_at,
            )
            .text("t")
            .lang(lang)
            .sentiment_of(sentiment)
            .emotions(emotions)
            .keywords(keywords)
            .entities(entities)
            .enriched()
        })
        .collect()
}

async fn apply_all(layer: &SpeedLayer, posts: &[EnrichedPost]) -> (usize, usize) {
    let mut totals = (0, 0);
    for batch in posts.chunks(500) {
        let report = layer.apply(batch).await.expect("applied");
        totals.0 += report.applied;
        totals.1 += report.duplicates;
    }
    totals
}

fn micros(value: f32) -> i64 {
    (f64::from(value) * 1e6).round() as i64
}

/// Ground truth of a window, computed from the posts themselves.
struct Truth {
    totals: MinuteStats,
    series: Vec<MinuteStats>,
    keywords: Vec<TermCount>,
    entities: Vec<TermCount>,
}

fn top(counts: BTreeMap<String, u64>, k: usize) -> Vec<TermCount> {
    let mut terms: Vec<TermCount> = counts
        .into_iter()
        .map(|(term, count)| TermCount { term, count })
        .collect();
    terms.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.term.cmp(&b.term)));
    terms.truncate(k);
    terms
}

fn truth(posts: &[EnrichedPost], channel: &str, from: i64, to: i64, k: usize) -> Truth {
    let mut series: Vec<MinuteStats> = (from..to)
        .map(|minute| MinuteStats {
            minute,
            ..Default::default()
        })
        .collect();
    let mut keywords = BTreeMap::new();
    let mut entities = BTreeMap::new();
    for enriched in posts.iter().filter(|p| p.post.channel == channel) {
        let minute = minute_of(enriched.post.created_at);
        if minute < from || minute >= to {
            continue;
        }
        let stats = &mut series[(minute - from) as usize];
        stats.count += 1;
        *stats
            .languages
            .entry(enriched.post.lang.clone().unwrap_or_else(|| "und".into()))
            .or_default() += 1;
        if let Some(sentiment) = &enriched.enrichment.sentiment {
            *stats
                .labels
                .entry(sentiment.label.as_str().to_string())
                .or_default() += 1;
            stats.scored += 1;
            stats.score_micros += micros(sentiment.score);
        }
        for (emotion, p) in &enriched.enrichment.emotions {
            *stats.emotion_micros.entry(emotion.clone()).or_default() += micros(*p);
        }
        for term in enriched
            .enrichment
            .keywords
            .iter()
            .map(|k| k.term.clone())
            .collect::<BTreeSet<_>>()
        {
            *keywords.entry(term).or_default() += 1;
        }
        for member in enriched
            .enrichment
            .entities
            .iter()
            .map(|e| pulse_speed::entity_member(e.kind, &e.text))
            .collect::<BTreeSet<_>>()
        {
            *entities.entry(member).or_default() += 1;
        }
    }
    let mut totals = MinuteStats {
        minute: from,
        ..Default::default()
    };
    for stats in &series {
        totals.count += stats.count;
        totals.scored += stats.scored;
        totals.score_micros += stats.score_micros;
        for (label, n) in &stats.labels {
            *totals.labels.entry(label.clone()).or_default() += n;
        }
        for (emotion, sum) in &stats.emotion_micros {
            *totals.emotion_micros.entry(emotion.clone()).or_default() += sum;
        }
        for (lang, n) in &stats.languages {
            *totals.languages.entry(lang.clone()).or_default() += n;
        }
    }
    Truth {
        totals,
        series,
        keywords: top(keywords, k),
        entities: top(entities, k),
    }
}

async fn assert_window(
    layer: &SpeedLayer,
    posts: &[EnrichedPost],
    channel: &str,
    from: i64,
    to: i64,
) {
    let window = layer.window(channel, from, to, 10).await.expect("window");
    let expected = truth(posts, channel, from, to, 10);
    let what = format!("{channel} [{from}, {to}) ({} minutes)", to - from);
    assert_eq!(window.totals, expected.totals, "totals of {what}");
    assert_eq!(window.series, expected.series, "series of {what}");
    assert_eq!(window.keywords, expected.keywords, "keywords of {what}");
    assert_eq!(window.entities, expected.entities, "entities of {what}");
    if expected.totals.scored > 0 {
        let mean = expected.totals.score_micros as f64 / 1e6 / expected.totals.scored as f64;
        assert!((window.mean_score.expect("mean") - mean).abs() < 1e-9);
    }

    // Read by hours (hour counters for the whole hours): the same totals and terms, and the
    // minutes folded per clock hour, each entry starting at its first minute.
    let hourly = layer
        .window_with(channel, from, to, 10, Series::Hour)
        .await
        .expect("window by hours");
    assert_eq!(hourly.totals, expected.totals, "totals by hours of {what}");
    assert_eq!(
        hourly.keywords, expected.keywords,
        "keywords by hours of {what}"
    );
    assert_eq!(hourly.mean_score, window.mean_score);
    assert_eq!(hourly.emotion_means, window.emotion_means);
    let mut hours: Vec<MinuteStats> = Vec::new();
    for minute in expected.series {
        match hours.last_mut() {
            Some(hour) if hour.minute.div_euclid(60) == minute.minute.div_euclid(60) => {
                hour.count += minute.count;
                hour.scored += minute.scored;
                hour.score_micros += minute.score_micros;
                for (label, n) in minute.labels {
                    *hour.labels.entry(label).or_default() += n;
                }
                for (emotion, sum) in minute.emotion_micros {
                    *hour.emotion_micros.entry(emotion).or_default() += sum;
                }
                for (lang, n) in minute.languages {
                    *hour.languages.entry(lang).or_default() += n;
                }
            }
            _ => hours.push(minute),
        }
    }
    assert_eq!(hourly.series, hours, "hourly series of {what}");
    let totals_only = layer
        .window_with(channel, from, to, 0, Series::None)
        .await
        .expect("totals");
    assert_eq!(totals_only.totals, expected.totals, "totals only of {what}");
    assert!(totals_only.series.is_empty() && totals_only.keywords.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_equal_the_ground_truth_and_redelivery_changes_nothing() {
    let layer = layer("windows", 25 * 3600);
    let now = Utc::now();
    let end = minute_of(now) + 1;
    let posts = posts(7, 20_000, now, 23 * 60);
    assert_eq!(apply_all(&layer, &posts).await, (20_000, 0));

    let ranges = [
        (end - 5, end),
        (end - 60, end),
        (end - 24 * 60, end),
        (end - 7 * 60 - 13, end - 2 * 60 - 7),
        (end - 125, end - 119),
    ];
    for channel in CHANNELS {
        for (from, to) in ranges {
            assert_window(&layer, &posts, channel, from, to).await;
        }
    }

    // Redelivery of 5,000 already-applied posts: nothing changes.
    let before: Vec<_> = futures_windows(&layer, end).await;
    let feed_before = layer.recent(CHANNELS[0], 2_000).await.expect("feed");
    assert_eq!(apply_all(&layer, &posts[..5_000]).await, (0, 5_000));
    assert_eq!(futures_windows(&layer, end).await, before);
    assert_eq!(
        layer.recent(CHANNELS[0], 2_000).await.expect("feed"),
        feed_before
    );

    // The registry knows every channel with its newest post's time.
    let channels: BTreeMap<String, i64> = layer
        .channels()
        .await
        .expect("channels")
        .into_iter()
        .collect();
    for channel in CHANNELS {
        let newest = posts
            .iter()
            .filter(|p| p.post.channel == channel)
            .map(|p| p.post.created_at.timestamp_millis())
            .max();
        assert_eq!(channels.get(channel).copied(), newest, "{channel}");
    }

    // The feed keeps the most recent applications, capped, readable from an id on.
    let recent = layer.recent(CHANNELS[1], 5).await.expect("recent");
    assert_eq!(recent.len(), 5);
    let last_applied = posts
        .iter()
        .rev()
        .find(|p| p.post.channel == CHANNELS[1])
        .expect("a post");
    let newest: EnrichedPost =
        serde_json::from_str(&recent[0].1).expect("feed entry is an enriched post");
    assert_eq!(newest.post.id, last_applied.post.id);
    let after = layer
        .feed_after(CHANNELS[1], &recent[1].0, 100)
        .await
        .expect("feed after");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].0, recent[0].0);

    // A post deleted at its source leaves the feed; readers after it learn of the deletion.
    let removed = layer
        .forget(&[(CHANNELS[1], newest.post.id.as_str())])
        .await
        .expect("forget");
    assert_eq!(removed, 1);
    let now_recent = layer.recent(CHANNELS[1], 5).await.expect("recent");
    assert_eq!(now_recent.len(), 4, "the deletion entry is not a post");
    assert_eq!(now_recent[0], recent[1]);
    let after = layer
        .feed_after(CHANNELS[1], &recent[1].0, 100)
        .await
        .expect("feed after");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].1, FeedEntry::Deleted(newest.post.id.clone()));
    assert_eq!(
        layer
            .forget(&[(CHANNELS[1], newest.post.id.as_str())])
            .await
            .expect("forget again"),
        0
    );
}

async fn futures_windows(layer: &SpeedLayer, end: i64) -> Vec<pulse_speed::WindowStats> {
    let mut windows = Vec::new();
    for channel in CHANNELS {
        windows.push(
            layer
                .window(channel, end - 24 * 60, end, 10)
                .await
                .expect("window"),
        );
    }
    windows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_expire_and_windows_shrink() {
    let layer = layer("expiry", 4);
    let now = Utc::now();
    let end = minute_of(now) + 1;
    // Two halves in disjoint minutes; the newer one is applied 2 s later and outlives the
    // older one by that much (4 s retention: margins for a loaded machine).
    let older = posts(11, 300, now - chrono::Duration::minutes(8), 6);
    let newer = posts(12, 300, now, 6);
    let all: Vec<EnrichedPost> = older.iter().chain(&newer).cloned().collect();
    assert_eq!(apply_all(&layer, &older).await.0, older.len());
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(apply_all(&layer, &newer).await.0, newer.len());

    let channel = CHANNELS[0];
    let (from, to) = (end - 20, end);
    let window = layer.window(channel, from, to, 10).await.expect("window");
    assert_eq!(
        window.totals,
        truth(&all, channel, from, to, 10).totals,
        "both halves before expiry"
    );

    let only_newer = truth(&newer, channel, from, to, 10);
    let window = window_when(&layer, channel, from, to, "the older half to expire", |w| {
        w.totals == only_newer.totals
    })
    .await;
    assert_eq!(window.keywords, only_newer.keywords);
    assert_eq!(window.entities, only_newer.entities);
    window_when(&layer, channel, from, to, "every bucket to expire", |w| {
        w.totals.count == 0 && w.keywords.is_empty() && w.entities.is_empty()
    })
    .await;
}

/// Reads the window every 50 ms until `done` holds for it (failing after 20 s), and
/// returns that window.
async fn window_when(
    layer: &SpeedLayer,
    channel: &str,
    from: i64,
    to: i64,
    what: &str,
    done: impl Fn(&pulse_speed::WindowStats) -> bool,
) -> pulse_speed::WindowStats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let window = layer.window(channel, from, to, 10).await.expect("window");
        if done(&window) {
            return window;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {} posts in the window",
            window.totals.count
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn positions_are_the_highest_offset_applied_per_partition_across_channels() {
    let layer = layer("positions", 90_000);
    let posts = posts(11, 40, Utc::now(), 30);
    assert!(layer.positions("t").await.expect("read").is_empty());
    // Partition p of topic t gets the posts i with i % 2 == p at offset 100 + i; the
    // channels are spread over both partitions.
    let position = |topic, partition, offset| LogPosition {
        topic,
        partition,
        offset,
    };
    let at = |i: usize| position("t", (i % 2) as i32, 100 + i as i64);
    let json: Vec<String> = posts
        .iter()
        .map(|p| serde_json::to_string(p).expect("json"))
        .collect();
    let batch: Vec<PostToApply> = posts
        .iter()
        .zip(&json)
        .enumerate()
        .take(30)
        .map(|(i, (post, json))| (post, json.as_str(), Some(at(i))))
        .collect();
    assert_eq!(layer.apply_json(&batch).await.expect("applied").applied, 30);
    let expected = BTreeMap::from([(0, 128), (1, 129)]);
    assert_eq!(layer.positions("t").await.expect("read"), expected);
    // Another topic's positions are its own; an older offset never moves a position back.
    let other: Vec<PostToApply> = vec![(&posts[30], json[30].as_str(), Some(position("u", 0, 7)))];
    layer.apply_json(&other).await.expect("applied");
    let stale: Vec<PostToApply> = vec![(&posts[31], json[31].as_str(), Some(at(0)))];
    layer.apply_json(&stale).await.expect("applied");
    assert_eq!(layer.positions("t").await.expect("read"), expected);
    assert_eq!(
        layer.positions("u").await.expect("read"),
        BTreeMap::from([(0, 7)])
    );
    // A redelivered post (already counted) still advances its partition's position.
    let redelivered: Vec<PostToApply> =
        vec![(&posts[1], json[1].as_str(), Some(position("t", 1, 500)))];
    let report = layer.apply_json(&redelivered).await.expect("applied");
    assert_eq!((report.applied, report.duplicates), (0, 1));
    assert_eq!(
        layer.positions("t").await.expect("read"),
        BTreeMap::from([(0, 128), (1, 500)])
    );
}

#[tokio::test]
async fn the_server_id_is_the_redis_run_id() {
    let layer = layer("server-id", 90_000);
    let id = layer.server_id().await.expect("read");
    assert_eq!(id.len(), 40, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert_eq!(layer.server_id().await.expect("read"), id);
}
