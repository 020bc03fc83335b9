//! Acceptance of exactly-once enrichment (the default delivery): outputs, dead letters and
//! consumed offsets go in one Kafka transaction per batch, so across SIGKILLs of `pulse
//! enrich` a reader of committed data sees every post once and every bad record once, and
//! an instance whose transactional id another one took over is fenced and stops.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::{brokers, committed, count, high_watermarks, produce, read_all, wait_for, Lane};

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
            "text": format!("Post {i}: Kafka transactions keep enrichment exact #testing"),
            "created_at": "2026-11-01T00:00:00Z",
        });
        writeln!(file, "{post}").expect("write post");
        ids.insert(id);
    }
    file.flush().expect("flush posts");
    ids
}

/// Raw records no post can be made of, keyed `bad:<i>`.
fn bad_records(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let payload = match i % 3 {
                0 => b"{not json".to_vec(),
                1 => br#"{"id":"x","text":"no source or channel"}"#.to_vec(),
                _ => b"[1, 2, 3]".to_vec(),
            };
            (format!("bad:{i}"), payload)
        })
        .collect()
}

fn all_committed(lane: &Lane) -> bool {
    committed(&lane.group, &lane.raw, lane.partitions)
        == high_watermarks(&lane.raw, lane.partitions)
}

/// Keys of `topic` as Debian's kcat (librdkafka from Debian, not Pulse's) reads them with
/// `isolation.level=read_committed`: an independent reader.
fn keys_by_kcat(topic: &str) -> Vec<String> {
    let output = Command::new("kcat")
        .args([
            "-C",
            "-b",
            &brokers(),
            "-t",
            topic,
            "-e",
            "-q",
            "-f",
            "%k\\n",
        ])
        .args(["-X", "isolation.level=read_committed"])
        .output()
        .expect("kcat runs (scripts/setup installs it)");
    assert!(
        output.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8 keys")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_post_is_enriched_exactly_once_across_two_sigkills() {
    const POSTS: usize = 20_000;
    const BAD: usize = 30;
    let lane = Lane::new("exactly", 4);
    let path = lane.dir.path().join("posts.jsonl");
    let ids = write_posts(&path, "exactly", POSTS);
    produce(&lane.raw, bad_records(BAD / 2));
    lane.ingest_file(&path);
    produce(&lane.raw, bad_records(BAD).split_off(BAD / 2));
    assert_eq!(count(&lane.raw, 4), (POSTS + BAD) as i64);

    // Small batches keep the run long enough to be killed in the middle; each restart is
    // at once and takes the killed instance's transactional id, aborting what it left open.
    let settings = [
        ("PULSE_PIPELINE__BATCH_SIZE", "40"),
        ("PULSE_KAFKA__SESSION_TIMEOUT_MS", "6000"),
    ];
    common::kill_enrich_twice(&lane, &settings, POSTS as i64);
    let mut enrich = lane.spawn_enrich("enrich-final", &settings);
    wait_for("every raw record committed", || all_committed(&lane));
    assert!(
        enrich.terminate().success(),
        "graceful exit; log: {}",
        enrich.logs()
    );

    let records = read_all(&lane.enriched, 4);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for record in &records {
        let post = record.json();
        let id = post["id"].as_str().expect("id").to_string();
        assert_eq!(record.key.as_deref(), Some(id.as_bytes()), "keyed by id");
        assert_eq!(post["model"], "pulse-minilm-multitask@2.0.0", "{post}");
        assert!(post["sentiment"]["label"].is_string(), "{post}");
        *seen.entry(id).or_default() += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        duplicates.is_empty(),
        "ids read more than once: {duplicates:?}"
    );
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), ids);
    assert_eq!(records.len(), POSTS, "each post exactly once");
    println!(
        "{POSTS} posts, 2 SIGKILLs: {} committed records, 0 duplicates; {} offsets in all \
         (the rest are transaction markers and aborted records)",
        records.len(),
        count(&lane.enriched, 4)
    );

    let dead: Vec<String> = read_all(&lane.dlq, 4)
        .into_iter()
        .map(|r| {
            assert_eq!(r.headers["pulse.stage"], "enrich");
            String::from_utf8(r.key.expect("key")).expect("utf-8 key")
        })
        .collect();
    let mut want: Vec<String> = (0..BAD).map(|i| format!("bad:{i}")).collect();
    let mut got = dead.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "each bad record dead-lettered exactly once");

    // An independent client sees the same.
    let mut keys = keys_by_kcat(&lane.enriched);
    keys.sort();
    assert_eq!(keys.len(), POSTS);
    keys.dedup();
    assert_eq!(keys.len(), POSTS, "kcat reads no duplicate");
}

#[test]
fn an_instance_whose_transactional_id_is_taken_over_is_fenced() {
    let lane = Lane::new("zombie", 2);
    let id = format!("{}-txn", lane.group);
    let settings = [
        ("PULSE_ENRICH__TRANSACTIONAL_ID", id.as_str()),
        ("PULSE_ENRICH__MODELS", "[]"),
        ("PULSE_PIPELINE__BATCH_SIZE", "10"),
    ];
    let posts = |from: usize, to: usize| -> Vec<(String, Vec<u8>)> {
        (from..to)
            .map(|i| {
                let id = format!("zombie:{i}");
                let post = serde_json::json!({
                    "id": id, "source": "file", "channel": "test/zombie",
                    "text": format!("post {i} about fencing"), "created_at": "2026-11-01T00:00:00Z",
                });
                (id, post.to_string().into_bytes())
            })
            .collect()
    };
    let mut first = lane.spawn_enrich("first", &settings);
    produce(&lane.raw, posts(0, 200));
    wait_for("the first instance to commit", || {
        committed(&lane.group, &lane.raw, 2).iter().sum::<i64>() >= 200
    });

    // A second instance with the same id: its start fences the first one, which fails its
    // next transaction and stops with an error; the second takes over the partitions.
    let mut second = lane.spawn_enrich("second", &settings);
    wait_for("the second instance to initialise transactions", || {
        !second.log_events("transactions ready").is_empty()
    });
    produce(&lane.raw, posts(200, 400));
    wait_for("the first instance to stop", || {
        matches!(first.child.try_wait(), Ok(Some(_)))
    });
    let status = first.child.wait().expect("first exits");
    assert!(!status.success(), "a fenced instance exits with an error");
    assert!(
        first.logs().contains("fenced"),
        "the first instance says it was fenced: {}",
        first.logs()
    );
    wait_for("every raw record committed", || all_committed(&lane));
    assert!(second.terminate().success(), "{}", second.logs());

    let records = read_all(&lane.enriched, 2);
    let ids: BTreeSet<String> = records
        .iter()
        .map(|r| r.json()["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 400);
    assert_eq!(records.len(), 400, "no post twice, fencing included");
}
