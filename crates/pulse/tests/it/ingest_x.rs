//! `pulse ingest x` against the in-process fake X on the shared Kafka: every post the fake
//! serves reaches the raw topic exactly once across two SIGKILLs of the source and a stream
//! cut mid-line (what the stream missed comes from recent search since the checkpoint's
//! last id), the stream rules are synced once, and edits arrive as updates of the first id.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{read_all, wait_for, Lane};
use pulse_ingest::x::fake::FakeX;

/// Posts the fake serves while the source runs, one every 15 ms.
const POSTS: usize = 1_500;
const TOKEN: &str = "fake-bearer";

#[test]
fn every_post_once_across_two_sigkills_and_a_cut_stream() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime.block_on(FakeX::start(TOKEN)).expect("fake x");
    let lane = Lane::new("x", 2);
    let checkpoints = format!("{}.checkpoints", lane.raw);
    let config = lane.write_config(&format!(
        r##"[sources.x.fake]
bearer_token = "{TOKEN}"
api_url = "{url}"
rules = [{{ tag = "rust", value = "#rustlang" }}, {{ tag = "go", value = "#golang" }}]
read_timeout_ms = 3000
backoff_scale = 0.01
"##,
        url = fake.url()
    ));
    let args = [
        "--config",
        config.as_str(),
        "ingest",
        "x",
        "--instance",
        "fake",
    ];
    let env = [("PULSE_KAFKA__TOPICS__CHECKPOINTS", checkpoints.as_str())];

    let mut source = lane.spawn("x.0", &args, &env);
    wait_for("the stream connected", || fake.open_streams() == 1);
    let mut ids = Vec::with_capacity(POSTS);
    let mut restarts = 0;
    for i in 0..POSTS {
        let tag = if i % 3 == 0 { "go" } else { "rust" };
        let text = format!("post {i} about {tag}");
        ids.push(if i == POSTS / 2 {
            fake.post_and_cut(tag, &text)
        } else {
            fake.post(tag, &text)
        });
        if i == POSTS / 3 || i == 2 * POSTS / 3 {
            restarts += 1;
            lane.kill_and_restart(&mut source, &format!("x.{restarts}"), &args, &env);
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    wait_for("every post on the raw topic", || {
        read_all(&lane.raw, lane.partitions).len() >= POSTS
    });
    let edited = [&ids[7], &ids[POSTS - 3]];
    for id in edited {
        fake.edit(id, "edited text");
    }
    wait_for("the edits on the raw topic", || {
        read_all(&lane.raw, lane.partitions).len() >= POSTS + 2
    });
    let status = source.terminate();
    assert!(status.success(), "{status}: {}", source.logs());

    let records = read_all(&lane.raw, lane.partitions);
    assert_eq!(
        records.len(),
        POSTS + 2,
        "each post exactly once, and two updates"
    );
    let mut texts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in &records {
        let post = record.json();
        let id = post["id"].as_str().expect("id").to_string();
        assert_eq!(record.key.as_deref(), Some(id.as_bytes()));
        texts
            .entry(id)
            .or_default()
            .push(post["text"].as_str().expect("text").to_string());
    }
    assert_eq!(texts.len(), POSTS);
    for (i, id) in ids.iter().enumerate() {
        let tag = if i % 3 == 0 { "go" } else { "rust" };
        let versions = &texts[&format!("twitter:{id}")];
        assert_eq!(versions[0], format!("post {i} about {tag}"));
        let edits = usize::from(edited.contains(&id));
        assert_eq!(versions.len(), 1 + edits, "{id}");
        if edits == 1 {
            assert_eq!(versions[1], "edited text");
        }
    }
    let stats = fake.stats();
    assert_eq!(
        (stats.rules_added, stats.rules_deleted),
        (2, 0),
        "rules synced once"
    );
    assert!(stats.connects >= 4, "{stats:?}");
    assert!(stats.searches >= 6, "gaps filled: {stats:?}");
    assert_eq!(stats.unauthorized, 0);
}

/// `pulse up` whose X source is refused its credentials keeps the other roles running, and
/// when stopped exits non-zero, naming the source and why, once.
#[test]
fn pulse_up_exits_non_zero_when_a_source_failed() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime.block_on(FakeX::start(TOKEN)).expect("fake X API");
    let lane = Lane::new("up-source-failed", 1);
    let config = lane.write_config(&format!(
        r##"[sources.x.refused]
bearer_token = "not-{TOKEN}"
api_url = "{url}"
rules = [{{ tag = "rust", value = "#rustlang" }}]
backoff_scale = 0.01
"##,
        url = fake.url()
    ));
    let checkpoints = format!("{}.checkpoints", lane.raw);
    let keyspace = pulse_testkit::keyspace("up_source_failed");
    let prefix = pulse_testkit::key_prefix("up-source-failed");
    let (batch_group, speed_group) = (
        format!("{}.batch", lane.group),
        format!("{}.speed", lane.group),
    );
    let mut up = lane.spawn(
        "up",
        &["--config", config.as_str(), "up"],
        &[
            ("PULSE_KAFKA__TOPICS__CHECKPOINTS", checkpoints.as_str()),
            ("PULSE_BATCH__KEYSPACE", keyspace.as_str()),
            ("PULSE_BATCH__GROUP", batch_group.as_str()),
            ("PULSE_SPEED__KEY_PREFIX", prefix.as_str()),
            ("PULSE_SPEED__GROUP", speed_group.as_str()),
            ("PULSE_LOG__FORMAT", "text"),
        ],
    );
    wait_for("the source to be refused", || {
        up.logs().contains("source stopped")
    });
    // The other roles went on: a post still goes through enrich.
    common::produce(
        &lane.raw,
        [(
            "up:1".to_string(),
            br#"{"id":"up:1","source":"http","channel":"up/c","text":"still enriched","created_at":"2026-12-01T10:00:00Z"}"#.to_vec(),
        )],
    );
    wait_for("the post enriched after the source stopped", || {
        common::count(&lane.enriched, 1) >= 1
    });
    let status = up.terminate();
    let logs = up.logs();
    assert_eq!(status.code(), Some(1), "{logs}");
    let errors: Vec<&str> = logs.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{logs}");
    assert!(errors[0].starts_with("error: source x/refused: "), "{logs}");
}
