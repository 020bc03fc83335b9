//! The Bluesky source in a soak: `pulse ingest bluesky` against the in-process fake
//! Jetstream for `PULSE_SOAK_SECS`, SIGKILLed at random (every 2 to 5 minutes in the long
//! form). Meanwhile the fake sends posts (in English, en-US, en-GB, and German that the
//! source leaves out), deletes some a few seconds later, drops the connection, stalls it
//! while still pinging, and closes new connections at once with 1013 "try again later".
//!
//! Asserted: every English post exactly once on the raw topic and, when deleted, one
//! tombstone; no other post; the connections few (each drop, stall, close and restart
//! costs one, with no storm of reconnections); and, away from each disturbance, every post
//! within a few seconds.

use crate::common;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use common::soak::{self, wall_ms, Fault, Schedule};
use common::{read_all, wait_for, Lane, Record};
use pulse_ingest::bluesky::fake::FakeJetstream;

const DELIVERY: Duration = Duration::from_secs(5);
/// How long after a disturbance (a restart, a drop with early closes, a stall) the lag may
/// stay high.
const RECOVERY: Duration = Duration::from_secs(15);
/// Connections the fake closes at once, each time it does.
const CLOSES: usize = 3;
const BACKOFF_INITIAL_MS: u64 = 200;

/// Records on the raw topic by post URI: (posts, tombstones, first post's timestamp).
fn by_uri(records: &[Record]) -> BTreeMap<String, (usize, usize, i64)> {
    let mut uris: BTreeMap<String, (usize, usize, i64)> = BTreeMap::new();
    for record in records {
        let value = record.json();
        let uri = value["id"].as_str().expect("id").to_string();
        let entry = uris.entry(uri).or_insert((0, 0, i64::MAX));
        if value["kind"] == "tombstone" {
            entry.1 += 1;
        } else {
            entry.0 += 1;
            entry.2 = entry.2.min(record.timestamp_ms.expect("timestamp"));
        }
    }
    uris
}

#[test]
fn every_post_once_through_drops_stalls_early_closes_and_random_sigkills() {
    let length = soak::length();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime
        .block_on(FakeJetstream::start())
        .expect("fake jetstream");
    fake.ping_while_stalled(Duration::from_millis(500));
    let lane = Lane::new("soak-bluesky", 3);
    let checkpoints = format!("{}.checkpoints", lane.raw);
    let config = lane.write_config(&format!(
        r##"[sources.bluesky.soak]
jetstream_url = "{url}"
langs = ["en"]
read_timeout_ms = 3000
backoff_initial_ms = {BACKOFF_INITIAL_MS}
backoff_max_ms = 1600
"##,
        url = fake.url()
    ));
    let args = [
        "--config",
        config.as_str(),
        "ingest",
        "bluesky",
        "--instance",
        "soak",
    ];
    let env = [("PULSE_KAFKA__TOPICS__CHECKPOINTS", checkpoints.as_str())];

    let mut schedule = Schedule::new(length, RECOVERY);
    let started = Instant::now();
    let mut source = lane.spawn("bluesky.0", &args, &env);
    wait_for("the source connected", || fake.cursors().len() == 1);
    let mut posts: Vec<(String, i64)> = Vec::new();
    let mut deletions: VecDeque<(Instant, String)> = VecDeque::new();
    let mut deleted: Vec<String> = Vec::new();
    // What costs a connection: the first, drops, stalls, restarts, and early closes.
    let (mut restarts, mut drops, mut stalls, mut closes) = (0, 0, 0, 0);
    let mut tick = 0u64;
    while started.elapsed() < length {
        let now = Instant::now();
        let i = posts.len() as u64 + tick;
        let did = format!("did:plc:author{}", i % 7);
        let langs: &[&str] = match tick % 4 {
            0 => &["en"],
            1 => &["en-US"],
            2 => &["EN-gb"],
            _ => &["de"],
        };
        let uri = fake.post(&did, &format!("post {tick}"), langs);
        if tick % 4 != 3 {
            if tick % 25 == 5 {
                deletions.push_back((now + Duration::from_secs(3), uri.clone()));
            }
            posts.push((uri, wall_ms()));
        }
        while deletions.front().is_some_and(|(due, _)| *due <= now) {
            let (_, uri) = deletions.pop_front().expect("a due deletion");
            fake.delete(&uri);
            deleted.push(uri);
        }
        for fault in schedule.due() {
            match fault {
                Fault::Kill => {
                    restarts += 1;
                    lane.kill_and_restart(&mut source, &format!("bluesky.{restarts}"), &args, &env);
                }
                Fault::First => {
                    // Dropped; the next connections are accepted and closed at once.
                    closes += 1;
                    drops += 1;
                    fake.close_next(CLOSES, 1013);
                    fake.cut();
                }
                Fault::Second => {
                    stalls += 1;
                    fake.stall();
                }
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    for (_, uri) in deletions.drain(..) {
        fake.delete(&uri);
        deleted.push(uri);
    }

    let drained = Instant::now();
    let uris = loop {
        let uris = by_uri(&read_all(&lane.raw, lane.partitions));
        let complete = posts.iter().all(|(uri, _)| {
            let tombstones = usize::from(deleted.contains(uri));
            uris.get(uri).is_some_and(|(posts, seen_tombstones, _)| {
                *posts == 1 && *seen_tombstones >= tombstones
            })
        });
        if complete {
            break uris;
        }
        assert!(
            drained.elapsed() < Duration::from_secs(120),
            "not every post arrived; log: {}",
            source.logs()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let status = source.terminate();
    assert!(status.success(), "{status}: {}", source.logs());
    assert_eq!(by_uri(&read_all(&lane.raw, lane.partitions)), uris);

    // Exactly once: each English post, and a tombstone for each deleted one; no other.
    assert_eq!(
        uris.len(),
        posts.len(),
        "a post of another language, or unknown"
    );
    for (uri, _) in &posts {
        let (count, tombstones, _) = uris[uri];
        assert_eq!(
            (count, tombstones),
            (1, usize::from(deleted.contains(uri))),
            "{uri}"
        );
    }

    // Few connections, and the early closes backed off.
    let connected = fake.connected_at();
    let expected = 1 + restarts + drops + stalls + closes * CLOSES;
    assert!(
        connected.len() <= expected + 2,
        "{} connections, {expected} expected",
        connected.len()
    );
    let cursors = fake.cursors();
    assert_eq!(cursors.len(), connected.len());

    // Away from disturbances, every post within a few seconds.
    let started_ms = wall_ms() - started.elapsed().as_millis() as i64;
    let deliveries: Vec<(i64, i64)> = posts
        .iter()
        .map(|(uri, made)| (*made, uris[uri].2))
        .collect();
    let (steady, worst_steady, worst) =
        schedule.check_lags("bluesky", &deliveries, DELIVERY, started_ms);
    println!(
        "bluesky soak: {} s, {} posts ({} deleted), {restarts} restarts, {drops} drops, \
         {stalls} stalls, {closes} times {CLOSES} early closes, {} connections; lag worst \
         {worst} ms, away from disturbances {worst_steady} ms over {steady} posts",
        length.as_secs(),
        posts.len(),
        deleted.len(),
        connected.len(),
    );
}
