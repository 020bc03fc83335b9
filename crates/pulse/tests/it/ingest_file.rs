//! Acceptance of `pulse ingest file` against the stack: a Reddit archive as published (an
//! `RC_` file of comments in one zstd frame with a 2 GiB window, as `zstd --long=31` makes
//! them) ingests whole, every comment in the raw topic once with its exact id and the
//! comments the archive marks as deleted in the DLQ; and topics that do not exist yet are
//! created rather than waited for.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{read_all, Lane};
use pulse_kafka::dlq::header;

const COMMENTS: usize = 3_000;

/// The archive's lines: `COMMENTS` comments, each 500th followed by one deleted after
/// capture; and the line numbers of the deleted ones.
fn archive() -> (Vec<u8>, Vec<u64>) {
    let mut body = Vec::new();
    let mut deleted = Vec::new();
    let mut line = 0;
    for i in 0..COMMENTS {
        line += 1;
        writeln!(
            body,
            r#"{{"id":"c{i}","subreddit":"rust","author":"a{i}","body":"comment {i} about lifetimes","created_utc":{},"link_id":"t3_p{}","parent_id":"t3_p{}","score":{}}}"#,
            1_704_067_200 + i,
            i % 25,
            i % 25,
            i % 7
        )
        .expect("line");
        if i % 500 == 0 {
            line += 1;
            writeln!(
                body,
                r#"{{"id":"d{i}","subreddit":"rust","body":"regretted","created_utc":"{}","_meta":{{"was_deleted_later":true}}}}"#,
                1_704_067_200 + i
            )
            .expect("line");
            deleted.push(line);
        }
    }
    (body, deleted)
}

#[test]
fn a_reddit_archive_with_a_two_gib_zstd_window_ingests_whole() {
    let lane = Lane::new("redditarchive", 2);
    let (body, deleted) = archive();
    // Streamed, as the archives were: a known size would shrink the window to it.
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    encoder.long_distance_matching(true).expect("long mode");
    encoder.window_log(31).expect("2 GiB window");
    encoder.write_all(&body).expect("compressed");
    let frame = encoder.finish().expect("frame");
    let path = lane.dir.path().join("RC_2024-01.zst");
    std::fs::write(&path, frame).expect("archive written");

    lane.ingest_file(&path);

    let raw = read_all(&lane.raw, 2);
    let posts: BTreeMap<String, serde_json::Value> = raw
        .iter()
        .map(|record| {
            let post: serde_json::Value = serde_json::from_slice(&record.payload).expect("json");
            (post["id"].as_str().expect("id").to_string(), post)
        })
        .collect();
    assert_eq!(raw.len(), COMMENTS, "each comment once");
    let want: BTreeSet<String> = (0..COMMENTS).map(|i| format!("reddit:t1_c{i}")).collect();
    assert_eq!(posts.keys().cloned().collect::<BTreeSet<_>>(), want);
    let post = &posts["reddit:t1_c1234"];
    assert_eq!(post["channel"], "reddit/r/rust");
    assert_eq!(post["text"], "comment 1234 about lifetimes");
    assert_eq!(post["created_at"], "2024-01-01T00:20:34Z");
    assert_eq!(post["link_id"], "reddit:t3_p9");
    assert_eq!(post["parent_id"], "reddit:t3_p9");

    let letters = read_all(&lane.dlq, 2);
    let mut dead: Vec<(String, String)> = letters
        .iter()
        .map(|l| {
            (
                l.headers[header::LOCATION].clone(),
                l.headers[header::ERROR_KIND].clone(),
            )
        })
        .collect();
    dead.sort();
    let mut want: Vec<(String, String)> = deleted
        .iter()
        .map(|line| (format!("{}:{line}", path.display()), "deleted_post".into()))
        .collect();
    want.sort();
    assert_eq!(dead, want);
}

/// The texts of the posts on `topic`, sorted.
fn texts_on(topic: &str, partitions: i32) -> Vec<String> {
    let mut texts: Vec<String> = read_all(topic, partitions)
        .iter()
        .map(|record| {
            let post: serde_json::Value = serde_json::from_slice(&record.payload).expect("json");
            post["text"].as_str().expect("text").to_string()
        })
        .collect();
    texts.sort();
    texts
}

#[test]
fn missing_topics_are_created_not_waited_for() {
    let lane = Lane::new("ingestfresh", 2);
    let raw = format!("{}.fresh", lane.raw);
    let dlq = format!("{}.fresh", lane.dlq);
    let path = lane.dir.path().join("posts.txt");
    std::fs::write(&path, "first\nsecond\nthird\n").expect("file written");
    let mut ingest = lane
        .pulse(&["ingest", "file", path.to_str().expect("utf-8 path")])
        .env("PULSE_KAFKA__TOPICS__RAW", &raw)
        .env("PULSE_KAFKA__TOPICS__DLQ", &dlq)
        .env("PULSE_KAFKA__PARTITIONS", "2")
        .stderr(Stdio::piped())
        .spawn()
        .expect("pulse ingest runs");
    // Producing to a missing topic retries for ever: a run still going after a minute failed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ingest.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = ingest.kill();
            panic!("pulse ingest still waiting for its topics after 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = ingest.wait_with_output().expect("ingest output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("ingested 3 posts"), "{stderr}");
    assert_eq!(texts_on(&raw, 2), ["first", "second", "third"]);
}

/// A file that cannot be decoded (256 KiB of noise named `.jsonl.gz`) is an error naming the
/// file, with a non-zero exit, not an empty file; the good file beside it still goes in
/// whole, and the summary counts only what arrived.
#[test]
fn a_corrupt_archive_fails_the_ingest_by_name_and_the_good_file_goes_in() {
    let lane = Lane::new("ingestcorrupt", 1);
    let corrupt = lane.dir.path().join("dump.jsonl.gz");
    std::fs::write(
        &corrupt,
        pulse_testkit::noise(256 * 1024, 0x2545_F491_4F6C_DD1D),
    )
    .expect("noise written");
    let good = lane.dir.path().join("good.txt");
    std::fs::write(&good, "one\ntwo\n").expect("file written");
    let output = lane
        .pulse(&["ingest", "file"])
        .args([&corrupt, &good])
        .env("PULSE_LOG__FORMAT", "text")
        .output()
        .expect("pulse ingest runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("error: {}:1: cannot read:", corrupt.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("ingested 2 posts from 2 file(s)"),
        "{stderr}"
    );
    assert_eq!(texts_on(&lane.raw, 1), ["one", "two"]);
}
