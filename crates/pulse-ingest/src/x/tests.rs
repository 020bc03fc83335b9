//! Tests of the X source against the in-process fake.

use std::time::Duration;

use pulse_core::config::EnrichConfig;
use tokio_util::sync::CancellationToken;

use super::fake::FakeX;
use super::*;
use crate::live::testing::run;

const TOKEN: &str = "fake-bearer";

fn config(fake: &FakeX) -> XConfig {
    XConfig {
        bearer_token: TOKEN.into(),
        rules: vec![
            Rule {
                tag: "rust".into(),
                value: "#rustlang".into(),
            },
            Rule {
                tag: "go".into(),
                value: "#golang".into(),
            },
        ],
        api_url: fake.url(),
        read_timeout_ms: 2_000,
        poll_interval_ms: 50,
        backoff_scale: 0.001,
        ..XConfig::default()
    }
}

fn source(config: XConfig) -> XSource {
    let limits = EnrichConfig::default().post_limits();
    XSource::new(
        "test",
        config,
        limits,
        SourceMetrics::unregistered("x", "test"),
    )
    .unwrap()
}

fn name(event: &SourceItem) -> String {
    match event {
        SourceItem::Post { post, .. } => format!("{} {} {}", post.id, post.channel, post.text),
        SourceItem::Tombstone { tombstone, .. } => format!("tombstone {}", tombstone.id),
        SourceItem::Malformed { kind, .. } => format!("malformed {kind}"),
    }
}

fn describe(events: &[SourceItem]) -> Vec<String> {
    events.iter().map(name).collect()
}

async fn until_connected(fake: &FakeX, streams: usize) {
    for _ in 0..500 {
        if fake.open_streams() == streams {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the source did not connect");
}

#[tokio::test]
async fn rules_are_synced_and_posts_stream_in() {
    let fake = FakeX::start(TOKEN).await.unwrap();
    fake.preset_rule("cats", "cats has:images");
    fake.preset_rule("rust", "#rustlang");
    let mut running = run(source(config(&fake)));
    until_connected(&fake, 1).await;
    let mut tags: Vec<(String, String)> =
        fake.rules().into_iter().map(|r| (r.tag, r.value)).collect();
    tags.sort();
    assert_eq!(
        tags,
        [
            ("go".into(), "#golang".into()),
            ("rust".into(), "#rustlang".into())
        ]
    );
    let stats = fake.stats();
    assert_eq!((stats.rules_added, stats.rules_deleted), (1, 1));
    let ids: Vec<String> = (0..5)
        .map(|i| fake.post(if i % 2 == 0 { "rust" } else { "go" }, &format!("post {i}")))
        .collect();
    let events = running.take(5, name).await;
    let want: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let tag = if i % 2 == 0 { "rust" } else { "go" };
            format!("twitter:{id} x/{tag} post {i}")
        })
        .collect();
    assert_eq!(describe(&events), want);
    let SourceItem::Post { post, .. } = &events[0] else {
        panic!()
    };
    assert_eq!(post.author.as_deref(), Some("fake_user"));
    assert_eq!(post.lang.as_deref(), Some("en"));
    running.finish().await;
}

#[tokio::test]
async fn a_cut_stream_reconnects_and_search_fills_the_gap() {
    let fake = FakeX::start(TOKEN).await.unwrap();
    let mut running = run(source(config(&fake)));
    until_connected(&fake, 1).await;
    let first = fake.post("rust", "before the cut");
    assert_eq!(running.take(1, name).await.len(), 1);
    let cut = fake.post_and_cut("rust", "cut in the middle of its line");
    let missed = fake.post("go", "posted while disconnected");
    let events = running.take(2, name).await;
    assert_eq!(
        describe(&events),
        [
            format!("twitter:{cut} x/rust cut in the middle of its line"),
            format!("twitter:{missed} x/go posted while disconnected"),
        ]
    );
    until_connected(&fake, 1).await;
    let after = fake.post("rust", "after the reconnection");
    assert_eq!(
        describe(&running.take(1, name).await),
        [format!("twitter:{after} x/rust after the reconnection")]
    );
    let source = running.finish().await;
    // An established connection that drops is reconnected at once, as X asks.
    assert_eq!(source.waits(), []);
    assert_ne!(first, after);
    assert_eq!(fake.stats().connects, 2);
}

#[tokio::test]
async fn a_silent_stall_reconnects_but_keep_alives_do_not() {
    let fake = FakeX::start(TOKEN).await.unwrap();
    let mut running = run(source(XConfig {
        read_timeout_ms: 600,
        ..config(&fake)
    }));
    until_connected(&fake, 1).await;
    for _ in 0..6 {
        fake.keep_alive();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(fake.stats().connects, 1, "keep-alives hold the stream");
    let seen = fake.post("rust", "seen on the stream");
    assert_eq!(running.take(1, name).await.len(), 1);
    fake.stall();
    let stalled = fake.post("rust", "never sent by the stalled stream");
    assert_eq!(
        describe(&running.take(1, name).await),
        [format!(
            "twitter:{stalled} x/rust never sent by the stalled stream"
        )]
    );
    let source = running.finish().await;
    assert_eq!(fake.stats().connects, 2);
    assert_eq!(source.metrics.skipped("stream_stalled"), 1);
    assert_ne!(seen, stalled);
}

#[tokio::test]
async fn refused_connections_wait_as_documented() {
    let fake = FakeX::start(TOKEN).await.unwrap();
    fake.refuse_connections(&[503, 500, 503, 429, 429, 502]);
    let mut running = run(source(config(&fake)));
    until_connected(&fake, 1).await;
    fake.post("rust", "finally");
    running.take(1, name).await;
    let source = running.finish().await;
    let ms = Duration::from_micros;
    // X's schedules scaled by 1/1000: HTTP errors 5 s doubling, 429s 60 s doubling (each
    // schedule keeps its own step), reset by the connection that succeeds. A 429 waits a
    // second at least, whatever the scale.
    assert_eq!(
        source.waits(),
        [
            (WaitReason::Http, ms(5_000)),
            (WaitReason::Http, ms(10_000)),
            (WaitReason::Http, ms(20_000)),
            (WaitReason::RateLimited, Duration::from_secs(1)),
            (WaitReason::RateLimited, Duration::from_secs(1)),
            (WaitReason::Http, ms(40_000)),
        ]
    );
    let times = fake.connect_times();
    assert_eq!(times.len(), 7);
    for (pair, (_, wait)) in times.windows(2).zip(source.waits()) {
        assert!(
            pair[1] - pair[0] >= *wait,
            "{:?} < {wait:?}",
            pair[1] - pair[0]
        );
    }

    // Network errors: linear from 250 ms (here 250 µs), capped at 16 s (16 ms).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut unreachable = source_with_url(&fake, dead);
    let stop = CancellationToken::new();
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            stop.cancel();
        })
    };
    assert!(unreachable.next_events(&stop).await.unwrap().is_empty());
    stopper.await.unwrap();
    let waits = unreachable.waits();
    // The 64th wait reaches the cap: the schedule was walked to its end.
    assert!(waits.len() > 66, "{}", waits.len());
    for (n, (reason, wait)) in waits.iter().enumerate() {
        assert_eq!(*reason, WaitReason::Network);
        assert_eq!(*wait, ms((250 * (n as u64 + 1)).min(16_000)));
    }
}

fn source_with_url(fake: &FakeX, url: String) -> XSource {
    source(XConfig {
        api_url: url,
        ..config(fake)
    })
}

#[tokio::test]
async fn edits_update_the_first_id_and_bad_lines_are_counted() {
    let fake = FakeX::start(TOKEN).await.unwrap();
    let mut running = run(source(XConfig {
        max_line_bytes: 4_096,
        ..config(&fake)
    }));
    until_connected(&fake, 1).await;
    let id = fake.post("rust", "first words");
    running.take(1, name).await;
    fake.edit(&id, "second words");
    let SourceItem::Post { post, .. } = &running.take(1, name).await[0] else {
        panic!()
    };
    assert_eq!(
        (post.id.as_str(), post.text.as_str()),
        (format!("twitter:{id}").as_str(), "second words")
    );

    fake.send_raw(b"<html>busy</html>\r\n");
    fake.send_raw(br#"{"data": {"id": "77", "created_at": "2026-01-01T00:00:00Z"}, "matching_rules": [{"tag": "rust"}]}"#);
    fake.send_raw(b"\r\n");
    fake.send_raw(br#"{"errors": [{"title": "operational-disconnect"}]}"#);
    fake.send_raw(b"\r\n");
    fake.send_raw(format!("{{\"data\": \"{}\"}}\r\n", "x".repeat(10_000)).as_bytes());
    let after = fake.post("go", "still streaming");
    let events = running.take(3, name).await;
    assert_eq!(
        describe(&events),
        [
            "malformed not_json".to_string(),
            "malformed missing_field".to_string(),
            format!("twitter:{after} x/go still streaming"),
        ]
    );
    let source = running.finish().await;
    assert_eq!(source.metrics.skipped("line_too_long"), 1);
    assert_eq!(source.metrics.skipped("message_without_data"), 1);
    assert_eq!(fake.stats().connects, 1);
}

#[tokio::test]
async fn a_rejected_token_is_an_error() {
    let fake = FakeX::start(TOKEN).await.unwrap();
    let mut refused = source(XConfig {
        bearer_token: "wrong".into(),
        ..config(&fake)
    });
    let error = refused
        .next_events(&CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(error, SourceError::Credentials { .. }), "{error}");
}

#[tokio::test]
async fn search_mode_pages_and_then_reads_only_what_is_new() {
    let fake = FakeX::start(TOKEN).await.unwrap();
    fake.preset_rule("rust", "#rustlang");
    fake.preset_rule("go", "#golang");
    let ids: Vec<String> = (0..150)
        .map(|i| fake.post("rust", &format!("r{i}")))
        .collect();
    let mut searching = source(XConfig {
        mode: Mode::Search,
        ..config(&fake)
    });
    let stop = CancellationToken::new();
    let events = searching.next_events(&stop).await.unwrap();
    let want: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| format!("twitter:{id} x/rust r{i}"))
        .collect();
    assert_eq!(describe(&events), want);
    let checkpoint = searching.checkpoint().unwrap();
    let newer = fake.post("go", "newer");
    assert_eq!(
        describe(&searching.next_events(&stop).await.unwrap()),
        [format!("twitter:{newer} x/go newer")]
    );
    // A restored checkpoint searches from where it was taken.
    let mut restored = source(XConfig {
        mode: Mode::Search,
        ..config(&fake)
    });
    restored.restore(Some(&checkpoint)).unwrap();
    assert_eq!(
        describe(&restored.next_events(&stop).await.unwrap()),
        [format!("twitter:{newer} x/go newer")]
    );
}

#[tokio::test]
async fn a_429_on_search_waits_at_least_a_second_and_at_least_its_reset() {
    let fake = FakeX::start(TOKEN).await.unwrap();
    fake.preset_rule("rust", "#rustlang");
    fake.preset_rule("go", "#golang");
    let posted = fake.post("rust", "found after the waits");
    // A reset of 0 (the window rolls over now) and one 2 s away; the backoff scale of the
    // documented schedules does not shorten either.
    fake.refuse_searches(&[0, 2]);
    let mut searching = source(XConfig {
        mode: Mode::Search,
        ..config(&fake)
    });
    let stop = CancellationToken::new();
    let events = searching.next_events(&stop).await.unwrap();
    assert_eq!(
        describe(&events),
        [format!("twitter:{posted} x/rust found after the waits")]
    );
    let log = fake.search_log();
    assert_eq!(
        log.iter().map(|(_, status)| *status).collect::<Vec<_>>(),
        [429, 429, 200, 200]
    );
    let gap = |i: usize| log[i + 1].0.duration_since(log[i].0);
    assert!(gap(0) >= Duration::from_secs(1), "{:?}", gap(0));
    assert!(gap(1) >= Duration::from_secs(2), "{:?}", gap(1));
}

#[tokio::test]
async fn the_stream_is_read_while_its_gap_waits_for_the_search_budget() {
    let fake = FakeX::start(TOKEN).await.unwrap();
    // Two searches per 4 s: with one kept as headroom, the gap's second rule waits for
    // the window's reset.
    fake.limit_searches(2, Duration::from_secs(4));
    // The fake sends no keep-alives: a long read timeout keeps the stream from stalling.
    let mut running = run(source(XConfig {
        read_timeout_ms: 60_000,
        ..config(&fake)
    }));
    until_connected(&fake, 1).await;
    fake.post("rust", "before the cut");
    running.take(1, name).await;
    let missed = fake.post_and_cut("go", "missed by the stream");
    until_connected(&fake, 1).await;
    let started = Instant::now();
    let live = fake.post("rust", "on the stream meanwhile");
    assert_eq!(
        describe(&running.take(1, name).await),
        [format!("twitter:{live} x/rust on the stream meanwhile")]
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the stream waited for the search: {:?}",
        started.elapsed()
    );
    assert_eq!(
        describe(&running.take(1, name).await),
        [format!("twitter:{missed} x/go missed by the stream")]
    );
    let source = running.finish().await;
    let log = fake.search_log();
    assert_eq!(fake.stats().searches_over_limit, 0, "{log:?}");
    // The gap's two searches, one per rule, the second after the first window's reset.
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[1].0.duration_since(log[0].0) >= Duration::from_secs(3));
    // Reconnected at once after the cut: no wait at all.
    assert_eq!(source.waits(), []);
}

#[tokio::test]
async fn the_stream_is_read_while_its_gaps_wait_long_for_the_search_budget() {
    let fake = FakeX::start(TOKEN).await.unwrap();
    fake.keep_alive_every(Duration::from_millis(200));
    // One search in 15 minutes: after the first gap's first search, gaps wait that long.
    let mut running = run(source(XConfig {
        read_timeout_ms: 1_000,
        max_search_requests: 1,
        ..config(&fake)
    }));
    until_connected(&fake, 1).await;
    fake.post("rust", "before the cut");
    running.take(1, name).await;
    for round in 0..3 {
        let missed = fake.post_and_cut("go", &format!("missed {round}"));
        until_connected(&fake, 1).await;
        let live = fake.post("rust", &format!("on the stream {round}"));
        let events = running.take(1, name).await;
        let names = describe(&events);
        assert!(
            names == [format!("twitter:{live} x/rust on the stream {round}")]
                || names == [format!("twitter:{missed} x/go missed {round}")],
            "{names:?}"
        );
        if names[0].contains("missed") {
            running.take(1, name).await;
        }
        fake.stall();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        until_connected(&fake, 1).await;
        let after = fake.post("rust", &format!("after the stall {round}"));
        assert_eq!(
            describe(&running.take(1, name).await),
            [format!("twitter:{after} x/rust after the stall {round}")]
        );
    }
    running.finish().await;
}

#[tokio::test]
async fn an_older_version_found_after_its_edit_is_not_handed_out_over_it() {
    let fake = FakeX::start(TOKEN).await.unwrap();
    let mut running = run(source(XConfig {
        read_timeout_ms: 60_000,
        ..config(&fake)
    }));
    until_connected(&fake, 1).await;
    fake.post("rust", "before the cut");
    running.take(1, name).await;
    // The first version is lost with the cut, and the gap's first search is refused: the
    // edit comes on the stream before the search finds the first version.
    fake.refuse_searches(&[2]);
    let first = fake.post_and_cut("go", "first words");
    until_connected(&fake, 1).await;
    fake.edit(&first, "second words");
    assert_eq!(
        describe(&running.take(1, name).await),
        [format!("twitter:{first} x/go second words")]
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    running.nothing_more(name).await;
    let source = running.finish().await;
    assert_eq!(source.metrics.skipped("older_version"), 1);
    assert_eq!(fake.search_log().len(), 3, "{:?}", fake.search_log());
}
