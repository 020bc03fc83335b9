//! `pulse sink archive` against the local broker: 20,000 enriched posts (and tombstones of
//! some of them) produced while the sink runs, the sink SIGKILLed twice mid-run, and the
//! Parquet files read back by pyarrow and DuckDB (from PyPI, in scripts/setup's tools
//! virtualenv): every post exactly once, in its channel and hour, deleted posts absent.
//! A replay of the whole topic into the archive then rewrites the same files.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{committed, produce, wait_for, Lane};
use pulse_core::{EnrichedPost, EntityKind, SentimentLabel, Tombstone};
use pulse_testkit::post;

const POSTS: usize = 20_000;
const PARTITIONS: i32 = 4;
const CHANNELS: [&str; 3] = ["reddit/r/rust", "x/#rustlang", "file:archive test.jsonl"];

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 22, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Post `i`: one of three channels, created over about five hours.
fn enriched(i: usize) -> EnrichedPost {
    let label = [
        SentimentLabel::Negative,
        SentimentLabel::Neutral,
        SentimentLabel::Positive,
    ][i % 3];
    let created_at = start() + Duration::seconds(i as i64);
    post(format!("archive:{i:05}"), CHANNELS[i % 3], created_at)
        .source("file")
        .author(format!("author{}", i % 17))
        .text(format!("Ferris archived post {i}"))
        .lang(Some("en"))
        .sentiment(label, 0.0)
        .emotion("joy", (i % 100) as f32 / 100.0)
        .entity("Ferris", EntityKind::Person)
        .enriched()
}

/// Every 97th post is deleted at its source: its tombstone follows it on the topic.
fn deleted(i: usize) -> bool {
    i % 97 == 5
}

fn records() -> Vec<(String, Vec<u8>)> {
    let mut records = Vec::with_capacity(POSTS + POSTS / 97 + 1);
    for i in 0..POSTS {
        let post = enriched(i);
        records.push((
            post.post.id.clone(),
            serde_json::to_vec(&post).unwrap_or_default(),
        ));
        // The tombstone of a post comes a few posts later, as a source would send it.
        if i >= 3 && deleted(i - 3) {
            let gone = enriched(i - 3).post;
            let tombstone = Tombstone::of(&gone, Utc::now(), "deleted by its author");
            records.push((gone.id, serde_json::to_vec(&tombstone).unwrap_or_default()));
        }
    }
    records
}

/// The Python of the tools virtualenv that scripts/setup makes (pyarrow, DuckDB).
fn tools_python() -> PathBuf {
    if let Ok(python) = std::env::var("PULSE_TOOLS_PYTHON") {
        return PathBuf::from(python);
    }
    let home = std::env::var("PULSE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(&std::env::var("HOME").unwrap_or_default()).join(".cache/pulse")
        });
    home.join("tools/venv/bin/python")
}

/// What pyarrow and DuckDB read from the archive at `root`.
fn read_back(root: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/archive_read.py");
    let python = tools_python();
    let output = Command::new(&python)
        .arg(script)
        .arg(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (run scripts/setup): {e}", python.display()));
    assert!(
        output.status.success(),
        "archive_read.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("archive_read.py prints json")
}

/// Every finished file under `root` with its bytes, by path relative to `root`.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("archive folder") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                folders.push(path);
            } else if name.ends_with(".parquet") && !name.starts_with('.') {
                let relative = path.strip_prefix(root).expect("under root");
                files.insert(
                    relative.display().to_string(),
                    std::fs::read(&path).expect("file"),
                );
            }
        }
    }
    files
}

#[test]
fn the_archive_holds_each_post_once_across_two_sigkills_and_a_replay() {
    let lane = Lane::new("archive", PARTITIONS);
    let root = lane.dir.path().join("archive");
    let group = format!("{}.archive", lane.group);
    let settings = [
        ("PULSE_ARCHIVE__DIR", root.to_str().expect("utf-8 path")),
        ("PULSE_ARCHIVE__GROUP", group.as_str()),
        ("PULSE_ARCHIVE__BATCH_SIZE", "400"),
        ("PULSE_ARCHIVE__BATCH_WAIT_MS", "100"),
        ("PULSE_ARCHIVE__BLOCK_OFFSETS", "1000"),
    ];
    let all = records();
    let total = all.len() as i64;
    let topic = lane.enriched.clone();
    // Produced one acknowledged record at a time while the sink runs, so both kills land
    // while it is writing.
    let producer = std::thread::spawn(move || produce(&topic, all));
    let archived = || {
        committed(&group, &lane.enriched, PARTITIONS)
            .iter()
            .map(|c| c.max(&0))
            .sum::<i64>()
    };

    let mut sink = lane.spawn("archive-1", &["sink", "archive"], &settings);
    for (round, threshold) in [(1, 4_000i64), (2, 11_000)] {
        wait_for("archived records before the kill", || {
            archived() >= threshold
        });
        let at_kill = archived();
        assert!(
            at_kill < total,
            "round {round}: everything was archived before the kill"
        );
        println!("round {round}: SIGKILL with {at_kill} records committed");
        lane.kill_and_restart(
            &mut sink,
            &format!("archive-{}", round + 1),
            &["sink", "archive"],
            &settings,
        );
    }
    producer.join().expect("producer thread");
    wait_for("the archive to catch up", || archived() >= total);
    assert!(sink.terminate().success(), "{}", sink.logs());

    let expected: BTreeMap<String, EnrichedPost> = (0..POSTS)
        .filter(|i| !deleted(*i))
        .map(|i| (format!("archive:{i:05}"), enriched(i)))
        .collect();
    let read = read_back(&root);
    let rows = read["rows"].as_array().expect("rows");
    let mut seen = BTreeSet::new();
    for row in rows {
        let id = row["id"].as_str().expect("id");
        assert!(seen.insert(id.to_string()), "{id} is archived twice");
        let post = expected
            .get(id)
            .unwrap_or_else(|| panic!("{id} should not be archived"));
        let created = post.post.created_at;
        assert_eq!(row["channel"], post.post.channel.as_str(), "{id}");
        assert_eq!(row["date"], created.format("%Y-%m-%d").to_string(), "{id}");
        assert_eq!(
            row["hour"],
            created
                .format("%H")
                .to_string()
                .parse::<u32>()
                .unwrap_or(99),
            "{id}"
        );
        assert_eq!(
            row["created_at"],
            created.format("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
            "{id}"
        );
        assert_eq!(row["text"], post.post.text.as_str(), "{id}");
        let label = post.enrichment.sentiment.as_ref().map(|s| s.label.as_str());
        assert_eq!(row["sentiment_label"].as_str(), label, "{id}");
        assert_eq!(
            row["joy"].as_f64().map(|j| j as f32),
            post.enrichment.emotions.get("joy").copied(),
            "{id}"
        );
        assert_eq!(row["entities"], serde_json::json!(["Ferris"]), "{id}");
    }
    assert_eq!(seen.len(), expected.len(), "posts missing from the archive");
    let duckdb: Vec<(String, u64, u64)> = read["duckdb"]
        .as_array()
        .expect("duckdb counts")
        .iter()
        .map(|c| {
            (
                c["channel"].as_str().unwrap_or_default().to_string(),
                c["posts"].as_u64().unwrap_or(0),
                c["ids"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mut per_channel: BTreeMap<String, u64> = BTreeMap::new();
    for post in expected.values() {
        *per_channel.entry(post.post.channel.clone()).or_default() += 1;
    }
    let wanted: Vec<(String, u64, u64)> = per_channel.into_iter().map(|(c, n)| (c, n, n)).collect();
    assert_eq!(duckdb, wanted, "duckdb's count per channel");

    // A replay of the whole topic into the archive writes the same files, byte for byte.
    let before = snapshot(&root);
    let output = lane
        .pulse(&[
            "--json",
            "replay",
            "--into",
            "sink-archive",
            "--from-offset",
            "0",
        ])
        .envs(settings.iter().copied())
        .output()
        .expect("pulse replay runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("report");
    assert_eq!(report["replayed"], total);
    let after = snapshot(&root);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "{path} changed on replay");
    }
}
