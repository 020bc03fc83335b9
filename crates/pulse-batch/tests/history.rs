//! Acceptance of the batch layer against a real CQL server (`PULSE_TEST_CQL_NODES`, default
//! the local stack's): rollups and top terms equal the ground truth computed here, paging
//! returns every post once newest first whatever the page size, writing the same posts again
//! changes nothing, and the schema applies idempotently. Each test has its own keyspace.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use pulse_batch::{schema, BatchError, BatchStore, Cursor, MentionQuery, PostQuery, TermKind};
use pulse_core::config::BatchConfig;
use pulse_core::{
    entity_member, EnrichedPost, EntityKind, Granularity, Sentiment, SentimentLabel, Tally,
};
use pulse_testkit::post;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHANNELS: [&str; 3] = ["test/rust", "test/news", "reddit/r/ünïcode"];
const TERMS: [&str; 16] = [
    "rust",
    "tokio",
    "kafka",
    "scylla",
    "latency",
    "async runtime",
    "borrow checker",
    "release",
    "benchmark",
    "dashboard",
    "stream",
    "window",
    "rollup",
    "watermark",
    "partition",
    "replay",
];
const NAMES: [(&str, EntityKind); 5] = [
    ("Ferris", EntityKind::Person),
    ("Mozilla", EntityKind::Organization),
    ("Berlin", EntityKind::Location),
    ("Cargo", EntityKind::Product),
    ("The Book", EntityKind::CreativeWork),
];
/// Terms kept per bucket and kind: fewer than the vocabulary, so the cut is tested.
const TOP_TERMS: usize = 6;

fn config(test: &str) -> BatchConfig {
    BatchConfig {
        top_terms: TOP_TERMS,
        ..pulse_testkit::batch_config(test)
    }
}

async fn store(test: &str) -> BatchStore {
    let config = config(test);
    schema::apply(&config)
        .await
        .expect("schema applied (is the stack running? scripts/stack start)");
    BatchStore::connect(&config).await.expect("connected")
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("time")
}

/// `n` posts over `channels` in the `hours` hours before `end`, on whole seconds so that
/// many share a millisecond (the id orders them).
fn posts(
    seed: u64,
    n: usize,
    channels: &[&str],
    end: DateTime<Utc>,
    hours: i64,
) -> Vec<EnrichedPost> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let created_at = end - chrono::Duration::seconds(rng.random_range(1..=hours * 3_600));
            let sentiment = (rng.random_range(0..10) > 0).then(|| {
                let label = [
                    SentimentLabel::Negative,
                    SentimentLabel::Neutral,
                    SentimentLabel::Positive,
                ][rng.random_range(0..3)];
                Sentiment {
                    label,
                    score: rng.random_range(-10_000..=10_000) as f32 / 10_000.0,
                    probs: BTreeMap::new(),
                }
            });
            let emotions: Vec<(&str, f32)> = ["joy", "anger", "neutral"]
                .into_iter()
                .map(|e| (e, rng.random_range(0..1_000) as f32 / 1_000.0))
                .collect();
            // Skewed, so counts differ and the top is meaningful.
            let keywords: Vec<&str> = (0..rng.random_range(0..5))
                .map(|_| {
                    TERMS[rng
                        .random_range(0..TERMS.len())
                        .min(rng.random_range(0..TERMS.len()))]
                })
                .collect();
            let entities: Vec<(&str, EntityKind)> = (0..rng.random_range(0..3))
                .map(|_| NAMES[rng.random_range(0..NAMES.len())])
                .collect();
            let channel = channels[rng.random_range(0..channels.len())];
            // Languages as the enrich stage records them, and posts stored before it did.
            let lang = match i % 4 {
                0 => None,
                1 => Some("es"),
                _ => Some("en"),
            };
            post(format!("test:{seed}:{i:06}"), channel, created_at)
                .author(format!("author{}", i % 17))
                .text(format!("post {i} 🚀 مرحبا"))
                .lang(lang)
                .sentiment_of(sentiment)
                .emotions(emotions)
                .keywords(keywords)
                .entities(entities)
                .enriched_at(end)
                .enriched()
        })
        .collect()
}

async fn write_all(store: &BatchStore, posts: &[EnrichedPost]) {
    for chunk in posts.chunks(500) {
        let json: Vec<String> = chunk
            .iter()
            .map(|p| serde_json::to_string(p).expect("json"))
            .collect();
        let pairs: Vec<(&EnrichedPost, &str)> =
            chunk.iter().zip(json.iter().map(String::as_str)).collect();
        store.write(&pairs).await.expect("written");
    }
}

/// The ground truth of one bucket.
#[derive(Default, Debug)]
struct Truth {
    tally: Tally,
    terms: BTreeMap<(TermKind, String), u64>,
}

fn truth(
    posts: &[EnrichedPost],
    granularity: Granularity,
) -> BTreeMap<(String, DateTime<Utc>), Truth> {
    let mut buckets: BTreeMap<(String, DateTime<Utc>), Truth> = BTreeMap::new();
    for post in posts {
        let bucket = buckets
            .entry((
                post.post.channel.clone(),
                granularity.floor(post.post.created_at),
            ))
            .or_default();
        bucket
            .tally
            .add(&post.enrichment, post.post.lang.as_deref());
        let keywords: BTreeSet<&str> = post
            .enrichment
            .keywords
            .iter()
            .map(|k| k.term.as_str())
            .collect();
        for term in keywords {
            *bucket
                .terms
                .entry((TermKind::Keyword, term.to_string()))
                .or_default() += 1;
        }
        let entities: BTreeSet<String> = post
            .enrichment
            .entities
            .iter()
            .map(|e| entity_member(e.kind, &e.text))
            .collect();
        for member in entities {
            *bucket.terms.entry((TermKind::Entity, member)).or_default() += 1;
        }
    }
    buckets
}

fn top(truth: &Truth, kind: TermKind) -> Vec<(String, u64)> {
    let mut terms: Vec<(String, u64)> = truth
        .terms
        .iter()
        .filter(|((k, _), _)| *k == kind)
        .map(|((_, term), n)| (term.clone(), *n))
        .collect();
    terms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    terms.truncate(TOP_TERMS);
    terms
}

async fn assert_rollups_match(
    store: &BatchStore,
    posts: &[EnrichedPost],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) {
    for granularity in [Granularity::Hour, Granularity::Day] {
        let expected = truth(posts, granularity);
        for channel in CHANNELS {
            let stored = store
                .rollups(channel, granularity, from, to)
                .await
                .expect("rollups read");
            let want: Vec<(&DateTime<Utc>, &Tally)> = expected
                .iter()
                .filter(|((c, _), _)| c == channel)
                .map(|((_, bucket), truth)| (bucket, &truth.tally))
                .collect();
            let got: Vec<(&DateTime<Utc>, &Tally)> =
                stored.iter().map(|r| (&r.bucket, &r.tally)).collect();
            assert_eq!(got, want, "{granularity} rollups of {channel}");
            for rollup in &stored {
                let truth = &expected[&(channel.to_string(), rollup.bucket)];
                for kind in [TermKind::Keyword, TermKind::Entity] {
                    let terms: Vec<(String, u64)> = store
                        .top_terms(channel, granularity, rollup.bucket, kind)
                        .await
                        .expect("terms read")
                        .into_iter()
                        .map(|t| (t.term, t.count))
                        .collect();
                    assert_eq!(
                        terms,
                        top(truth, kind),
                        "{granularity} {kind} of {channel} at {}",
                        rollup.bucket
                    );
                }
            }
        }
    }
}

/// Every post of `channel` in `[from, to)` through pages of `limit`, with the page count.
async fn page_through(
    store: &BatchStore,
    channel: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .posts(&PostQuery {
                channel: channel.to_string(),
                from,
                to,
                sentiment: None,
                entity: None,
                keyword: None,
                lang: None,
                limit,
                cursor,
            })
            .await
            .expect("page read");
        assert!(page.posts.len() <= limit);
        ids.extend(page.posts.into_iter().map(|p| p.post.id));
        match page.next_cursor {
            Some(token) => cursor = Some(Cursor::decode(&token).expect("own cursor")),
            None => return ids,
        }
    }
}

/// Ids of `posts` in `[from, to)` of `channel`, newest first (ms, then id, descending).
fn expected_ids<'a>(
    posts: impl IntoIterator<Item = &'a EnrichedPost>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<String> {
    let mut keyed: Vec<(i64, String)> = posts
        .into_iter()
        .filter(|p| p.post.created_at >= from && p.post.created_at < to)
        .map(|p| (p.post.created_at.timestamp_millis(), p.post.id.clone()))
        .collect();
    keyed.sort_by(|a, b| b.cmp(a));
    keyed.into_iter().map(|(_, id)| id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_the_ground_truth_and_rewriting_changes_nothing() {
    let store = store("rollups").await;
    // 48 hours across a month boundary.
    let end = at("2026-03-02T00:00:00Z");
    let start = end - chrono::Duration::hours(48);
    let posts = posts(7, 20_000, &CHANNELS, end, 48);
    write_all(&store, &posts).await;

    // A first range that leaves a gap before it writes rollups but no watermark.
    let gap = store
        .recompute(Some(start + chrono::Duration::hours(30)), end, &|_| {})
        .await
        .expect("recompute");
    assert_eq!(gap.watermark, None);

    let last_progress = std::sync::Mutex::new(None);
    let report = store
        .recompute(None, end + chrono::Duration::minutes(59), &|step| {
            if let Ok(mut last) = last_progress.lock() {
                *last = Some(step);
            }
        })
        .await
        .expect("recompute");
    assert_eq!(report.posts, 20_000);
    assert_eq!(
        report.from,
        at("2026-02-01T00:00:00Z"),
        "from the first month"
    );
    assert_eq!(report.to, end);
    assert_eq!(report.channel_days, 6, "3 channels x 2 days");
    assert_eq!(report.watermark, Some(end));
    assert_eq!(store.watermark().await.expect("watermark"), Some(end));
    let last = last_progress
        .into_inner()
        .expect("progress lock")
        .expect("progress reported");
    assert_eq!(
        (last.days_done, last.days_total, last.posts),
        (6, 6, 20_000)
    );
    assert_rollups_match(&store, &posts, start, end).await;

    // The same posts again, and a recompute from the watermark: nothing changes.
    write_all(&store, &posts[..5_000]).await;
    let again = store
        .recompute(Some(start), end, &|_| {})
        .await
        .expect("recompute again");
    assert_eq!(again.posts, 20_000);
    assert_rollups_match(&store, &posts, start, end).await;
    for channel in CHANNELS {
        let ids = page_through(&store, channel, start, end, 1_000).await;
        let want = expected_ids(
            posts.iter().filter(|p| p.post.channel == channel),
            start,
            end,
        );
        assert_eq!(ids, want, "posts of {channel} after rewriting");
    }
    let rust: BTreeSet<&str> = posts
        .iter()
        .filter(|p| p.enrichment.keywords.iter().any(|k| k.term == "rust"))
        .map(|p| p.post.id.as_str())
        .collect();
    let mut mentioning = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = store
            .mentioning(&MentionQuery {
                kind: TermKind::Keyword,
                term: "RUST".into(),
                from: start,
                to: end,
                limit: 1_000,
                cursor,
            })
            .await
            .expect("mentions read");
        for post in page.posts {
            assert!(mentioning.insert(post.post.id), "a post mentioned twice");
        }
        match page.next_cursor {
            Some(token) => cursor = Some(Cursor::decode(&token).expect("cursor")),
            None => break,
        }
    }
    let mentioning: BTreeSet<&str> = mentioning.iter().map(String::as_str).collect();
    assert_eq!(mentioning, rust, "posts mentioning rust, once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_returns_every_post_once_newest_first_whatever_the_page_size() {
    let store = store("paging").await;
    let channel = CHANNELS[2];
    let end = at("2026-05-10T06:00:00Z");
    let posts = posts(11, 2_500, &[channel], end, 30);
    write_all(&store, &posts).await;
    // Not aligned to hours.
    let from = end - chrono::Duration::seconds(29 * 3_600 + 1_234);
    let to = end - chrono::Duration::seconds(1_801);
    let want = expected_ids(&posts, from, to);
    assert!(want.len() > 2_000);
    for limit in [7, 100, 1_000] {
        assert_eq!(
            page_through(&store, channel, from, to, limit).await,
            want,
            "pages of {limit}"
        );
    }
    // Single posts over three hours.
    let short_from = to - chrono::Duration::hours(3);
    assert_eq!(
        page_through(&store, channel, short_from, to, 1).await,
        expected_ids(&posts, short_from, to),
        "pages of 1"
    );

    // Filters: sentiment, keyword and entity (case-insensitive), each against the truth.
    let filtered = |sentiment: Option<SentimentLabel>,
                    keyword: Option<&str>,
                    entity: Option<&str>| PostQuery {
        channel: channel.to_string(),
        from,
        to,
        sentiment,
        entity: entity.map(str::to_string),
        keyword: keyword.map(str::to_string),
        lang: None,
        limit: 1_000,
        cursor: None,
    };
    type Keep = Box<dyn Fn(&EnrichedPost) -> bool>;
    let cases: [(PostQuery, Keep); 3] = [
        (
            filtered(Some(SentimentLabel::Positive), None, None),
            Box::new(|p| {
                p.enrichment
                    .sentiment
                    .as_ref()
                    .is_some_and(|s| s.label == SentimentLabel::Positive)
            }),
        ),
        (
            filtered(None, Some("Borrow Checker"), Some("person:FERRIS")),
            Box::new(|p| {
                p.enrichment
                    .keywords
                    .iter()
                    .any(|k| k.term == "borrow checker")
                    && p.enrichment.entities.iter().any(|e| e.text == "Ferris")
            }),
        ),
        (
            filtered(Some(SentimentLabel::Negative), None, Some("the book")),
            Box::new(|p| {
                p.enrichment
                    .sentiment
                    .as_ref()
                    .is_some_and(|s| s.label == SentimentLabel::Negative)
                    && p.enrichment.entities.iter().any(|e| e.text == "The Book")
            }),
        ),
    ];
    for (query, keep) in cases {
        let page = store.posts(&query).await.expect("filtered page");
        let got: Vec<String> = page.posts.into_iter().map(|p| p.post.id).collect();
        let want = expected_ids(posts.iter().filter(|p| keep(p)), from, to);
        assert!(!want.is_empty(), "{query:?} matches something");
        assert_eq!(got, want, "{query:?}");
    }

    // A post by id comes back as written; unknown ids, empty ranges, bad limits and
    // cursors are told apart.
    let first = &posts[0];
    assert_eq!(
        store.post(&first.post.id).await.expect("read"),
        Some(first.clone())
    );
    assert_eq!(store.post("test:none").await.expect("read"), None);
    let mut bad = filtered(None, None, None);
    bad.to = bad.from;
    assert!(matches!(store.posts(&bad).await, Err(BatchError::Query(_))));
    let mut bad = filtered(None, None, None);
    bad.limit = 0;
    assert!(matches!(store.posts(&bad).await, Err(BatchError::Query(_))));
    assert!(matches!(
        Cursor::decode("not-a-cursor"),
        Err(BatchError::Query(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_applies_idempotently() {
    let config = config("schema");
    let first = schema::apply(&config).await.expect("first apply");
    assert!(first.keyspace_created);
    assert_eq!(first.tables_created.len(), 9);
    let store = BatchStore::connect(&config).await.expect("connected");
    let post = &posts(3, 1, &CHANNELS, at("2026-01-01T00:00:00Z"), 1)[0];
    write_all(&store, std::slice::from_ref(post)).await;

    let second = schema::apply(&config).await.expect("second apply");
    assert!(!second.keyspace_created);
    assert!(second.tables_created.is_empty());
    assert_eq!(second.tables_present.len(), 9);
    assert!(second.columns_added.is_empty());

    // A table an older Pulse created, without a column this one names, gets the column.
    let nodes: Vec<&str> = config.nodes.split(',').map(str::trim).collect();
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&nodes)
        .build()
        .await
        .expect("a plain session");
    session
        .query_unpaged(
            format!(
                "ALTER TABLE {}.channel_rollups DROP languages",
                config.keyspace
            ),
            &[],
        )
        .await
        .expect("column dropped");
    let third = schema::apply(&config).await.expect("third apply");
    assert_eq!(third.columns_added, ["channel_rollups.languages"]);
    assert!(schema::apply(&config)
        .await
        .expect("fourth apply")
        .columns_added
        .is_empty());
    assert_eq!(
        store.post(&post.post.id).await.expect("read"),
        Some(post.clone()),
        "data kept"
    );

    let mut missing = config.clone();
    missing.keyspace = format!("{}_absent", config.keyspace);
    match BatchStore::connect(&missing).await {
        Err(BatchError::Cql { detail, .. }) => {
            assert!(detail.contains("pulse schema apply"), "{detail}")
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("connected to a keyspace that does not exist"),
    }
}

#[tokio::test]
async fn the_last_ten_minutes_of_a_full_hour_are_all_the_server_returns() {
    let store = store("range").await;
    let hour = at("2026-06-01T12:00:00Z");
    // One post a second: a full hour partition of 3,600 rows.
    let mut posts = posts(11, 3_600, &["test/range"], hour, 1);
    for (i, post) in posts.iter_mut().enumerate() {
        post.post.id = format!("range:{i:04}");
        post.post.created_at = hour + chrono::Duration::seconds(i as i64);
    }
    write_all(&store, &posts).await;

    let from = hour + chrono::Duration::minutes(50);
    let to = hour + chrono::Duration::hours(1);
    let before = store.rows_read();
    let page = store
        .posts(&PostQuery {
            channel: "test/range".into(),
            from,
            to,
            sentiment: None,
            entity: None,
            keyword: None,
            lang: None,
            limit: 1_000,
            cursor: None,
        })
        .await
        .expect("read");
    assert_eq!(
        store.rows_read() - before,
        600,
        "the server returned only the rows of the last 10 minutes"
    );
    let ids: Vec<String> = page.posts.iter().map(|p| p.post.id.clone()).collect();
    let want: Vec<String> = (3_000..3_600)
        .rev()
        .map(|i| format!("range:{i:04}"))
        .collect();
    assert_eq!(ids, want, "newest first, in the server's clustering order");
    assert_eq!(page.next_cursor, None, "the range is read to its end");

    // Pages of 100 resume on the server where the last one ended: 600 rows read in all.
    let before = store.rows_read();
    let mut cursor = None;
    let mut paged = Vec::new();
    loop {
        let page = store
            .posts(&PostQuery {
                channel: "test/range".into(),
                from,
                to,
                sentiment: None,
                entity: None,
                keyword: None,
                lang: None,
                limit: 100,
                cursor,
            })
            .await
            .expect("read");
        paged.extend(page.posts.into_iter().map(|p| p.post.id));
        match page.next_cursor {
            Some(token) => cursor = Some(Cursor::decode(&token).expect("cursor")),
            None => break,
        }
    }
    assert_eq!(paged, want);
    assert_eq!(store.rows_read() - before, 600, "no row read twice");

    // A cursor continues only the query it came from (channel and filters), over the range
    // its first page had.
    let first = store
        .posts(&PostQuery {
            channel: "test/range".into(),
            from,
            to,
            sentiment: None,
            entity: None,
            keyword: None,
            lang: None,
            limit: 10,
            cursor: None,
        })
        .await
        .expect("read");
    let token = first.next_cursor.expect("more follow");
    let moved = store
        .posts(&PostQuery {
            channel: "test/range".into(),
            from: hour,
            to: to + chrono::Duration::hours(1),
            sentiment: None,
            entity: None,
            keyword: None,
            lang: None,
            limit: 10,
            cursor: Some(Cursor::decode(&token).expect("cursor")),
        })
        .await
        .expect("a moved range keeps the cursor's");
    let second: Vec<String> = moved.posts.iter().map(|p| p.post.id.clone()).collect();
    assert_eq!(second, want[10..20]);
    let other = store
        .posts(&PostQuery {
            channel: "test/range".into(),
            from,
            to,
            sentiment: None,
            entity: None,
            keyword: Some("kafka".into()),
            lang: None,
            limit: 10,
            cursor: Some(Cursor::decode(&token).expect("cursor")),
        })
        .await;
    assert!(matches!(other, Err(BatchError::Query(_))), "{other:?}");

    // A range over batch.max_range_days (366) is refused before any partition is read.
    let before = store.rows_read();
    let ancient = "0000-01-01T00:00:00Z".parse().expect("year 0");
    for (from, to) in [(ancient, to), (to - chrono::Duration::days(367), to)] {
        let refused = store
            .posts(&PostQuery {
                channel: "test/range".into(),
                from,
                to,
                sentiment: None,
                entity: None,
                keyword: None,
                lang: None,
                limit: 10,
                cursor: None,
            })
            .await;
        match refused {
            Err(BatchError::Query(reason)) => {
                assert!(reason.contains("batch.max_range_days"), "{reason}")
            }
            other => panic!("a range from {from} was read: {other:?}"),
        }
    }
    assert_eq!(store.rows_read(), before);
}
