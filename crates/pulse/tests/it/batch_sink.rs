//! Acceptance of `pulse sink batch` and the batch commands: enriched posts from Kafka reach
//! Cassandra; while the node is stopped (a private one of this test's) the sink retries,
//! stays up and commits nothing past unwritten posts, so once it has caught up every post is
//! stored exactly once; records that are not enriched posts are dead-lettered; `pulse batch
//! recompute` and `pulse batch rollups` then count every post.

use crate::common;

use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use common::{committed, high_watermarks, produce, read_all, wait_for, Lane, PrivateStack, Role};
use pulse_batch::BatchStore;
use pulse_core::config::BatchConfig;
use pulse_kafka::dlq::header;
use pulse_testkit::{post, PostBuilder};

const CHANNEL: &str = "test/batch-sink";
const POSTS: usize = 4_000;

fn start_time() -> DateTime<Utc> {
    "2026-04-01T10:00:00Z".parse().expect("time")
}

/// Post `i`, two seconds after post `i - 1`, without keywords.
fn batch_post(i: usize) -> PostBuilder {
    let created_at = start_time() + chrono::Duration::seconds(2 * i as i64);
    post(format!("batchsink:{i:05}"), CHANNEL, created_at).text(format!("post {i}"))
}

/// The enriched records of posts `range`, each with one of seven keywords.
fn posts(range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    range
        .map(|i| batch_post(i).keyword(format!("term{}", i % 7)).record())
        .collect()
}

#[test]
fn the_batch_sink_stores_every_post_once_across_a_cql_restart() {
    let lane = Lane::new("batchsink", 2);
    let stack = PrivateStack::start(&["cql"]);
    let nodes = stack.cql_nodes();
    let keyspace = pulse_testkit::keyspace("sink");
    let group = format!("{}.batch", lane.group);
    let batch_env = |command: &mut Command| {
        command
            .env("PULSE_BATCH__NODES", &nodes)
            .env("PULSE_BATCH__KEYSPACE", &keyspace)
            .env("PULSE_BATCH__GROUP", &group)
            .env("PULSE_BATCH__REQUEST_TIMEOUT_MS", "2000")
            .env("PULSE_BATCH__CONNECT_TIMEOUT_MS", "1000");
    };
    let run = |args: &[&str]| {
        let mut command = lane.pulse(args);
        batch_env(&mut command);
        let output = command.output().expect("pulse runs");
        assert!(
            output.status.success(),
            "pulse {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    };

    let applied = run(&["schema", "apply"]);
    assert!(
        applied.contains(&format!("keyspace {keyspace}: created")),
        "{applied}"
    );
    assert!(
        applied.contains(&format!("{keyspace}.posts_by_channel: created")),
        "{applied}"
    );
    let again = run(&["schema", "apply"]);
    assert!(
        again.contains(&format!("keyspace {keyspace}: exists")),
        "{again}"
    );
    assert!(!again.contains("created"), "{again}");

    let mut first = posts(0..POSTS / 2);
    first.insert(10, ("bad:1".into(), b"{not json".to_vec()));
    first.insert(
        500,
        (
            "bad:2".into(),
            br#"{"id":"x","text":"a raw post"}"#.to_vec(),
        ),
    );
    produce(&lane.enriched, first);

    let log = lane.dir.path().join("sink.log");
    let mut sink = {
        let mut command = lane.pulse(&["sink", "batch"]);
        batch_env(&mut command);
        Role {
            child: command
                .env("PULSE_PIPELINE__DRAIN_TIMEOUT_MS", "5000")
                .env("PULSE_PIPELINE__BATCH_SIZE", "100")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log"))
                .spawn()
                .expect("pulse sink batch starts"),
            log,
        }
    };
    wait_for("the sink to commit some posts", || {
        committed(&group, &lane.enriched, 2).iter().any(|&o| o > 0)
    });

    // The node stops (SIGTERM: a clean shutdown) while the second half is produced.
    stack.run(&["stop", "cql"]);
    produce(&lane.enriched, posts(POSTS / 2..POSTS));
    let stuck = committed(&group, &lane.enriched, 2);
    wait_for("the sink to fail a batch and retry", || {
        !sink.log_events("batch failed; retrying").is_empty()
    });
    assert!(
        matches!(sink.child.try_wait(), Ok(None)),
        "the sink stays up: {}",
        sink.logs()
    );
    let ends = high_watermarks(&lane.enriched, 2);
    assert_ne!(
        stuck, ends,
        "the test needs posts left to write while the server is down"
    );

    stack.run(&["start", "cql"]);
    wait_for("the sink to catch up", || {
        committed(&group, &lane.enriched, 2) == ends
    });
    assert_eq!(sink.terminate().code(), Some(0), "{}", sink.logs());

    // Every post stored once, as produced.
    let config = BatchConfig {
        nodes: nodes.clone(),
        keyspace: keyspace.clone(),
        ..BatchConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (stored, sample) = runtime.block_on(async {
        let store = BatchStore::connect(&config).await.expect("connected");
        let from = start_time();
        let ids = common::stored_ids(&store, CHANNEL, from, from + chrono::Duration::days(1)).await;
        let sample = store.post("batchsink:01234").await.expect("read");
        (ids, sample)
    });
    let want: Vec<String> = (0..POSTS)
        .rev()
        .map(|i| format!("batchsink:{i:05}"))
        .collect();
    let missing: Vec<&String> = want.iter().filter(|id| !stored.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} posts lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(stored, want, "every post once, newest first");
    let sample = sample.expect("post 1234 stored");
    assert_eq!(sample.post, batch_post(1234).build());

    // Each malformed record dead-lettered once with its reason.
    let dead: Vec<(Option<Vec<u8>>, String)> = read_all(&lane.dlq, 2)
        .into_iter()
        .map(|r| {
            (
                r.key,
                r.headers
                    .get("pulse.error.kind")
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead.iter().all(|(_, kind)| kind == "not_enriched_post"),
        "{dead:?}"
    );

    // The batch commands count what the sink wrote.
    let from = start_time().to_rfc3339();
    let to = (start_time() + chrono::Duration::hours(4)).to_rfc3339();
    let recomputed = run(&["batch", "recompute", "--from", &from, "--to", &to]);
    assert!(
        recomputed.contains(&format!("({} hours, {POSTS} posts)", POSTS * 2 / 3_600 + 1)),
        "{recomputed}"
    );
    let rollups = run(&[
        "--json",
        "batch",
        "rollups",
        "--channel",
        CHANNEL,
        "--from",
        &from,
        "--to",
        &to,
    ]);
    let per_hour: Vec<u64> = rollups
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("json line")["posts"]
                .as_u64()
                .expect("posts")
        })
        .collect();
    assert_eq!(
        per_hour,
        [1_800, 1_800, 400],
        "posts per hour: one every 2 s from 10:00"
    );
}

#[test]
fn a_post_the_store_refuses_is_dead_lettered_and_the_rest_is_stored() {
    let lane = Lane::new("batch-refused", 2);
    let keyspace = pulse_testkit::keyspace("refused");
    let group = format!("{}.batch", lane.group);
    let applied = lane
        .pulse(&["schema", "apply"])
        .env("PULSE_BATCH__KEYSPACE", &keyspace)
        .output()
        .expect("pulse schema apply runs");
    assert!(applied.status.success(), "{applied:?}");

    // Two posts whose keyword is over the 64 KiB key limit of the mentions table, among 30
    // good ones: an enriched record from another producer than Pulse's enrich.
    let refused = |i: usize| batch_post(i).keyword("k".repeat(70_000)).record();
    let mut records = posts(0..15);
    records.push(refused(15));
    records.extend(posts(16..30));
    records.push(refused(30));
    produce(&lane.enriched, records);

    let mut sink = lane.spawn(
        "sink",
        &["sink", "batch"],
        &[
            ("PULSE_BATCH__KEYSPACE", &keyspace),
            ("PULSE_BATCH__GROUP", &group),
        ],
    );
    wait_for("every record committed", || {
        committed(&group, &lane.enriched, 2) == high_watermarks(&lane.enriched, 2)
    });
    assert!(sink.terminate().success(), "{}", sink.logs());

    let mut dead: Vec<(String, String)> = read_all(&lane.dlq, 2)
        .into_iter()
        .filter(|record| record.headers[header::STAGE] == "sink-batch")
        .map(|record| {
            (
                String::from_utf8(record.key.expect("a key")).expect("utf-8"),
                record.headers[header::ERROR_KIND].clone(),
            )
        })
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        vec![
            (
                "batchsink:00015".to_string(),
                "invalid_for_store".to_string()
            ),
            (
                "batchsink:00030".to_string(),
                "invalid_for_store".to_string()
            ),
        ]
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut stored = runtime.block_on(async {
        let config = BatchConfig {
            nodes: pulse_testkit::servers::cql_nodes(),
            keyspace: keyspace.clone(),
            ..BatchConfig::default()
        };
        let store = BatchStore::connect(&config).await.expect("connected");
        common::stored_ids(
            &store,
            CHANNEL,
            start_time(),
            start_time() + chrono::Duration::days(1),
        )
        .await
    });
    stored.sort();
    let expected: Vec<String> = (0..30)
        .filter(|i| *i != 15)
        .map(|i| batch_post(i).build().id)
        .collect();
    assert_eq!(stored, expected);
}
