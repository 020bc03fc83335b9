//! `pulse ingest reddit` against the in-process fake Reddit on the shared Kafka: every item
//! the fake serves reaches the raw topic exactly once across two SIGKILLs of the source,
//! within Reddit's budget of 100 requests a minute; then edits and deletions come through
//! as updates and tombstones.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{read_all, wait_for, Lane, Record};
use pulse_ingest::reddit::fake::{FakeReddit, FakeSettings, Fault};

/// Items the fake serves while the source runs, one every 20 ms.
const ITEMS: usize = 1_200;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Posts and tombstones on the raw topic, by post id: `(texts of posts, tombstones)`.
fn by_id(records: &[Record]) -> BTreeMap<String, (Vec<String>, usize)> {
    let mut ids: BTreeMap<String, (Vec<String>, usize)> = BTreeMap::new();
    for record in records {
        let value = record.json();
        let id = value["id"].as_str().expect("id").to_string();
        let key = String::from_utf8(record.key.clone().expect("key")).expect("utf-8 key");
        assert_eq!(key, id, "records are keyed by post id");
        let entry = ids.entry(id).or_default();
        if value["kind"] == "tombstone" {
            entry.1 += 1;
        } else {
            entry
                .0
                .push(value["text"].as_str().expect("text").to_string());
        }
    }
    ids
}

#[test]
fn every_item_once_across_two_sigkills_then_edits_and_deletions() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime
        .block_on(FakeReddit::start(FakeSettings {
            // Tokens expire during the run: the source must renew them.
            token_ttl: Duration::from_secs(12),
            ..FakeSettings::default()
        }))
        .expect("fake reddit");
    let settings = FakeSettings::default();
    let lane = Lane::new("reddit", 2);
    let checkpoints = format!("{}.checkpoints", lane.raw);
    let config = lane.write_config(&format!(
        r#"[sources.reddit.fake]
subreddits = ["rust", "golang"]
listings = ["submissions", "comments"]
client_id = "{}"
client_secret = "{}"
reddit_user = "pulse-tests"
auth_url = "{url}"
api_url = "{url}"
poll_interval_ms = 1500
recheck_interval_ms = 4000
backoff_initial_ms = 50
backoff_max_ms = 1000
"#,
        settings.client_id,
        settings.client_secret,
        url = fake.url()
    ));
    let args = [
        "--config",
        config.as_str(),
        "ingest",
        "reddit",
        "--instance",
        "fake",
    ];
    let env = [("PULSE_KAFKA__TOPICS__CHECKPOINTS", checkpoints.as_str())];

    let mut source = lane.spawn("reddit.0", &args, &env);
    let mut names: Vec<String> = Vec::with_capacity(ITEMS);
    let mut restarts = 0;
    for i in 0..ITEMS {
        let sub = if i % 3 == 0 { "golang" } else { "rust" };
        let name = if i % 2 == 0 || names.is_empty() {
            fake.submit(
                sub,
                &format!("submission {i}"),
                &format!("text of {i}"),
                now(),
            )
        } else {
            let link = names[names.len() - 1].clone();
            fake.comment(sub, &link, &format!("comment {i}"), now())
        };
        names.push(name);
        if i == ITEMS / 2 {
            // A burst of server errors and an HTML page: retried or skipped, not fatal.
            for fault in [
                Fault::Status(503),
                Fault::Status(502),
                Fault::Status(500),
                Fault::Html,
            ] {
                fake.inject(fault);
            }
        }
        // Two SIGKILLs, a third and two thirds of the way, each restarted a second later.
        if i == ITEMS / 3 || i == 2 * ITEMS / 3 {
            restarts += 1;
            lane.kill_and_restart(&mut source, &format!("reddit.{restarts}"), &args, &env);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let expected: Vec<String> = names.iter().map(|n| format!("reddit:{n}")).collect();
    wait_for("every item on the raw topic", || {
        read_all(&lane.raw, lane.partitions).len() >= ITEMS
    });
    let records = read_all(&lane.raw, lane.partitions);
    assert_eq!(records.len(), ITEMS, "each item exactly once");
    let ids = by_id(&records);
    assert_eq!(ids.len(), ITEMS);
    assert!(expected
        .iter()
        .all(|id| ids[id] == (vec![ids[id].0[0].clone()], 0)));

    // Edits and deletions of items within the recheck age.
    let edited = [&names[10], &names[ITEMS - 2]];
    let deleted = [&names[20], &names[ITEMS / 2], &names[ITEMS - 1]];
    fake.edit(edited[0], "edited text");
    fake.edit(edited[1], "edited text");
    fake.delete(deleted[0]);
    fake.remove(deleted[1]);
    fake.delete(deleted[2]);
    wait_for("updates and tombstones on the raw topic", || {
        read_all(&lane.raw, lane.partitions).len() >= ITEMS + 5
    });
    let status = source.terminate();
    assert!(status.success(), "{status}: {}", source.logs());
    let records = read_all(&lane.raw, lane.partitions);
    assert_eq!(records.len(), ITEMS + 5);
    let ids = by_id(&records);
    for name in edited {
        // The update follows the original on the post's partition.
        let (texts, tombstones) = &ids[&format!("reddit:{name}")];
        assert_eq!(texts.len(), 2, "{name}");
        assert!(texts[1].ends_with("edited text"), "{texts:?}");
        assert_eq!(*tombstones, 0);
    }
    for name in deleted {
        let (texts, tombstones) = &ids[&format!("reddit:{name}")];
        assert_eq!((texts.len(), *tombstones), (1, 1), "{name}");
    }

    let stats = fake.stats();
    // Reddit's budget is its header window, which `over_limit` counts; a restarted process
    // continues its predecessor's pace from the checkpoint, so no sliding minute holds more
    // than 100 across the restarts either.
    assert_eq!(stats.over_limit, 0, "{stats:?}");
    let log: Vec<_> = fake
        .log()
        .into_iter()
        .map(|(at, _)| at.into_std())
        .collect();
    let busiest = common::soak::busiest_window(&log, Duration::from_secs(60));
    assert!(busiest <= 100, "{busiest} requests in a sliding minute");
    assert_eq!(stats.bad_user_agent, 0, "{stats:?}");
    assert!(stats.token_requests >= 3, "tokens renewed: {stats:?}");
    // The checkpoint record of the instance is on its compacted topic.
    let checkpoint = read_all(&checkpoints, 1);
    assert!(checkpoint
        .iter()
        .all(|r| r.key.as_deref() == Some(b"reddit/fake".as_slice())));
    assert!(!checkpoint.is_empty());
}
