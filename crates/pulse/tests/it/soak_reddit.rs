//! The Reddit source in a soak: `pulse ingest reddit` against the in-process fake for
//! `PULSE_SOAK_SECS` (120 s in the suite; `scripts/soak` runs 1,800), SIGKILLed at random
//! every sixth to third of the run (every 2 to 5 minutes in the long form). Meanwhile the
//! fake serves a steady stream of items and bursts larger than a page, deletes some a few
//! seconds after they appear, answers bursts of 5xx and a 429 now and then, and lets tokens
//! expire. Its window is Reddit's: 100 requests a minute in the short form, 1,000 over ten
//! minutes (Reddit's average) in the long one.
//!
//! Asserted: every item exactly once on the raw topic (a deleted one at most once, and then
//! tombstoned); no sliding window holding more requests than the limit, restarts included;
//! no request before the reset of a 429; and, away from each disturbance (a restart, a 429,
//! a 5xx burst), every item delivered within a poll interval and a few seconds.

use crate::common;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use common::soak::{self, busiest_window, wall_ms, Fault as Disturbance, Schedule};
use common::{read_all, Lane, Record};
use pulse_ingest::reddit::fake::{FakeReddit, FakeSettings, Fault};
use rand::Rng;

const POLL: Duration = Duration::from_secs(3);
/// What a delivery may take beyond the poll interval: the poll, the transaction.
const DELIVERY_SLACK: Duration = Duration::from_secs(5);
/// How long after a disturbance (a restart, a 5xx burst, a 429) the lag may stay high.
const RECOVERY: Duration = Duration::from_secs(15);

/// The records on the raw topic by post id: (posts, tombstones, first post's timestamp).
fn by_id(records: &[Record]) -> BTreeMap<String, (usize, usize, i64)> {
    let mut ids: BTreeMap<String, (usize, usize, i64)> = BTreeMap::new();
    for record in records {
        let value = record.json();
        let id = value["id"].as_str().expect("id").to_string();
        let entry = ids.entry(id).or_insert((0, 0, i64::MAX));
        if value["kind"] == "tombstone" {
            entry.1 += 1;
        } else {
            entry.0 += 1;
            entry.2 = entry.2.min(record.timestamp_ms.expect("timestamp"));
        }
    }
    ids
}

#[test]
fn every_item_once_within_reddits_window_through_random_sigkills() {
    let length = soak::length();
    let long = soak::is_long(length);
    let (window, limit) = if long { (600, 1_000) } else { (60, 100) };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime
        .block_on(FakeReddit::start(FakeSettings {
            token_ttl: Duration::from_secs(20),
            window: Duration::from_secs(window),
            window_limit: limit,
            ..FakeSettings::default()
        }))
        .expect("fake reddit");
    let settings = fake.settings();
    let lane = Lane::new("soak-reddit", 3);
    let checkpoints = format!("{}.checkpoints", lane.raw);
    let config = lane.write_config(&format!(
        r#"[sources.reddit.soak]
subreddits = ["rust", "golang"]
listings = ["submissions", "comments"]
client_id = "{}"
client_secret = "{}"
reddit_user = "pulse-soak"
auth_url = "{url}"
api_url = "{url}"
poll_interval_ms = {}
recheck_interval_ms = 6000
recheck_age_secs = 90
max_pages = 5
backoff_initial_ms = 500
backoff_max_ms = 8000
"#,
        settings.client_id,
        settings.client_secret,
        POLL.as_millis(),
        url = fake.url()
    ));
    let args = [
        "--config",
        config.as_str(),
        "ingest",
        "reddit",
        "--instance",
        "soak",
    ];
    let env = [("PULSE_KAFKA__TOPICS__CHECKPOINTS", checkpoints.as_str())];

    let mut rng = rand::rng();
    let mut schedule = Schedule::new(length, RECOVERY);
    let burst_every = if long { 120 } else { 30 };
    let started = Instant::now();
    let mut source = lane.spawn("reddit.0", &args, &env);
    // Every item with when it was made; the deleted ones; each disturbance with how long
    // the lag may stay high after it.
    let mut items: Vec<(String, i64)> = Vec::new();
    let mut deletions: VecDeque<(Instant, String)> = VecDeque::new();
    let mut deleted: Vec<String> = Vec::new();
    let mut restarts = 0;
    let mut tick = 0u64;
    while started.elapsed() < length {
        let now = Instant::now();
        let burst = tick > 0 && tick.is_multiple_of(burst_every * 4);
        for _ in 0..if burst { 120 } else { 1 } {
            let i = items.len();
            let sub = if i.is_multiple_of(3) {
                "golang"
            } else {
                "rust"
            };
            let created = chrono::Utc::now().timestamp();
            let name = match items.iter().rev().find(|(n, _)| n.starts_with("t3_")) {
                Some((link, _)) if i % 4 == 3 => {
                    fake.comment(sub, &link.clone(), &format!("comment {i}"), created)
                }
                _ => fake.submit(
                    sub,
                    &format!("submission {i}"),
                    &format!("text {i}"),
                    created,
                ),
            };
            if i % 20 == 7 {
                let after = Duration::from_millis(rng.random_range(3_000..8_000));
                deletions.push_back((now + after, name.clone()));
            }
            items.push((name, wall_ms()));
        }
        while deletions.front().is_some_and(|(due, _)| *due <= now) {
            let (_, name) = deletions.pop_front().expect("a due deletion");
            fake.delete(&name);
            deleted.push(name);
        }
        for disturbance in schedule.due() {
            match disturbance {
                Disturbance::Kill => {
                    restarts += 1;
                    lane.kill_and_restart(&mut source, &format!("reddit.{restarts}"), &args, &env);
                }
                Disturbance::First => {
                    for status in [503, 502, 500] {
                        fake.inject(Fault::Status(status));
                    }
                }
                Disturbance::Second => fake.inject(Fault::RateLimited(3)),
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    for (_, name) in deletions.drain(..) {
        fake.delete(&name);
        deleted.push(name);
    }

    // Every item that stays, and a tombstone for every deleted one that was published.
    let drained = Instant::now();
    let ids = loop {
        let ids = by_id(&read_all(&lane.raw, lane.partitions));
        let kept_in = items
            .iter()
            .filter(|(name, _)| !deleted.contains(name))
            .all(|(name, _)| ids.contains_key(&format!("reddit:{name}")));
        let tombstoned = deleted.iter().all(|name| {
            ids.get(&format!("reddit:{name}"))
                .is_none_or(|(posts, tombstones, _)| *posts == 0 || *tombstones > 0)
        });
        if kept_in && tombstoned {
            break ids;
        }
        assert!(
            drained.elapsed() < Duration::from_secs(120),
            "not every item or tombstone arrived; log: {}",
            source.logs()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let status = source.terminate();
    assert!(status.success(), "{status}: {}", source.logs());
    let final_ids = by_id(&read_all(&lane.raw, lane.partitions));
    assert_eq!(final_ids, ids, "nothing more arrived after the drain");

    // Exactly once.
    let known: Vec<String> = items.iter().map(|(n, _)| format!("reddit:{n}")).collect();
    assert!(ids.keys().all(|id| known.contains(id)), "an unknown id");
    let mut published_deleted = 0;
    for (name, _) in &items {
        let (posts, tombstones, _) = ids
            .get(&format!("reddit:{name}"))
            .copied()
            .unwrap_or((0, 0, 0));
        if deleted.contains(name) {
            assert!(
                posts <= 1 && tombstones == posts,
                "{name}: {posts} posts, {tombstones} tombstones"
            );
            published_deleted += posts;
        } else {
            assert_eq!((posts, tombstones), (1, 0), "{name}");
        }
    }

    // Within the window, across restarts; no request before a 429's reset.
    let log: Vec<Instant> = fake
        .log()
        .into_iter()
        .map(|(at, _)| at.into_std())
        .collect();
    let busiest = busiest_window(&log, settings.window);
    assert!(
        busiest <= limit as usize,
        "{busiest} requests in one sliding window of {window} s"
    );
    for (answered, reset) in fake.rate_limited() {
        let (answered, reset) = (answered.into_std(), reset.into_std());
        let early: Vec<Duration> = log
            .iter()
            .filter(|at| **at > answered && **at < reset)
            .map(|at| reset - *at)
            .collect();
        assert!(
            early.is_empty(),
            "requests {early:?} before the reset of a 429"
        );
    }
    let stats = fake.stats();
    assert_eq!(stats.over_limit, 0, "{stats:?}");
    assert_eq!(stats.bad_user_agent, 0, "{stats:?}");

    // Away from disturbances, every item within a poll interval and the slack.
    let started_ms = wall_ms() - started.elapsed().as_millis() as i64;
    let deliveries: Vec<(i64, i64)> = items
        .iter()
        .filter_map(|(name, made)| match ids.get(&format!("reddit:{name}")) {
            Some((1, _, delivered)) => Some((*made, *delivered)),
            _ => None,
        })
        .collect();
    let (steady, worst_steady, worst) =
        schedule.check_lags("reddit", &deliveries, POLL + DELIVERY_SLACK, started_ms);
    println!(
        "reddit soak: {} s, {} items ({} deleted, {published_deleted} of them tombstoned), \
         {restarts} restarts, {} requests (busiest {window} s window {busiest} of {limit}), \
         {} 429s, {} tokens; lag worst {worst} ms, away from disturbances {worst_steady} ms \
         over {steady} items",
        length.as_secs(),
        items.len(),
        deleted.len(),
        stats.api_requests,
        fake.rate_limited().len(),
        stats.token_requests
    );
}
