//! Acceptance of `pulse replay`: a bounded range of a topic, chosen by record time or by
//! offset, is read into a stage: enriched posts into the speed layer (exactly the range,
//! counted once however often it is replayed, bad records to the DLQ) and raw posts into
//! enrich (the last N of each partition enriched again). Bad requests fail with a message.

use crate::common;

use chrono::{DateTime, Utc};
use common::{high_watermarks, produce_at, read_all, Lane};
use pulse_core::config::SpeedConfig;
use pulse_speed::{minute_of, SpeedLayer};
use pulse_testkit::PostBuilder;
use serde_json::Value;

const CHANNEL: &str = "test/replay";

fn post(i: usize, created_at: DateTime<Utc>) -> PostBuilder {
    pulse_testkit::post(format!("replay:{i}"), CHANNEL, created_at).text(format!(
        "Replay number {i} of the Berlin marathon was great"
    ))
}

fn enriched(i: usize, created_at: DateTime<Utc>) -> Vec<u8> {
    post(i, created_at)
        .keyword(format!("term{}", i % 3))
        .record()
        .1
}

/// Runs `pulse replay ARGS`; the exit code, the JSON report (if any) and stderr.
fn replay(lane: &Lane, env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, Value, String) {
    let mut command = lane.pulse(&["--json", "replay"]);
    command.args(args).envs(env.iter().copied());
    let output = command.output().expect("pulse replay runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), report, stderr)
}

fn window_count(config: &SpeedConfig) -> (u64, u64) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let end = minute_of(Utc::now()) + 1;
    let window = runtime
        .block_on(async {
            SpeedLayer::connect(config)?
                .window(CHANNEL, end - 1_440, end, 10)
                .await
        })
        .expect("window");
    (
        window.totals.count,
        window.keywords.iter().map(|k| k.count).sum(),
    )
}

#[test]
fn a_time_range_of_enriched_posts_replays_into_the_speed_layer_once() {
    let lane = Lane::new("replay-speed", 2);
    let speed = pulse_testkit::speed_config("replay");
    let env = [("PULSE_SPEED__KEY_PREFIX", speed.key_prefix.as_str())];
    // 30 posts stamped three hours ago, 30 two hours ago (one bad record among them), 30
    // one hour ago: the record times decide the range, the posts' own times their minutes.
    let now = Utc::now();
    let mut records = Vec::new();
    for (block, hours) in [3, 2, 1].into_iter().enumerate() {
        let time = now - chrono::Duration::hours(hours);
        for i in block * 30..block * 30 + 30 {
            let at = time + chrono::Duration::seconds(i as i64);
            records.push((format!("replay:{i}"), enriched(i, at), at));
        }
    }
    let two_hours_ago = now - chrono::Duration::hours(2);
    records.insert(
        45,
        (
            "bad".into(),
            b"{not an enriched post".to_vec(),
            two_hours_ago,
        ),
    );
    produce_at(&lane.enriched, records);

    // The middle block only: from the first record two hours ago up to the first one hour ago.
    let from = two_hours_ago.to_rfc3339();
    let to = (now - chrono::Duration::hours(1)).to_rfc3339();
    let (code, report, stderr) = replay(
        &lane,
        &env,
        &[
            "--from-time",
            &from,
            "--to-time",
            &to,
            "--into",
            "sink-speed",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["topic"], lane.enriched.as_str(), "{report}");
    assert_eq!(report["stage"], "sink-speed");
    assert_eq!(report["complete"], true);
    assert_eq!(report["total"], 31, "{report}");
    assert_eq!(report["replayed"], 31);
    assert_eq!(report["dead_lettered"], 1);
    assert_eq!(report["emitted"], 0);
    assert_eq!(window_count(&speed), (30, 30), "exactly the middle block");
    let letters = read_all(&lane.dlq, 2);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].payload, b"{not an enriched post");
    assert_eq!(letters[0].headers["pulse.stage"], "sink-speed");
    assert_eq!(
        letters[0].headers["pulse.origin.topic"],
        lane.enriched.as_str()
    );

    // Everything from the start: the middle block is not counted twice.
    let (code, report, stderr) = replay(&lane, &env, &["--from-offset", "0", "--into", "speed"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["replayed"], 91, "{report}");
    assert_eq!(window_count(&speed), (90, 90), "each post counted once");
    let spans: i64 = report["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| s["to"].as_i64().unwrap_or(0) - s["from"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(spans, 91);

    // Per partition: all of partition 0, none of partition 1.
    let (code, report, stderr) = replay(&lane, &env, &["--from-offset", "0:0", "--into", "speed"]);
    assert_eq!(code, Some(0), "{stderr}");
    let ends = high_watermarks(&lane.enriched, 2);
    assert_eq!(report["replayed"], ends[0], "{report}");
    assert_eq!(
        report["resume_at"],
        serde_json::json!({"0": ends[0], "1": ends[1]})
    );
    assert_eq!(window_count(&speed), (90, 90));

    // A range after the last record is empty, and says so.
    let (code, report, stderr) =
        replay(&lane, &env, &["--from-time", "now", "--into", "sink-speed"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["total"], 0, "{stderr}");
    assert_eq!(report["replayed"], 0);
}

#[test]
fn the_last_raw_posts_of_each_partition_are_enriched_again() {
    let lane = Lane::new("replay-enrich", 2);
    let now = Utc::now();
    let records: Vec<_> = (0..24)
        .map(|i| {
            let payload = serde_json::to_vec(&post(i, now).build()).expect("json");
            (format!("replay:{i}"), payload, now)
        })
        .collect();
    produce_at(&lane.raw, records);
    let ends = high_watermarks(&lane.raw, 2);
    let expected: i64 = ends.iter().map(|&end| end.min(5)).sum();

    let (code, report, stderr) = replay(&lane, &[], &["--from-offset", "-5", "--into", "enrich"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        report["topic"],
        lane.raw.as_str(),
        "the raw topic by default"
    );
    assert_eq!(report["replayed"], expected, "{report}");
    assert_eq!(report["emitted"], expected);
    let out = read_all(&lane.enriched, 2);
    assert_eq!(out.len() as i64, expected);
    // The last five records of each partition, nothing else.
    let raw = read_all(&lane.raw, 2);
    let mut wanted: Vec<String> = raw
        .iter()
        .filter(|r| r.offset >= ends[r.partition as usize] - 5)
        .map(|r| r.json()["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut got: Vec<String> = out
        .iter()
        .map(|r| {
            let post = r.json();
            assert!(post["model"]
                .as_str()
                .is_some_and(|m| m.starts_with("pulse-minilm-multitask@")));
            assert!(post["sentiment"]["label"].is_string(), "{post}");
            post["id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    wanted.sort();
    got.sort();
    assert_eq!(got, wanted);
}

#[test]
fn bad_replays_fail_with_a_message() {
    let lane = Lane::new("replay-bad", 1);
    let (code, _, stderr) = replay(
        &lane,
        &[],
        &[
            "--topic",
            "test.no-such-topic",
            "--from-offset",
            "0",
            "--into",
            "sink-speed",
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");

    let (code, _, stderr) = replay(&lane, &[], &["--from-offset", "0", "--into", "nowhere"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'nowhere' for '--into <INTO>'")
            && stderr.contains("[possible values: enrich, sink-speed, speed, sink-batch"),
        "{stderr}"
    );

    let (code, _, stderr) = replay(
        &lane,
        &[],
        &[
            "--from-offset",
            "0",
            "--from-time",
            "now",
            "--into",
            "enrich",
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");

    let (code, _, stderr) = replay(
        &lane,
        &[],
        &[
            "--from-time",
            "now",
            "--to-time",
            "now-1h",
            "--into",
            "sink-speed",
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is before the start"), "{stderr}");
}

#[test]
fn enriched_posts_replay_into_the_batch_layer() {
    let lane = Lane::new("replay-batch", 2);
    let keyspace = pulse_testkit::keyspace("replay");
    let env = [("PULSE_BATCH__KEYSPACE", keyspace.as_str())];
    let pulse = |args: &[&str]| {
        let output = lane.pulse(args).envs(env).output().expect("pulse runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = pulse(&["schema", "apply"]);
    assert_eq!(code, Some(0), "{stderr}");
    let now = Utc::now();
    let records: Vec<_> = (0..12)
        .map(|i| {
            let at = now - chrono::Duration::minutes(i as i64);
            (format!("replay:{i}"), enriched(i, at), at)
        })
        .collect();
    produce_at(&lane.enriched, records);

    let (code, report, stderr) = replay(&lane, &env, &["--from-offset", "0", "--into", "batch"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(report["stage"], "sink-batch");
    assert_eq!(report["replayed"], 12, "{report}");
    for i in [0, 7, 11] {
        let (code, stored, stderr) = pulse(&["--json", "batch", "post", &format!("replay:{i}")]);
        assert_eq!(code, Some(0), "{stderr}");
        let stored: Value = serde_json::from_str(&stored).expect("a stored post");
        assert_eq!(stored["channel"], CHANNEL);
        assert_eq!(stored["keywords"][0]["term"], format!("term{}", i % 3));
    }
}
