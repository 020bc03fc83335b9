//! Tests of the Bluesky source against the in-process fake Jetstream.

use std::time::Duration;

use pulse_core::config::EnrichConfig;

use super::fake::FakeJetstream;
use super::*;
use crate::live::testing::run;

const DID: &str = "did:plc:abcdefghijklmnop";

fn config(fake: &FakeJetstream) -> BlueskyConfig {
    BlueskyConfig {
        jetstream_url: fake.url(),
        channels: vec![
            Channel {
                name: "rust".into(),
                terms: vec!["#rust".into(), "rustlang".into()],
            },
            Channel {
                name: "go".into(),
                terms: vec!["golang".into()],
            },
        ],
        read_timeout_ms: 5_000,
        backoff_initial_ms: 10,
        backoff_max_ms: 50,
        ..BlueskyConfig::default()
    }
}

fn source(config: BlueskyConfig) -> BlueskySource {
    let limits = EnrichConfig::default().post_limits();
    BlueskySource::new(
        "test",
        config,
        limits,
        SourceMetrics::unregistered("bluesky", "test"),
    )
    .unwrap()
}

fn names(events: &[SourceItem]) -> Vec<String> {
    events.iter().map(describe).collect()
}

fn describe(event: &SourceItem) -> String {
    match event {
        SourceItem::Post { post, .. } => format!("{} {} {}", post.id, post.channel, post.text),
        SourceItem::Tombstone { tombstone, .. } => {
            format!("tombstone {} {}", tombstone.id, tombstone.channel)
        }
        SourceItem::Malformed { kind, .. } => format!("malformed {kind}"),
    }
}

async fn connected(fake: &FakeJetstream, connections: usize) {
    for _ in 0..500 {
        if fake.cursors().len() == connections {
            // The connection registers before it starts sending.
            tokio::time::sleep(Duration::from_millis(30)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no connection {connections}");
}

#[tokio::test]
async fn posts_go_to_the_channel_of_their_terms_and_hashtags() {
    let fake = FakeJetstream::start().await.unwrap();
    let mut running = run(source(config(&fake)));
    connected(&fake, 1).await;
    let tagged = fake.post(DID, "Loving #Rust today", &["en"]);
    fake.post(DID, "a trusty old bike", &["en"]);
    let phrase = fake.post(DID, "Is RustLang worth it?", &["en"]);
    fake.identity(DID);
    fake.post(DID, "", &["en"]);
    let go = fake.post(DID, "golang generics", &["de"]);
    fake.post(DID, "nothing to see", &["en"]);
    assert_eq!(
        names(&running.take(3, describe).await),
        [
            format!("{tagged} bluesky/rust Loving #Rust today"),
            format!("{phrase} bluesky/rust Is RustLang worth it?"),
            format!("{go} bluesky/go golang generics"),
        ]
    );
    running.nothing_more(describe).await;
    let source = running.finish().await;
    assert_eq!(source.metrics.skipped("no_matching_channel"), 2);
    assert_eq!(source.metrics.skipped("no_text"), 1);
}

#[tokio::test]
async fn every_post_without_channels_and_languages_filtered() {
    let fake = FakeJetstream::start().await.unwrap();
    let mut running = run(source(BlueskyConfig {
        channels: Vec::new(),
        langs: vec!["en".into()],
        ..config(&fake)
    }));
    connected(&fake, 1).await;
    let english = fake.post(DID, "hello there", &["en"]);
    fake.post(DID, "hallo", &["de"]);
    fake.post(DID, "no language given", &[]);
    // Tags match by BCP 47's basic filtering: `en` covers en-US, en-GB, EN-au.
    let american = fake.post(DID, "howdy", &["en-US"]);
    let british = fake.post(DID, "cheers", &["EN-gb"]);
    let bilingual = fake.post(DID, "hallo, hello", &["de", "en-AU"]);
    fake.post(DID, "not english", &["eng-x"]);
    assert_eq!(
        names(&running.take(4, describe).await),
        [
            format!("{english} bluesky/all hello there"),
            format!("{american} bluesky/all howdy"),
            format!("{british} bluesky/all cheers"),
            format!("{bilingual} bluesky/all hallo, hello"),
        ]
    );
    running.nothing_more(describe).await;
    running.finish().await;
}

#[tokio::test]
async fn updates_are_posts_again_and_deletes_are_tombstones() {
    let fake = FakeJetstream::start().await.unwrap();
    let mut running = run(source(config(&fake)));
    connected(&fake, 1).await;
    let uri = fake.post(DID, "first #rust words", &["en"]);
    running.take(1, describe).await;
    fake.update(&uri, "second #rust words");
    fake.delete(&uri);
    fake.delete(&format!("at://{DID}/app.bsky.feed.post/unknown"));
    assert_eq!(
        names(&running.take(2, describe).await),
        [
            format!("{uri} bluesky/rust second #rust words"),
            format!("tombstone {uri} bluesky/rust"),
        ]
    );
    running.nothing_more(describe).await;
    let source = running.finish().await;
    assert_eq!(source.metrics.skipped("delete_of_untracked"), 1);
}

#[tokio::test]
async fn a_dropped_connection_resumes_from_its_cursor() {
    let fake = FakeJetstream::start().await.unwrap();
    let mut running = run(source(config(&fake)));
    connected(&fake, 1).await;
    for i in 0..3 {
        fake.post(DID, &format!("#rust {i}"), &["en"]);
    }
    running.take(3, describe).await;
    fake.cut();
    let missed: Vec<String> = (3..5)
        .map(|i| fake.post(DID, &format!("#rust {i}"), &["en"]))
        .collect();
    let events = names(&running.take(2, describe).await);
    assert_eq!(
        events,
        missed
            .iter()
            .zip(3..5)
            .map(|(uri, i)| format!("{uri} bluesky/rust #rust {i}"))
            .collect::<Vec<_>>()
    );
    running.nothing_more(describe).await;
    let source = running.finish().await;
    let cursors = fake.cursors();
    assert_eq!(cursors.len(), 2);
    assert_eq!(cursors[0], None);
    // The second connection resumed at the last event handled.
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&source.checkpoint().unwrap()).unwrap();
    assert!(cursors[1].is_some() && cursors[1] < checkpoint["cursor"].as_i64());
}

#[tokio::test]
async fn a_silent_stall_reconnects() {
    let fake = FakeJetstream::start().await.unwrap();
    let mut running = run(source(BlueskyConfig {
        read_timeout_ms: 500,
        ..config(&fake)
    }));
    connected(&fake, 1).await;
    fake.post(DID, "#rust before", &["en"]);
    running.take(1, describe).await;
    fake.stall();
    let after = fake.post(DID, "#rust during the stall", &["en"]);
    assert_eq!(
        names(&running.take(1, describe).await),
        [format!("{after} bluesky/rust #rust during the stall")]
    );
    let source = running.finish().await;
    assert_eq!(source.metrics.skipped("stream_stalled"), 1);
    assert_eq!(fake.cursors().len(), 2);
}

#[tokio::test]
async fn bad_messages_are_dead_lettered_or_skipped() {
    let fake = FakeJetstream::start().await.unwrap();
    let mut running = run(source(BlueskyConfig {
        max_message_bytes: 2_048,
        ..config(&fake)
    }));
    connected(&fake, 1).await;
    fake.send_raw("<html>bad gateway</html>");
    fake.send_raw(&format!(
        r#"{{"did":"{DID}","time_us":1,"kind":"commit","commit":{{"operation":"create","collection":"app.bsky.feed.post","rkey":"x1"}}}}"#
    ));
    fake.send_raw(&format!(
        r#"{{"kind":"commit","padding":"{}"}}"#,
        "x".repeat(4_096)
    ));
    let good = fake.post(DID, "#rust still here", &["en"]);
    assert_eq!(
        names(&running.take(3, describe).await),
        [
            "malformed not_json".to_string(),
            "malformed missing_field".to_string(),
            format!("{good} bluesky/rust #rust still here"),
        ]
    );
    let source = running.finish().await;
    assert_eq!(source.metrics.skipped("message_too_large"), 1);
}

#[tokio::test]
async fn a_restored_checkpoint_reconnects_at_its_cursor() {
    let fake = FakeJetstream::start().await.unwrap();
    let mut running = run(source(config(&fake)));
    connected(&fake, 1).await;
    fake.post(DID, "#rust one", &["en"]);
    running.take(1, describe).await;
    let first = running.finish().await;
    let checkpoint = first.checkpoint().unwrap();
    let later = fake.post(DID, "#rust two", &["en"]);
    let mut second = source(config(&fake));
    second.restore(Some(&checkpoint)).unwrap();
    let mut running = run(second);
    assert_eq!(
        names(&running.take(1, describe).await),
        [format!("{later} bluesky/rust #rust two")]
    );
    running.nothing_more(describe).await;
    running.finish().await;
}

#[tokio::test]
async fn a_server_that_closes_at_once_is_backed_off_not_hammered() {
    let fake = FakeJetstream::start().await.unwrap();
    fake.close_next(6, 1013);
    let mut running = run(source(BlueskyConfig {
        backoff_initial_ms: 200,
        backoff_max_ms: 1_600,
        ..config(&fake)
    }));
    connected(&fake, 7).await;
    let post = fake.post(DID, "#rust at last", &["en"]);
    assert_eq!(
        names(&running.take(1, describe).await),
        [format!("{post} bluesky/rust #rust at last")]
    );
    running.finish().await;
    // Six closes, six waits: 200, 400, 800, 1600, 1600, 1600 ms less up to half of each.
    let times = fake.connected_at();
    assert_eq!(times.len(), 7, "{} connections", times.len());
    let waits: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (wait, step) in waits.iter().zip([200, 400, 800, 1_600, 1_600, 1_600]) {
        assert!(*wait >= Duration::from_millis(step / 2), "{waits:?}");
    }
}

#[tokio::test]
async fn pings_do_not_hide_a_stall() {
    let fake = FakeJetstream::start().await.unwrap();
    fake.ping_while_stalled(Duration::from_millis(100));
    let mut running = run(source(BlueskyConfig {
        read_timeout_ms: 600,
        ..config(&fake)
    }));
    connected(&fake, 1).await;
    fake.post(DID, "#rust before", &["en"]);
    running.take(1, describe).await;
    fake.stall();
    let after = fake.post(DID, "#rust during the stall", &["en"]);
    assert_eq!(
        names(&running.take(1, describe).await),
        [format!("{after} bluesky/rust #rust during the stall")]
    );
    let source = running.finish().await;
    assert_eq!(source.metrics.skipped("stream_stalled"), 1);
    assert_eq!(fake.cursors().len(), 2);
}
