//! Acceptance: with at-least-once delivery, posts ingested from a file reach the enriched
//! topic with no id missing across SIGKILLs of `pulse enrich` (duplicates counted); two
//! processes in one group (exactly-once, the default) split the partitions.

use crate::common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use common::{committed, count, high_watermarks, read_all, wait_for, Lane, Role};

const TOPICS: [&str; 4] = [
    "Rust async runtimes and Kafka consumer groups",
    "The new ScyllaDB release cut our tail latency",
    "Redis streams for the live dashboard feed",
    "ONNX Runtime inference on two CPU cores",
];

/// Writes `n` JSONL posts with ids `{prefix}:{i}`; returns the ids.
fn write_posts(path: &Path, prefix: &str, n: usize) -> BTreeSet<String> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("posts file"));
    let mut ids = BTreeSet::new();
    for i in 0..n {
        let id = format!("{prefix}:{i}");
        let post = serde_json::json!({
            "id": id,
            "source": "file",
            "channel": format!("test/{}", i % 3),
            "text": format!("Post {i}: {} #testing", TOPICS[i % TOPICS.len()]),
            "created_at": "2026-11-01T00:00:00Z",
        });
        writeln!(file, "{post}").expect("write post");
        ids.insert(id);
    }
    file.flush().expect("flush posts");
    ids
}

fn enriched_ids(lane: &Lane, by_model: bool) -> (BTreeSet<String>, usize) {
    let records = read_all(&lane.enriched, lane.partitions);
    let mut ids = BTreeSet::new();
    for record in &records {
        let post = record.json();
        let id = post["id"].as_str().expect("id").to_string();
        assert_eq!(
            record.key.as_deref(),
            Some(id.as_bytes()),
            "keyed by post id"
        );
        assert!(
            post["keywords"].as_array().is_some_and(|k| !k.is_empty()),
            "{post}"
        );
        if by_model {
            // Enriched by the shipped model: every task answered.
            assert_eq!(post["model"], "pulse-minilm-multitask@2.0.0", "{post}");
            assert!(post["sentiment"]["label"].is_string(), "{post}");
            assert_eq!(
                post["emotions"].as_object().map(|e| e.len()),
                Some(7),
                "{post}"
            );
        }
        ids.insert(id);
    }
    (ids, records.len())
}

/// Every raw record handled and committed by the lane's group.
fn all_committed(lane: &Lane) -> bool {
    committed(&lane.group, &lane.raw, lane.partitions)
        == high_watermarks(&lane.raw, lane.partitions)
}

#[test]
fn at_least_once_every_post_survives_two_sigkills_of_enrich() {
    const POSTS: usize = 20_000;
    let lane = Lane::new("sigkill", 4);
    let path = lane.dir.path().join("posts.jsonl");
    let ids = write_posts(&path, "sigkill", POSTS);
    lane.ingest_file(&path);
    assert_eq!(count(&lane.raw, 4), POSTS as i64);

    // Small batches keep the run long enough to be killed in the middle; keywords only
    // (the model's share is covered by the exactly-once test).
    let settings = [
        ("PULSE_ENRICH__DELIVERY", "at_least_once"),
        ("PULSE_ENRICH__MODELS", "[]"),
        ("PULSE_KAFKA__SESSION_TIMEOUT_MS", "6000"),
        ("PULSE_PIPELINE__BATCH_SIZE", "20"),
        ("PULSE_PIPELINE__MAX_IN_FLIGHT_BATCHES", "2"),
    ];
    common::kill_enrich_twice(&lane, &settings, POSTS as i64);

    let mut enrich = lane.spawn_enrich("enrich-final", &settings[..3]);
    wait_for("every raw record committed", || all_committed(&lane));
    assert!(
        enrich.terminate().success(),
        "graceful exit; log: {}",
        enrich.logs()
    );

    let (got, records) = enriched_ids(&lane, false);
    assert_eq!(
        got.len(),
        POSTS,
        "missing ids: {:?}",
        ids.difference(&got).take(10).collect::<Vec<_>>()
    );
    assert_eq!(got, ids);
    let duplicates = records - got.len();
    println!("delivered {POSTS} posts in {records} records: {duplicates} duplicates from redelivery after 2 SIGKILLs");
    assert!(records >= POSTS);
    assert_eq!(count(&lane.dlq, 4), 0, "no good post is dead-lettered");
}

/// Partitions a role holds now, from its `partitions assigned`/`revoked` log events.
fn current_assignment(role: &Role) -> BTreeSet<String> {
    let mut current = BTreeSet::new();
    for line in role.logs().lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match event["fields"]["message"].as_str() {
            Some("partitions assigned") => {
                current = event["fields"]["partitions"]
                    .as_str()
                    .unwrap_or_default()
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect();
            }
            Some("partitions revoked") => current.clear(),
            _ => {}
        }
    }
    current
}

#[test]
fn two_enrich_processes_split_the_partitions_and_deliver_every_post() {
    const POSTS: usize = 6_000;
    let lane = Lane::new("pair", 4);
    let mut first = lane.spawn_enrich("first", &[]);
    let mut second = lane.spawn_enrich("second", &[]);
    wait_for(
        "both members to hold disjoint halves of the partitions",
        || {
            let (a, b) = (current_assignment(&first), current_assignment(&second));
            !a.is_empty() && !b.is_empty() && a.is_disjoint(&b) && a.len() + b.len() == 4
        },
    );

    let path = lane.dir.path().join("posts.jsonl");
    let ids = write_posts(&path, "pair", POSTS);
    lane.ingest_file(&path);
    wait_for("every raw record committed", || all_committed(&lane));
    assert!(first.terminate().success());
    assert!(second.terminate().success());

    let consumed = |role: &Role| {
        role.log_events("stage stopped")
            .last()
            .and_then(|e| e["fields"]["consumed"].as_u64())
            .expect("stage stopped event with a consumed count")
    };
    let (a, b) = (consumed(&first), consumed(&second));
    println!("first consumed {a}, second consumed {b}");
    assert!(a > 0 && b > 0, "both members consumed: {a} and {b}");
    assert_eq!(
        a + b,
        POSTS as u64,
        "no record consumed twice without a rebalance"
    );
    let (got, records) = enriched_ids(&lane, true);
    assert_eq!(got, ids);
    assert_eq!(records, POSTS);
}
