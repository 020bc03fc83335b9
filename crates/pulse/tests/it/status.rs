//! `pulse status` on a deployment it can reach, and on one whose broker is gone: what each
//! server answers, the schema, topics and partitions, each group's lag, the watermark, the
//! last hour's dead letters and the configured sources, as JSON and as a screen.

use serde_json::Value;

use crate::common::{produce, Lane};

#[test]
fn status_reports_servers_schema_topics_lag_and_dead_letters() {
    let lane = Lane::new("status", 3);
    let keyspace = pulse_testkit::keyspace("status");
    let prefix = pulse_testkit::key_prefix("status");
    let checkpoints = format!("{}.checkpoints", lane.raw);
    let env = [
        ("PULSE_BATCH__KEYSPACE", keyspace.as_str()),
        ("PULSE_SPEED__KEY_PREFIX", prefix.as_str()),
        ("PULSE_KAFKA__TOPICS__CHECKPOINTS", checkpoints.as_str()),
        // A configured source that never ran has no checkpoint.
        (
            "PULSE_SOURCES__BLUESKY__QUIET__COLLECTIONS",
            "[\"app.bsky.feed.post\"]",
        ),
    ];
    let status = |args: &[&str]| {
        let output = lane
            .pulse(args)
            .envs(env)
            .output()
            .expect("pulse status runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    // Before the schema: every server answers, the keyspace is missing, and that fails.
    let (code, out, err) = status(&["--json", "status"]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(code, Some(1), "{out}");
    for server in ["kafka", "cassandra", "redis"] {
        assert_eq!(report[server]["answers"], true, "{server}: {report}");
    }
    assert_eq!(
        report["schema"],
        format!("keyspace {keyspace} missing: run `pulse schema apply`")
    );

    let (code, _, err) = status(&["schema", "apply"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = status(&["topics", "create"]);
    assert_eq!(code, Some(0), "{err}");
    produce(
        &lane.raw,
        (0..7).map(|i| (format!("status:{i}"), b"{}".to_vec())),
    );
    produce(
        &lane.dlq,
        (0..2).map(|i| (format!("dead:{i}"), b"not a post".to_vec())),
    );

    let (code, out, err) = status(&["--json", "status"]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["schema"], "up to date");
    assert_eq!(report["watermark"], Value::Null);
    assert_eq!(report["dead_letters_last_hour"], 2);
    let topics = report["topics"].as_array().expect("topics");
    let topic = |name: &str| {
        topics
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {report}"))
            .clone()
    };
    assert_eq!(topic(&lane.raw)["partitions"], 3);
    assert_eq!(topic(&lane.raw)["offsets"], 7);
    assert_eq!(topic(&lane.enriched)["offsets"], 0);
    let groups = report["groups"].as_array().expect("groups");
    let enrich = groups
        .iter()
        .find(|g| g["stage"] == "enrich")
        .expect("the enrich group");
    assert_eq!(enrich["group"], lane.group.as_str());
    assert_eq!(enrich["lag"], 7, "{enrich}");
    assert_eq!(
        report["sources"],
        serde_json::json!([{ "source": "bluesky/quiet", "last_checkpoint": null }])
    );

    // The same as a screen.
    let (code, out, _) = status(&["status"]);
    assert_eq!(code, Some(0));
    for expected in [
        "schema     up to date".to_string(),
        format!("lag 7 on {}", lane.raw),
        "2 in the last hour".to_string(),
        "bluesky/quiet".to_string(),
    ] {
        assert!(out.contains(&expected), "{expected:?} in:\n{out}");
    }
}

#[test]
fn status_says_which_server_does_not_answer_and_fails() {
    let lane = Lane::new("status-down", 1);
    let output = lane
        .pulse(&["--json", "status"])
        // Nothing listens there: port 1 is privileged and unused.
        .env("PULSE_KAFKA__BROKERS", "127.0.0.1:1")
        .output()
        .expect("pulse status runs");
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON status");
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert_eq!(report["kafka"]["answers"], false, "{report}");
    assert_eq!(report["redis"]["answers"], true, "{report}");
    assert_eq!(report["topics"], serde_json::json!([]));
}
