//! The archive's files against a temporary folder: the same records give the same files
//! however they are batched or redelivered, rows hold what the posts said, tombstones
//! remove their posts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, TimeZone, Utc};
use pulse_core::config::ArchiveConfig;
use pulse_core::{EnrichedPost, EntityKind, Post, Sentiment, SentimentLabel, Tombstone};

use super::layout::is_archive_file;
use super::table;
use super::ArchiveSinkStage;
use crate::stage::{Outcome, SourceRecord, Stage};

const TOPIC: &str = "test.archive.enriched";

fn created(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 5 + minute / 60, minute % 60, 0)
        .single()
        .unwrap_or_default()
}

fn post(n: usize) -> EnrichedPost {
    let channel = if n.is_multiple_of(3) {
        "reddit/r/rust"
    } else {
        "x/#rustlang"
    };
    let built = pulse_testkit::post(format!("file:{n}"), channel, created((n % 150) as u32))
        .source("file")
        .text(format!("Ferris the crab, post {n}"))
        .lang(Some("en"))
        .sentiment_of(Some(Sentiment {
            label: SentimentLabel::Positive,
            score: 0.5,
            probs: [
                (SentimentLabel::Negative, 0.2),
                (SentimentLabel::Neutral, 0.1),
                (SentimentLabel::Positive, 0.7),
            ]
            .into(),
        }))
        .emotion("joy", 0.75)
        .emotion("anger", 0.125)
        .entity("Ferris", EntityKind::Person)
        .keyword("crab")
        .model("pulse-test@1")
        .enriched_at(created(200));
    let built = if n.is_multiple_of(2) {
        built.author(format!("author{n}"))
    } else {
        built
    };
    built.enriched()
}

fn record(partition: i32, offset: i64, payload: Vec<u8>) -> SourceRecord {
    SourceRecord {
        topic: TOPIC.into(),
        partition,
        offset,
        key: None,
        payload: Some(payload),
    }
}

/// Posts 0..n as records on two partitions, offsets counting per partition.
fn records(n: usize) -> Vec<SourceRecord> {
    let mut next = [0i64; 2];
    (0..n)
        .map(|i| {
            let partition = (i % 2) as i32;
            let offset = next[i % 2];
            next[i % 2] += 1;
            let payload = serde_json::to_vec(&post(i)).unwrap_or_default();
            record(partition, offset, payload)
        })
        .collect()
}

fn stage(root: &Path, block_offsets: u64) -> ArchiveSinkStage {
    ArchiveSinkStage::new(&ArchiveConfig {
        dir: root.to_path_buf(),
        block_offsets,
        ..ArchiveConfig::default()
    })
}

/// Every archive file under `root`, by path relative to it, with its rows.
fn files(root: &Path) -> BTreeMap<String, RecordBatch> {
    let mut found = BTreeMap::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                folders.push(path);
            } else if is_archive_file(&name) {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                found.insert(relative, table::read(&path).unwrap().unwrap());
            }
        }
    }
    found
}

fn ids(rows: &RecordBatch) -> Vec<String> {
    let column = rows.column_by_name("id").unwrap().as_string::<i32>();
    column
        .iter()
        .map(|id| id.unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn the_same_records_make_the_same_files_however_they_are_batched() {
    let all = records(600);
    let once = tempfile::tempdir().unwrap();
    let outcomes = stage(once.path(), 100).process(&all).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Done));

    // In batches of 7, with a crash's redelivery: batches 40..80 twice, then a replay of
    // everything in batches of 250.
    let batched = tempfile::tempdir().unwrap();
    let sink = stage(batched.path(), 100);
    for chunk in all.chunks(7) {
        sink.process(chunk).await.unwrap();
    }
    for chunk in all[40..80].chunks(13) {
        sink.process(chunk).await.unwrap();
    }
    for chunk in all.chunks(250) {
        sink.process(chunk).await.unwrap();
    }

    let once = files(once.path());
    let batched = files(batched.path());
    assert_eq!(
        once.keys().collect::<Vec<_>>(),
        batched.keys().collect::<Vec<_>>()
    );
    for (path, rows) in &once {
        assert_eq!(rows, &batched[path], "{path}");
    }
    // Each post once, in the file of its channel, hour and block.
    let mut seen = BTreeSet::new();
    for (path, rows) in &once {
        let offsets = rows
            .column_by_name("kafka_offset")
            .unwrap()
            .as_primitive::<Int64Type>();
        let sorted: Vec<i64> = offsets.values().to_vec();
        assert!(
            sorted.windows(2).all(|w| w[0] < w[1]),
            "{path} is ordered by offset"
        );
        let block = sorted[0] / 100 * 100;
        assert!(
            path.ends_with(&format!("-{block:020}-{:020}.parquet", block + 99)),
            "{path}"
        );
        for id in ids(rows) {
            let n: usize = id.trim_start_matches("file:").parse().unwrap();
            let expected = post(n);
            let channel = if expected.post.channel.starts_with("reddit") {
                "channel=reddit%2Fr%2Frust"
            } else {
                "channel=x%2F%23rustlang"
            };
            let hour = expected
                .post
                .created_at
                .format("date=%Y-%m-%d/hour=%H")
                .to_string();
            assert!(
                path.starts_with(&format!("{channel}/{hour}/{TOPIC}-")),
                "{path} holds {id}"
            );
            assert!(seen.insert(id), "{path}: a post twice");
        }
    }
    assert_eq!(seen.len(), 600);
}

#[tokio::test]
async fn a_row_holds_what_the_post_said() {
    let root = tempfile::tempdir().unwrap();
    stage(root.path(), 1_000)
        .process(&records(4))
        .await
        .unwrap();
    let files = files(root.path());
    let (path, rows) = files
        .iter()
        .find(|(_, rows)| ids(rows).contains(&"file:0".to_string()))
        .unwrap();
    assert!(path.starts_with("channel=reddit%2Fr%2Frust/date=2026-12-03/hour=05/"));
    let row = ids(rows).iter().position(|id| id == "file:0").unwrap();
    let text = |name: &str| {
        let column = rows.column_by_name(name).unwrap().as_string::<i32>();
        column.is_valid(row).then(|| column.value(row).to_string())
    };
    let float = |name: &str| {
        rows.column_by_name(name)
            .unwrap()
            .as_primitive::<Float32Type>()
            .value(row)
    };
    assert_eq!(text("text").as_deref(), Some("Ferris the crab, post 0"));
    assert_eq!(text("author").as_deref(), Some("author0"));
    assert_eq!(text("url"), None);
    assert_eq!(text("lang").as_deref(), Some("en"));
    assert_eq!(text("sentiment_label").as_deref(), Some("positive"));
    assert_eq!(float("sentiment_positive"), 0.7);
    assert_eq!(text("model").as_deref(), Some("pulse-test@1"));
    let created = rows
        .column_by_name("created_at")
        .unwrap()
        .as_primitive::<arrow_array::types::TimestampMicrosecondType>()
        .value(row);
    assert_eq!(created, created_at_micros(0));
    let emotions = rows.column_by_name("emotions").unwrap().as_map().value(row);
    let keys: Vec<&str> = emotions
        .column(0)
        .as_string::<i32>()
        .iter()
        .flatten()
        .collect();
    let values = emotions
        .column(1)
        .as_primitive::<Float32Type>()
        .values()
        .to_vec();
    assert_eq!(keys, ["anger", "joy"]);
    assert_eq!(values, [0.125, 0.75]);
    let entities = rows
        .column_by_name("entities")
        .unwrap()
        .as_list::<i32>()
        .value(row);
    let entities = entities.as_struct();
    assert_eq!(entities.len(), 1);
    assert_eq!(
        entities
            .column_by_name("text")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "Ferris"
    );
    assert_eq!(
        entities
            .column_by_name("kind")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "person"
    );
    assert_eq!(
        entities
            .column_by_name("end")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0),
        6
    );
    let keywords = rows
        .column_by_name("keywords")
        .unwrap()
        .as_list::<i32>()
        .value(row);
    assert_eq!(
        keywords
            .as_struct()
            .column_by_name("term")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "crab"
    );
}

fn created_at_micros(n: usize) -> i64 {
    post(n).post.created_at.timestamp_micros()
}

#[tokio::test]
async fn tombstones_remove_their_posts_and_bad_records_are_rejected() {
    let root = tempfile::tempdir().unwrap();
    let sink = stage(root.path(), 1_000);
    sink.process(&records(6)).await.unwrap();
    assert_eq!(
        files(root.path())
            .values()
            .map(RecordBatch::num_rows)
            .sum::<usize>(),
        6
    );

    // Post 0 is alone in its file (reddit, minute 0); post 1 shares x's hour with 2, 4, 5.
    let deleted = |n: usize| {
        let tombstone = Tombstone::of(&post(n).post, created(300), "deleted by its author");
        serde_json::to_vec(&tombstone).unwrap_or_default()
    };
    let oversized = EnrichedPost {
        post: Post {
            channel: "é".repeat(60),
            ..post(9).post
        },
        ..post(9)
    };
    let batch = [
        record(0, 10, deleted(0)),
        record(1, 10, deleted(1)),
        record(0, 11, b"{\"not\": \"a post\"}".to_vec()),
        record(0, 12, serde_json::to_vec(&oversized).unwrap_or_default()),
    ];
    let outcomes = sink.process(&batch).await.unwrap();
    assert_eq!(outcomes[0], Outcome::Done);
    assert_eq!(outcomes[1], Outcome::Done);
    assert!(
        matches!(&outcomes[2], Outcome::Reject { kind, .. } if kind.as_str() == "not_enriched_post")
    );
    assert!(
        matches!(&outcomes[3], Outcome::Reject { kind, error } if kind.as_str() == "invalid_for_store" && error.contains("240")),
        "{outcomes:?}"
    );
    let left = files(root.path());
    let mut all: Vec<String> = left.values().flat_map(ids).collect();
    all.sort();
    assert_eq!(all, ["file:2", "file:3", "file:4", "file:5"]);
    assert!(
        !root
            .path()
            .join("channel=reddit%2Fr%2Frust/date=2026-12-03/hour=05")
            .join(format!("{TOPIC}-0-{:020}-{:020}.parquet", 0, 999))
            .exists(),
        "a file left empty is removed"
    );
}

#[tokio::test]
async fn temporaries_left_by_a_killed_writer_are_removed_when_their_folder_is_written() {
    let root = tempfile::tempdir().unwrap();
    let sink = stage(root.path(), 100);
    let all = records(2);
    sink.process(&all).await.unwrap();
    let written: Vec<String> = files(root.path()).into_keys().collect();
    let folder = root
        .path()
        .join(&written[0])
        .parent()
        .unwrap()
        .to_path_buf();
    // What a SIGKILL between create and rename leaves, and a file that only looks alike.
    let left = folder.join(".test.archive.enriched-0-0-99.parquet.4242.tmp");
    std::fs::write(&left, b"half a parquet file").unwrap();
    let kept = folder.join("notes.tmp");
    std::fs::write(&kept, b"not the archive's").unwrap();

    // Redelivered: the same files are written again.
    sink.process(&all).await.unwrap();
    assert!(!left.exists(), "{} left behind", left.display());
    assert!(kept.exists());
    let after: Vec<String> = files(root.path()).into_keys().collect();
    assert_eq!(after, written, "the same files, and only them");
}
