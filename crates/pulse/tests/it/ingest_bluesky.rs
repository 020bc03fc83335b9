//! `pulse ingest bluesky` against the in-process fake Jetstream on the shared Kafka: every
//! post of a configured channel reaches the raw topic exactly once across two SIGKILLs of
//! the source and a dropped connection (each resumes at the committed cursor), posts of no
//! channel are left out, and deletions arrive as tombstones.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{read_all, wait_for, Lane};
use pulse_ingest::bluesky::fake::FakeJetstream;

/// Posts the fake serves while the source runs, one every 15 ms; a quarter match no channel.
const POSTS: usize = 1_600;

#[test]
fn every_channel_post_once_across_two_sigkills_then_deletions() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime
        .block_on(FakeJetstream::start())
        .expect("fake jetstream");
    let lane = Lane::new("bluesky", 2);
    let checkpoints = format!("{}.checkpoints", lane.raw);
    let config = lane.write_config(&format!(
            r##"[sources.bluesky.fake]
jetstream_url = "{url}"
channels = [{{ name = "rust", terms = ["#rust", "rustlang"] }}, {{ name = "go", terms = ["golang"] }}]
backoff_initial_ms = 50
backoff_max_ms = 500
"##,
            url = fake.url()
        ));
    let args = [
        "--config",
        config.as_str(),
        "ingest",
        "bluesky",
        "--instance",
        "fake",
    ];
    let env = [("PULSE_KAFKA__TOPICS__CHECKPOINTS", checkpoints.as_str())];

    let mut source = lane.spawn("bluesky.0", &args, &env);
    wait_for("the source connected", || fake.cursors().len() == 1);
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let mut restarts = 0;
    for i in 0..POSTS {
        let (text, channel) = match i % 4 {
            0 => (format!("post {i} about golang"), Some("bluesky/go")),
            1 | 2 => (format!("post {i} about #rust"), Some("bluesky/rust")),
            _ => (format!("post {i} about nothing"), None),
        };
        let did = format!("did:plc:author{}", i % 7);
        let uri = fake.post(&did, &text, &["en"]);
        if let Some(channel) = channel {
            expected.insert(uri, format!("{channel} {text}"));
        }
        if i == POSTS / 2 {
            fake.cut();
        }
        if i == POSTS / 3 || i == 2 * POSTS / 3 {
            restarts += 1;
            lane.kill_and_restart(&mut source, &format!("bluesky.{restarts}"), &args, &env);
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    let matching = expected.len();
    assert_eq!(matching, POSTS * 3 / 4);
    wait_for("every channel post on the raw topic", || {
        read_all(&lane.raw, lane.partitions).len() >= matching
    });
    // Deletions of posts the source handed out recently become tombstones.
    let deleted: Vec<String> = expected.keys().rev().take(3).cloned().collect();
    for uri in &deleted {
        fake.delete(uri);
    }
    wait_for("the tombstones on the raw topic", || {
        read_all(&lane.raw, lane.partitions).len() >= matching + 3
    });
    let status = source.terminate();
    assert!(status.success(), "{status}: {}", source.logs());

    let records = read_all(&lane.raw, lane.partitions);
    assert_eq!(
        records.len(),
        matching + 3,
        "each post exactly once, and 3 tombstones"
    );
    let mut posts: BTreeMap<String, String> = BTreeMap::new();
    let mut tombstones = Vec::new();
    for record in &records {
        let value = record.json();
        let id = value["id"].as_str().expect("id").to_string();
        assert_eq!(record.key.as_deref(), Some(id.as_bytes()));
        if value["kind"] == "tombstone" {
            assert_eq!(value["reason"], "deleted by its author");
            tombstones.push(id);
            continue;
        }
        let line = format!(
            "{} {}",
            value["channel"].as_str().expect("channel"),
            value["text"].as_str().expect("text")
        );
        assert!(posts.insert(id, line).is_none(), "a post twice");
    }
    assert_eq!(posts, expected);
    tombstones.sort();
    let mut deleted = deleted;
    deleted.sort();
    assert_eq!(tombstones, deleted);
    // Every reconnection after the first asked to resume at a cursor.
    let cursors = fake.cursors();
    assert!(cursors.len() >= 4, "{cursors:?}");
    assert!(cursors[1..].iter().all(Option::is_some), "{cursors:?}");
}
