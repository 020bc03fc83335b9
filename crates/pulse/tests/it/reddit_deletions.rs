//! Deletions at Reddit flow through the whole pipeline: `pulse up` runs the configured
//! Reddit source (against the in-process fake), enriches and stores its posts; posts then
//! deleted or removed at the fake, within the recheck age, are gone from the channel's
//! stored posts, `/api/v1/posts/{id}` answers 410 `gone`, the live feed no longer holds
//! them, and a recompute's rollups count only the posts that remain.

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;

use chrono::{Duration, DurationRound, Utc};
use common::{free_port, http_get, wait_for, Lane};
use pulse_core::config::SpeedConfig;
use pulse_ingest::reddit::fake::{FakeReddit, FakeSettings};
use pulse_speed::SpeedLayer;

const POSTS: usize = 30;

/// Ids of the posts `/api/v1/posts` lists for the channel over the last three hours.
fn stored_ids(port: u16) -> Option<BTreeSet<String>> {
    let (status, body) = http_get(
        port,
        "/api/v1/posts?channel=reddit%2Fr%2Frust&from=now-3h&limit=1000",
    )?;
    if status != 200 {
        return None;
    }
    let page: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(
        page["posts"]
            .as_array()?
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_string))
            .collect(),
    )
}

#[test]
fn posts_deleted_at_reddit_leave_every_store() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime
        .block_on(FakeReddit::start(FakeSettings::default()))
        .expect("fake reddit");
    let settings = FakeSettings::default();
    // Posts of an hour that is over, so that a recompute covers all of them.
    let hour = (Utc::now() - Duration::hours(1))
        .duration_trunc(Duration::hours(1))
        .expect("an hour");
    let names: Vec<String> = (0..POSTS)
        .map(|i| {
            let created = hour.timestamp() + 60 * i as i64;
            fake.submit(
                "rust",
                &format!("Question {i} about the borrow checker"),
                &format!("Details of question {i}: lifetimes in Rust are confusing"),
                created,
            )
        })
        .collect();

    let lane = Lane::new("reddit-deletions", 2);
    let keyspace = pulse_testkit::keyspace("deletions");
    let prefix = pulse_testkit::key_prefix("deletions");
    let port = free_port();
    let config = lane.write_config(&format!(
        r#"[sources.reddit.fake]
subreddits = ["rust"]
listings = ["submissions"]
client_id = "{}"
client_secret = "{}"
reddit_user = "pulse-tests"
auth_url = "{url}"
api_url = "{url}"
poll_interval_ms = 1000
recheck_interval_ms = 2000
"#,
        settings.client_id,
        settings.client_secret,
        url = fake.url()
    ));
    let listen = format!("127.0.0.1:{port}");
    let batch_group = format!("{}.batch", lane.group);
    let speed_group = format!("{}.speed", lane.group);
    let checkpoints = format!("{}.checkpoints", lane.raw);
    let env = [
        ("PULSE_BATCH__KEYSPACE", keyspace.as_str()),
        ("PULSE_BATCH__GROUP", batch_group.as_str()),
        ("PULSE_SPEED__KEY_PREFIX", prefix.as_str()),
        ("PULSE_SPEED__GROUP", speed_group.as_str()),
        ("PULSE_API__LISTEN", listen.as_str()),
        ("PULSE_KAFKA__TOPICS__CHECKPOINTS", checkpoints.as_str()),
    ];
    let mut up = lane.spawn("up", &["--config", &config, "up"], &env);
    let all: BTreeSet<String> = names.iter().map(|n| format!("reddit:{n}")).collect();
    wait_for("every post stored", || {
        stored_ids(port).as_ref() == Some(&all)
    });

    let speed = SpeedConfig {
        redis_url: pulse_testkit::servers::redis_url(),
        key_prefix: prefix.clone(),
        ..SpeedConfig::default()
    };
    let feed_ids = || -> BTreeSet<String> {
        runtime
            .block_on(async {
                SpeedLayer::connect(&speed)?
                    .recent("reddit/r/rust", 1_000)
                    .await
            })
            .expect("feed")
            .into_iter()
            .map(|(_, json)| {
                let post: serde_json::Value = serde_json::from_str(&json).expect("json");
                post["id"].as_str().expect("id").to_string()
            })
            .collect()
    };
    wait_for("every post in the live feed", || feed_ids() == all);

    let deleted = [&names[3], &names[17], &names[29]];
    fake.delete(deleted[0]);
    fake.remove(deleted[1]);
    fake.delete(deleted[2]);
    let deleted: BTreeSet<String> = deleted.iter().map(|n| format!("reddit:{n}")).collect();
    let remaining: BTreeSet<String> = all.difference(&deleted).cloned().collect();
    wait_for("the deletions stored", || {
        deleted
            .iter()
            .all(|id| http_get(port, &format!("/api/v1/posts/{id}")).map(|(s, _)| s) == Some(410))
    });
    for id in &deleted {
        let (_, body) = http_get(port, &format!("/api/v1/posts/{id}")).expect("answer");
        let error: serde_json::Value = serde_json::from_str(&body).expect("json error");
        assert_eq!(error["error"], "gone", "{body}");
        assert!(error["detail"]
            .as_str()
            .expect("detail")
            .contains("deleted at its source"));
    }
    assert_eq!(stored_ids(port), Some(remaining.clone()));
    let kept = remaining.first().expect("a post");
    assert_eq!(
        http_get(port, &format!("/api/v1/posts/{kept}")).map(|(s, _)| s),
        Some(200)
    );
    wait_for("the deletions gone from the live feed", || {
        feed_ids() == remaining
    });
    assert!(up.terminate().success(), "{}", up.logs());

    // A recompute counts only the posts that remain.
    let run = |args: &[&str]| -> String {
        let mut command: Command = lane.pulse(args);
        command.envs(env.iter().copied());
        let output = command.output().expect("pulse runs");
        assert!(
            output.status.success(),
            "pulse {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    };
    let from = hour.to_rfc3339();
    let to = (hour + Duration::hours(1)).to_rfc3339();
    run(&["batch", "recompute", "--from", &from, "--to", &to]);
    let rollups = run(&[
        "--json",
        "batch",
        "rollups",
        "--channel",
        "reddit/r/rust",
        "--from",
        &from,
        "--to",
        &to,
    ]);
    let posts: Vec<u64> = rollups
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("json line")["posts"]
                .as_u64()
                .expect("posts")
        })
        .collect();
    assert_eq!(posts, [(POSTS - 3) as u64]);
}
