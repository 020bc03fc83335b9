//! Tests of the Reddit source against the in-process fake.

use std::time::Duration;

use chrono::Utc;
use pulse_core::config::EnrichConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::fake::{FakeReddit, FakeSettings, Fault};
use super::*;

fn config(fake: &FakeReddit) -> RedditConfig {
    let settings = FakeSettings::default();
    RedditConfig {
        subreddits: vec!["rust".into(), "golang".into()],
        listings: vec![Listing::Submissions],
        client_id: settings.client_id,
        client_secret: settings.client_secret,
        reddit_user: "tester".into(),
        auth_url: fake.url(),
        api_url: fake.url(),
        poll_interval_ms: 0,
        recheck_interval_ms: 0,
        backoff_initial_ms: 10,
        backoff_max_ms: 80,
        ..RedditConfig::default()
    }
}

fn reddit(config: RedditConfig) -> RedditSource {
    let limits = EnrichConfig::default().post_limits();
    RedditSource::new(
        "test",
        config,
        limits,
        SourceMetrics::unregistered("reddit", "test"),
    )
    .unwrap()
}

fn ids(events: &[SourceItem]) -> Vec<String> {
    events
        .iter()
        .map(|event| match event {
            SourceItem::Post { post, .. } => post.id.clone(),
            SourceItem::Tombstone { tombstone, .. } => format!("tombstone {}", tombstone.id),
            SourceItem::Malformed { location, kind, .. } => format!("malformed {location} {kind}"),
        })
        .collect()
}

/// Calls `next_events` until it hands something out (at most `calls` times).
async fn next(source: &mut RedditSource, calls: usize) -> Vec<SourceItem> {
    let stop = CancellationToken::new();
    for _ in 0..calls {
        let events = source.next_events(&stop).await.unwrap();
        if !events.is_empty() {
            return events;
        }
    }
    Vec::new()
}

fn now() -> i64 {
    Utc::now().timestamp()
}

#[tokio::test]
async fn pages_back_to_the_last_seen_item_and_hands_out_oldest_first() {
    let fake = FakeReddit::start(FakeSettings::default()).await.unwrap();
    let mut source = reddit(config(&fake));
    // The first poll finds nothing: from then on every new item counts.
    assert!(source
        .next_events(&CancellationToken::new())
        .await
        .unwrap()
        .is_empty());
    let expected: Vec<String> = (0..250)
        .map(|i| {
            let sub = if i % 2 == 0 { "rust" } else { "golang" };
            format!(
                "reddit:{}",
                fake.submit(sub, &format!("title {i}"), "", now())
            )
        })
        .collect();
    fake.submit("python", "not followed", "", now());
    let before = fake.stats().api_requests;
    let events = next(&mut source, 2).await;
    assert_eq!(ids(&events), expected);
    // 250 items and the end of the listing: three pages.
    assert_eq!(fake.stats().api_requests - before, 3);
    let SourceItem::Post { post, .. } = &events[1] else {
        panic!()
    };
    assert_eq!(post.channel, "reddit/r/golang");
    assert_eq!(post.text, "title 1");
    let newer: Vec<String> = (0..5)
        .map(|i| {
            format!(
                "reddit:{}",
                fake.submit("rust", &format!("newer {i}"), "body", now())
            )
        })
        .collect();
    let before = fake.stats().api_requests;
    assert_eq!(ids(&next(&mut source, 2).await), newer);
    assert_eq!(fake.stats().api_requests - before, 1);
    let stats = fake.stats();
    assert_eq!(
        (stats.over_limit, stats.bad_user_agent, stats.unauthorized),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn a_deleted_newest_item_does_not_stall_the_listing() {
    let fake = FakeReddit::start(FakeSettings::default()).await.unwrap();
    let mut source = reddit(RedditConfig {
        recheck_age_secs: 0,
        ..config(&fake)
    });
    source.next_events(&CancellationToken::new()).await.unwrap();
    let first = fake.submit("rust", "first", "", now());
    let second = fake.submit("rust", "second", "", now());
    assert_eq!(next(&mut source, 2).await.len(), 2);
    // Gone from the listing entirely, as removed submissions are: `before=second` would
    // now return nothing for good.
    fake.remove(&second);
    let deleted_mid_page = fake.submit("rust", "third", "", now());
    fake.delete(&deleted_mid_page);
    let fourth = fake.submit("rust", "fourth", "", now());
    assert_eq!(
        ids(&next(&mut source, 2).await),
        [format!("reddit:{fourth}")]
    );
    assert_eq!(source.metrics.skipped("deleted_before_seen"), 1);
    assert_ne!(first, fourth);
}

#[tokio::test]
async fn the_api_budget_is_never_exceeded() {
    let fake = FakeReddit::start(FakeSettings {
        window: Duration::from_millis(1_000),
        window_limit: 4,
        ..FakeSettings::default()
    })
    .await
    .unwrap();
    let mut source = reddit(RedditConfig {
        recheck_age_secs: 0,
        ..config(&fake)
    });
    let stop = CancellationToken::new();
    for _ in 0..10 {
        source.next_events(&stop).await.unwrap();
    }
    let stats = fake.stats();
    assert_eq!(stats.api_requests, 10);
    assert_eq!(stats.over_limit, 0);
    // Ten requests at four a window: the last one waited for the third window.
    let log = fake.log();
    let span = log[9].0.duration_since(log[0].0);
    assert!(span >= Duration::from_millis(1_900), "{span:?}");
}

#[tokio::test]
async fn faults_are_retried_or_skipped_and_the_source_goes_on() {
    let fake = FakeReddit::start(FakeSettings::default()).await.unwrap();
    let mut source = reddit(RedditConfig {
        recheck_age_secs: 0,
        max_body_bytes: 64 << 10,
        ..config(&fake)
    });
    source.next_events(&CancellationToken::new()).await.unwrap();
    let a = fake.submit("rust", "a", "", now());
    for fault in [
        Fault::Status(503),
        Fault::Status(500),
        Fault::Status(502),
        Fault::RateLimited(1),
    ] {
        fake.inject(fault);
    }
    let started = Instant::now();
    assert_eq!(ids(&next(&mut source, 1).await), [format!("reddit:{a}")]);
    // The 429 said the window resets in a second.
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(source.metrics.requests("503"), 1);
    assert_eq!(source.metrics.requests("429"), 1);
    // An HTML page and an oversized body are skipped; the items come with the next poll.
    let b = fake.submit("rust", "b", "", now());
    fake.inject(Fault::Html);
    fake.inject(Fault::Huge(100 << 10));
    assert_eq!(ids(&next(&mut source, 3).await), [format!("reddit:{b}")]);
    assert_eq!(source.metrics.skipped("not_json"), 1);
    assert_eq!(source.metrics.skipped("body_too_large"), 1);
    // Things that are not posts go to the DLQ with their reason; unknown fields are kept.
    fake.add_raw(
        "t3",
        json!({"name": "t3_notext", "subreddit": "rust", "created_utc": now()}),
    );
    fake.add_raw(
        "t3",
        json!({"subreddit": "rust", "title": "no name", "created_utc": now()}),
    );
    let c = fake.submit("rust", "c", "", now());
    let events = next(&mut source, 2).await;
    assert_eq!(
        ids(&events),
        [
            "malformed reddit/test/t3_notext empty_text".to_string(),
            format!("reddit:{c}")
        ]
    );
    assert_eq!(source.metrics.skipped("thing_without_name"), 1);
    assert_eq!(fake.stats().over_limit, 0);
}

#[tokio::test]
async fn tokens_are_renewed_and_rejected_credentials_are_an_error() {
    let fake = FakeReddit::start(FakeSettings::default()).await.unwrap();
    let mut source = reddit(RedditConfig {
        recheck_age_secs: 0,
        ..config(&fake)
    });
    source.next_events(&CancellationToken::new()).await.unwrap();
    fake.expire_tokens();
    let a = fake.submit("rust", "a", "", now());
    assert_eq!(ids(&next(&mut source, 1).await), [format!("reddit:{a}")]);
    let stats = fake.stats();
    assert_eq!((stats.token_requests, stats.unauthorized), (2, 1));

    for config in [
        RedditConfig {
            client_secret: "wrong".into(),
            ..config(&fake)
        },
        RedditConfig {
            grant: Grant::Password,
            username: "fake-user".into(),
            password: "wrong".into(),
            ..config(&fake)
        },
    ] {
        let mut refused = reddit(config);
        let error = refused
            .next_events(&CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(error, SourceError::Credentials { .. }), "{error}");
    }
    let mut script = reddit(RedditConfig {
        grant: Grant::Password,
        username: "fake-user".into(),
        password: "fake-password".into(),
        ..config(&fake)
    });
    script.next_events(&CancellationToken::new()).await.unwrap();
}

#[tokio::test]
async fn edits_and_deletions_become_updates_and_tombstones() {
    let fake = FakeReddit::start(FakeSettings::default()).await.unwrap();
    let mut source = reddit(RedditConfig {
        listings: vec![Listing::Submissions, Listing::Comments],
        ..config(&fake)
    });
    source.next_events(&CancellationToken::new()).await.unwrap();
    let post = fake.submit("rust", "a question", "first words", now() - 60);
    let comment_created = now() - 30;
    let comment = fake.comment("rust", &post, "an answer", comment_created);
    let removed = fake.comment("rust", &post, "a rude answer", now() - 20);
    let old = fake.submit("rust", "too old to recheck", "", now() - 40 * 3_600);
    assert_eq!(next(&mut source, 2).await.len(), 4);
    fake.edit(&post, "second words");
    fake.delete(&comment);
    fake.remove(&removed);
    fake.delete(&old);
    let events = next(&mut source, 3).await;
    assert_eq!(
        ids(&events),
        [
            format!("reddit:{post}"),
            format!("tombstone reddit:{comment}"),
            format!("tombstone reddit:{removed}"),
        ]
    );
    let SourceItem::Post { post: edited, .. } = &events[0] else {
        panic!()
    };
    assert_eq!(edited.text, "a question\n\nsecond words");
    let SourceItem::Tombstone { tombstone, .. } = &events[1] else {
        panic!()
    };
    assert_eq!(tombstone.reason, "deleted by its author");
    assert_eq!(tombstone.channel, "reddit/r/rust");
    assert_eq!(tombstone.created_at.timestamp(), comment_created);
    let SourceItem::Tombstone { tombstone, .. } = &events[2] else {
        panic!()
    };
    assert_eq!(tombstone.reason, "removed by moderators or reddit");
    // Nothing changed since: a recheck hands out nothing more.
    assert!(next(&mut source, 2).await.is_empty());
    assert_eq!(fake.stats().info_requests, 3);
}

#[tokio::test]
async fn a_restored_checkpoint_resumes_where_it_was_taken() {
    let fake = FakeReddit::start(FakeSettings::default()).await.unwrap();
    let mut first = reddit(config(&fake));
    first.next_events(&CancellationToken::new()).await.unwrap();
    let a = fake.submit("rust", "a", "", now());
    assert_eq!(next(&mut first, 2).await.len(), 1);
    let checkpoint = first.checkpoint().unwrap();
    // Handed out but never committed: served again after the restore.
    let b = fake.submit("rust", "b", "", now());
    assert_eq!(next(&mut first, 2).await.len(), 1);
    let mut second = reddit(config(&fake));
    second.restore(Some(&checkpoint)).unwrap();
    let c = fake.submit("rust", "c", "", now());
    assert_eq!(
        ids(&next(&mut second, 2).await),
        [format!("reddit:{b}"), format!("reddit:{c}")]
    );
    assert_ne!(a, b);
    let error = second.restore(Some(b"not json")).unwrap_err();
    assert!(matches!(error, SourceError::Checkpoint(_)), "{error}");
}

/// The gaps between consecutive API requests the fake saw.
fn gaps(fake: &FakeReddit) -> Vec<Duration> {
    let log = fake.log();
    log.windows(2)
        .map(|pair| pair[1].0.duration_since(pair[0].0))
        .collect()
}

#[tokio::test]
async fn a_429_waits_at_least_a_second_and_at_least_its_reset() {
    let fake = FakeReddit::start(FakeSettings::default()).await.unwrap();
    let mut source = reddit(RedditConfig {
        recheck_age_secs: 0,
        ..config(&fake)
    });
    source.next_events(&CancellationToken::new()).await.unwrap();
    // A reset of 0 (a window about to roll over) still waits a second; one of 2 s, 2 s.
    for (reset, floor) in [(0, 1_000), (2, 2_000)] {
        let before = fake.log().len();
        let item = fake.submit("rust", "a", "", now());
        fake.inject(Fault::RateLimited(reset));
        assert_eq!(ids(&next(&mut source, 2).await), [format!("reddit:{item}")]);
        // The request answered 429, then its retry.
        let gap = gaps(&fake)[before - 1 + 1];
        assert!(
            gap >= Duration::from_millis(floor),
            "a 429 with a reset of {reset} s was retried after {gap:?}"
        );
    }
    assert_eq!(source.metrics.requests("429"), 2);
}

#[tokio::test]
async fn a_spent_window_is_spread_and_a_restart_late_in_it_waits_for_its_reset() {
    let fake = FakeReddit::start(FakeSettings {
        window: Duration::from_secs(8),
        window_limit: 20,
        ..FakeSettings::default()
    })
    .await
    .unwrap();
    let mut first = reddit(RedditConfig {
        recheck_age_secs: 0,
        ..config(&fake)
    });
    let stop = CancellationToken::new();
    // Polling without pause: the requests spread over the window, 18 of its 20 (two are
    // headroom), instead of running it out at once.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        first.next_events(&stop).await.unwrap();
    }
    let sent = fake.stats().api_requests;
    assert!(
        (12..=18).contains(&sent),
        "{sent} requests in the first 6 s"
    );
    let gaps_before = gaps(&fake);
    assert!(
        gaps_before
            .iter()
            .all(|gap| *gap >= Duration::from_millis(250)),
        "{gaps_before:?}"
    );
    // Another process of the app spends the rest; the source's next answer says so.
    fake.spend(20);
    fake.submit("rust", "a", "", now());
    first.next_events(&stop).await.unwrap();
    let sent = fake.stats().api_requests;
    assert_eq!(fake.stats().over_limit, 1);
    let checkpoint = first.checkpoint().unwrap();
    drop(first);

    // Restarted in the last quarter of the window with its budget spent: nothing goes
    // before the reset, 8 s after the window's first request.
    let mut second = reddit(RedditConfig {
        recheck_age_secs: 0,
        ..config(&fake)
    });
    second.restore(Some(&checkpoint)).unwrap();
    let until = started + Duration::from_secs(10);
    while Instant::now() < until {
        second.next_events(&stop).await.unwrap();
    }
    let log = fake.log();
    let window_start = log[0].0;
    let after_restart: Vec<_> = log[sent as usize..].iter().map(|(at, _)| *at).collect();
    assert!(
        !after_restart.is_empty(),
        "the restarted source polls again"
    );
    assert!(
        after_restart
            .iter()
            .all(|at| at.duration_since(window_start) >= Duration::from_secs(8)),
        "a request went before the reset"
    );
    // The one 429 was the answer that told the first process; none since.
    assert_eq!(fake.stats().over_limit, 1);
}
