//! Chaos: the pipeline's roles as separate processes (`pulse ingest file` in paced chunks,
//! two `pulse enrich`, `pulse sink batch`, `pulse sink speed`, `pulse api`) on a private
//! stack, while random faults hit them: SIGKILL and restart of a role, SIGKILL and restart
//! of Kafka, Cassandra and Redis, and a Redis that comes back with its data gone. Then
//! every store is checked exactly against the ground truth: each raw record enriched or
//! dead-lettered once, every post stored once and in order in Cassandra, exact rollups,
//! exact live windows in Redis, and the API serving the same figures.
//!
//! Sized by `PULSE_CHAOS_POSTS` (default 20,000) and `PULSE_CHAOS_FAULTS` (default 12);
//! `PULSE_CHAOS_SEED` replays a run's schedule (each run prints its seed). `scripts/chaos`
//! runs the long form for release checks.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};
use common::{
    committed_on, free_port, http_get, produce_on, read_all_on, try_high_watermarks_on, Lane,
    PrivateStack, Record, Role,
};
use pulse_batch::BatchStore;
use pulse_core::config::{BatchConfig, SpeedConfig};
use pulse_core::{EnrichedPost, Granularity, Tally};
use pulse_speed::{minute_of, SpeedLayer};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const PARTITIONS: i32 = 4;
const CHANNELS: usize = 5;
/// Posts per `pulse ingest file` run. Chunks are paced to arrive over about as long as the
/// faults take (`FAULT_TIME` each), so the faults hit a pipeline at work.
const CHUNK: usize = 1_000;
const FAULT_TIME: Duration = Duration::from_secs(5);
/// Raw records no post can be made of, produced once each among the posts.
const BAD: usize = 25;
/// The long-running roles, each restarted after its SIGKILL.
const ROLES: [&str; 5] = ["enrich-0", "enrich-1", "sink-batch", "sink-speed", "api"];

/// A run's size and schedule, from the environment.
struct Plan {
    posts: usize,
    faults: usize,
    seed: u64,
}

impl Plan {
    fn from_env() -> Plan {
        let number = |name: &str, default: u64| {
            std::env::var(name).map_or(default, |value| {
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}"))
            })
        };
        let clock = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
        Plan {
            posts: number("PULSE_CHAOS_POSTS", 20_000) as usize,
            faults: number("PULSE_CHAOS_FAULTS", 12) as usize,
            seed: number("PULSE_CHAOS_SEED", clock),
        }
    }
}

/// What can go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL of a long-running role, restarted after a pause.
    Role(&'static str),
    /// SIGKILL of the running `pulse ingest file`, whose chunk is then ingested again.
    Ingest,
    /// SIGKILL of a server (`kafka`, `cql`, `redis`), restarted with its data.
    Server(&'static str),
    /// SIGKILL of Redis, restarted with its data directory emptied (a lost disk).
    RedisDataLoss,
}

impl Fault {
    /// The schedule: each server and the data loss at least once, the rest at random.
    fn schedule(rng: &mut StdRng, faults: usize) -> Vec<Fault> {
        let mut all: Vec<Fault> = ROLES.iter().map(|r| Fault::Role(r)).collect();
        all.push(Fault::Ingest);
        all.extend(["kafka", "cql", "redis"].map(Fault::Server));
        all.push(Fault::RedisDataLoss);
        let mut schedule = vec![
            Fault::Server("kafka"),
            Fault::Server("cql"),
            Fault::Server("redis"),
            Fault::RedisDataLoss,
            Fault::Ingest,
        ];
        while schedule.len() < faults {
            schedule.push(all[rng.random_range(0..all.len())]);
        }
        schedule.shuffle(rng);
        schedule
    }
}

/// The ground truth: post `i` of `n`.
struct Truth {
    n: usize,
    /// The hour the first post falls in; posts span the two hours after it.
    start: DateTime<Utc>,
}

impl Truth {
    fn new(n: usize) -> Truth {
        let hour = Utc::now()
            .duration_trunc(chrono::Duration::hours(1))
            .expect("an hour");
        Truth {
            n,
            start: hour - chrono::Duration::hours(3),
        }
    }

    fn id(&self, i: usize) -> String {
        format!("chaos:{i:06}")
    }

    fn channel(&self, i: usize) -> String {
        format!("chaos/c{}", i % CHANNELS)
    }

    /// Distinct and increasing with `i`, over two hours.
    fn created_at(&self, i: usize) -> DateTime<Utc> {
        self.start + chrono::Duration::milliseconds((i as i64) * 7_200_000 / self.n as i64)
    }

    /// The end of the range every post falls in.
    fn end(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::hours(3)
    }

    fn post(&self, i: usize) -> serde_json::Value {
        const TOPICS: [&str; 6] = [
            "the new Rust release",
            "the trams in Berlin",
            "the Kafka upgrade",
            "Apple's keynote",
            "the city marathon",
            "our support team",
        ];
        const TEMPLATES: [&str; 6] = [
            "I love {}, it is wonderful and fast",
            "{} is terrible, everything broke again",
            "Not sure what to think about {} yet",
            "Thanks to Maria in Paris for the tips on {}!",
            "{} made me so angry today, what a waste of time",
            "Reading about {} on the train to London",
        ];
        let text = TEMPLATES[i % TEMPLATES.len()].replace("{}", TOPICS[(i / 6) % TOPICS.len()]);
        serde_json::json!({
            "id": self.id(i),
            "source": "file",
            "channel": self.channel(i),
            "text": format!("{text} #{}", i % 97),
            "created_at": self.created_at(i).to_rfc3339(),
        })
    }

    /// Writes the posts as JSONL chunks of `CHUNK` posts.
    fn write_chunks(&self, dir: &std::path::Path) -> Vec<PathBuf> {
        (0..self.n.div_ceil(CHUNK))
            .map(|k| {
                let path = dir.join(format!("chunk-{k:03}.jsonl"));
                let mut file =
                    std::io::BufWriter::new(std::fs::File::create(&path).expect("chunk file"));
                for i in k * CHUNK..((k + 1) * CHUNK).min(self.n) {
                    writeln!(file, "{}", self.post(i)).expect("write post");
                }
                file.flush().expect("flush chunk");
                path
            })
            .collect()
    }

    /// Ids of a channel's posts, newest first (the order of the batch layer's reads).
    fn ids_newest_first(&self, channel: &str) -> Vec<String> {
        (0..self.n)
            .rev()
            .filter(|&i| self.channel(i) == channel)
            .map(|i| self.id(i))
            .collect()
    }
}

/// Raw records no post can be made of, keyed `bad:<i>`: each is dead-lettered by enrich.
fn bad_records() -> Vec<(String, Vec<u8>)> {
    (0..BAD)
        .map(|i| {
            let payload = match i % 5 {
                0 => b"{not json".to_vec(),
                1 => br#"{"id":"x","text":"no source or channel"}"#.to_vec(),
                2 => b"[1, 2, 3]".to_vec(),
                3 => serde_json::json!({
                    "id": format!("bad:{i}"), "source": "file", "channel": "c".repeat(70_000),
                    "text": "a channel no store key can hold", "created_at": "2026-11-01T00:00:00Z",
                })
                .to_string()
                .into_bytes(),
                _ => serde_json::json!({
                    "id": format!("bad:{i}"), "source": "file", "channel": "chaos/c0",
                    "text": "x".repeat(50_000), "created_at": "2026-11-01T00:00:00Z",
                })
                .to_string()
                .into_bytes(),
            };
            (format!("bad:{i}"), payload)
        })
        .collect()
}

/// The long-running roles, restarted after each death; deaths nobody caused are recorded.
struct Fleet<'a> {
    lane: &'a Lane,
    env: Vec<(String, String)>,
    running: BTreeMap<&'static str, Role>,
    starts: BTreeMap<&'static str, usize>,
    /// Roles that exited while nothing killed them: name, status, the end of the log.
    unprompted: Vec<(String, String, String)>,
}

impl<'a> Fleet<'a> {
    fn start(lane: &'a Lane, env: Vec<(String, String)>) -> Fleet<'a> {
        let mut fleet = Fleet {
            lane,
            env,
            running: BTreeMap::new(),
            starts: BTreeMap::new(),
            unprompted: Vec::new(),
        };
        for role in ROLES {
            fleet.spawn(role);
        }
        fleet
    }

    fn spawn(&mut self, role: &'static str) {
        let start = self.starts.entry(role).or_default();
        *start += 1;
        let args: &[&str] = match role {
            "enrich-0" | "enrich-1" => &["enrich"],
            "sink-batch" => &["sink", "batch"],
            "sink-speed" => &["sink", "speed"],
            _ => &["api"],
        };
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Stable per replica: a restart takes over (and aborts) what its predecessor left.
        let transactional_id = format!("{}-{role}", self.lane.group);
        env.push(("PULSE_ENRICH__TRANSACTIONAL_ID", &transactional_id));
        let name = format!("{role}.{start}");
        self.running
            .insert(role, self.lane.spawn(&name, args, &env));
    }

    fn kill(&mut self, role: &'static str) {
        if let Some(mut running) = self.running.remove(role) {
            running.kill();
        }
    }

    /// Restarts what died by itself.
    fn tend(&mut self) {
        let dead: Vec<&'static str> = self
            .running
            .iter_mut()
            .filter_map(|(role, running)| match running.child.try_wait() {
                Ok(Some(_)) => Some(*role),
                _ => None,
            })
            .collect();
        for role in dead {
            if let Some(mut running) = self.running.remove(role) {
                let status = running
                    .child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                let logs = running.logs();
                let tail: Vec<&str> = logs.lines().rev().take(5).collect();
                println!("{role} exited by itself ({status}); restarting it");
                self.unprompted
                    .push((role.to_string(), status, tail.join("\n")));
            }
            self.spawn(role);
        }
    }

    /// Sleeps `pause`, tending the roles meanwhile.
    fn pause(&mut self, pause: Duration) {
        let until = Instant::now() + pause;
        while Instant::now() < until {
            self.tend();
            std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
        }
    }

    /// Waits until `condition` holds, tending the roles; fails after `patience`.
    fn wait_for(&mut self, what: &str, patience: Duration, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + patience;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "timed out after {patience:?} waiting for {what}"
            );
            self.pause(Duration::from_millis(500));
        }
    }

    /// SIGTERM to every role: each must drain and exit cleanly.
    fn stop(mut self) -> Vec<(String, String, String)> {
        for (role, mut running) in std::mem::take(&mut self.running) {
            let status = running.terminate();
            assert!(
                status.success(),
                "{role}: {status}; log: {}",
                running.logs()
            );
        }
        self.unprompted
    }
}

/// The `pulse ingest file` run in progress, which a fault may kill.
type Ingesting = Mutex<Option<Child>>;

/// Ingests every chunk in order, each until one run of it succeeds; returns the runs each
/// chunk took.
fn ingest_all(
    lane: &Lane,
    chunks: &[PathBuf],
    pace: Duration,
    ingesting: &Ingesting,
) -> Vec<usize> {
    let mut runs = Vec::with_capacity(chunks.len());
    for (k, chunk) in chunks.iter().enumerate() {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let log = lane
                .dir
                .path()
                .join(format!("ingest-{k:03}.{attempts}.log"));
            let child = lane
                .pulse(&["ingest", "file", chunk.to_str().expect("utf-8 path")])
                .env("PULSE_METRICS__ENABLED", "false")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("ingest log"))
                .spawn()
                .expect("pulse ingest starts");
            *ingesting.lock().expect("lock") = Some(child);
            let status = loop {
                std::thread::sleep(Duration::from_millis(50));
                let mut slot = ingesting.lock().expect("lock");
                let child = slot.as_mut().expect("the running ingest");
                if let Some(status) = child.try_wait().expect("ingest status") {
                    *slot = None;
                    break status;
                }
            };
            if status.success() {
                break;
            }
            let logs = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = logs.lines().rev().take(3).collect();
            println!(
                "ingest of chunk {k} ended with {status}; running it again. its log ends: {}",
                tail.join(" | ")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        runs.push(attempts);
        std::thread::sleep(pace.saturating_sub(started.elapsed()));
    }
    runs
}

/// Where the pipeline is: offsets of the topics and what each group committed.
fn progress(lane: &Lane, groups: &[&str]) -> String {
    let sum = |offsets: Vec<i64>| offsets.iter().filter(|&&o| o > 0).sum::<i64>();
    let total = |topic: &str| {
        try_high_watermarks_on(&lane.brokers, topic, PARTITIONS)
            .map_or("?".into(), |e| sum(e).to_string())
    };
    let mut line = format!(
        "raw {}, enriched topic {} offsets",
        total(&lane.raw),
        total(&lane.enriched)
    );
    let topics = [&lane.raw, &lane.enriched, &lane.enriched];
    for ((role, group), topic) in ["enrich", "sink-batch", "sink-speed"]
        .iter()
        .zip(groups)
        .zip(topics)
    {
        let done = sum(committed_on(&lane.brokers, group, topic, PARTITIONS));
        line.push_str(&format!(", {role} at {done}"));
    }
    line
}

/// What a tally over posts may be when each post counts once with any one of the
/// enrichments it was given: a post ingested twice is enriched twice, and its scores can
/// differ in their last digits with the batch it ran in. Each figure lies between the sums
/// of its per-post least and greatest values; with one enrichment per post, it is exact.
#[derive(Debug, Default)]
struct Envelope {
    low: BTreeMap<String, i64>,
    high: BTreeMap<String, i64>,
}

impl Envelope {
    /// A tally's figures by name (emotions as `emotion:<name>`), zeros left out.
    fn figures(tally: &Tally) -> BTreeMap<String, i64> {
        let count = |n: u64| i64::try_from(n).expect("a count");
        let mut figures: BTreeMap<String, i64> = [
            ("posts", count(tally.posts)),
            ("negative", count(tally.negative)),
            ("neutral", count(tally.neutral)),
            ("positive", count(tally.positive)),
            ("scored", count(tally.scored)),
            ("score_micros", tally.score_micros),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        for (emotion, micros) in &tally.emotion_micros {
            figures.insert(format!("emotion:{emotion}"), *micros);
        }
        figures.retain(|_, value| *value != 0);
        figures
    }

    /// Adds a post, given every enrichment it was given.
    fn add(&mut self, copies: &[EnrichedPost]) {
        let figures: Vec<BTreeMap<String, i64>> = copies
            .iter()
            .map(|copy| {
                let mut tally = Tally::default();
                tally.add(&copy.enrichment, copy.post.lang.as_deref());
                Envelope::figures(&tally)
            })
            .collect();
        let names: BTreeSet<&String> = figures.iter().flat_map(|f| f.keys()).collect();
        for name in names {
            let values = figures.iter().map(|f| f.get(name).copied().unwrap_or(0));
            *self.low.entry(name.clone()).or_default() += values.clone().min().unwrap_or(0);
            *self.high.entry(name.clone()).or_default() += values.max().unwrap_or(0);
        }
    }

    /// Posts counted (the same at both ends).
    fn posts(&self) -> u64 {
        self.low.get("posts").map_or(0, |&n| n as u64)
    }

    /// Asserts that `got` is a tally these posts can have (exactly it, with one enrichment
    /// per post).
    fn check(&self, what: &str, got: &Tally) {
        let got = Envelope::figures(got);
        if self.low == self.high {
            let mut want = self.low.clone();
            want.retain(|_, value| *value != 0);
            assert_eq!(got, want, "{what}");
            return;
        }
        let names: BTreeSet<&String> = self.low.keys().chain(got.keys()).collect();
        for name in names {
            let value = got.get(name).copied().unwrap_or(0);
            let low = self.low.get(name).copied().unwrap_or(0);
            let high = self.high.get(name).copied().unwrap_or(0);
            assert!(
                (low..=high).contains(&value),
                "{what}: {name} is {value}, outside [{low}, {high}]"
            );
        }
    }
}

#[test]
fn every_store_ends_exact_after_random_kills_of_roles_and_servers() {
    let plan = Plan::from_env();
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let schedule = Fault::schedule(&mut rng, plan.faults);
    println!(
        "chaos: {} posts, {} faults, seed {} (PULSE_CHAOS_SEED={} replays the schedule)",
        plan.posts, plan.faults, plan.seed, plan.seed
    );
    let began = Instant::now();
    let stack = PrivateStack::start(&["kafka", "cql", "redis"]);
    let mut lane = Lane::on(&stack.brokers(), "chaos", PARTITIONS);
    // Kept when the run fails: the roles' logs are what explains it.
    lane.dir.disable_cleanup(true);
    println!("roles log to {}", lane.dir.path().display());
    let truth = Truth::new(plan.posts);
    let chunks = truth.write_chunks(lane.dir.path());
    let keyspace = pulse_testkit::keyspace("chaos");
    let prefix = format!("pulse-chaos:{}", lane.group);
    let batch_group = format!("{}.batch", lane.group);
    let speed_group = format!("{}.speed", lane.group);
    let api_port = free_port();
    let env: Vec<(String, String)> = [
        ("PULSE_BATCH__NODES", stack.cql_nodes()),
        ("PULSE_BATCH__KEYSPACE", keyspace.clone()),
        ("PULSE_BATCH__GROUP", batch_group.clone()),
        ("PULSE_BATCH__REQUEST_TIMEOUT_MS", "2000".into()),
        ("PULSE_BATCH__CONNECT_TIMEOUT_MS", "1000".into()),
        ("PULSE_SPEED__REDIS_URL", stack.redis_url()),
        ("PULSE_SPEED__KEY_PREFIX", prefix.clone()),
        ("PULSE_SPEED__GROUP", speed_group.clone()),
        ("PULSE_KAFKA__SESSION_TIMEOUT_MS", "6000".into()),
        ("PULSE_PIPELINE__DRAIN_TIMEOUT_MS", "5000".into()),
        ("PULSE_API__LISTEN", format!("127.0.0.1:{api_port}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let pulse = |args: &[&str]| {
        let output = lane
            .pulse(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("pulse runs");
        assert!(
            output.status.success(),
            "pulse {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    };
    pulse(&["schema", "apply"]);
    produce_on(&lane.brokers, &lane.raw, bad_records());

    let groups = [lane.group.as_str(), &batch_group, &speed_group];
    let ingesting: Ingesting = Mutex::new(None);
    let mut fleet = Fleet::start(&lane, env.clone());
    let pace = FAULT_TIME * schedule.len() as u32 / chunks.len() as u32;
    let ingest_runs = std::thread::scope(|scope| {
        let ingest = scope.spawn(|| ingest_all(&lane, &chunks, pace, &ingesting));
        for (n, fault) in schedule.iter().enumerate() {
            fleet.pause(Duration::from_millis(rng.random_range(1_000..4_000)));
            let down = Duration::from_millis(rng.random_range(0..2_000));
            let at = began.elapsed().as_secs_f64();
            let mut done = *fault;
            match *fault {
                Fault::Role(role) => {
                    fleet.kill(role);
                    fleet.pause(down);
                    fleet.spawn(role);
                }
                Fault::Ingest => {
                    // The next run, at a random moment of its start or its producing.
                    let deadline = Instant::now() + pace + Duration::from_secs(1);
                    while ingesting.lock().expect("lock").is_none() && Instant::now() < deadline {
                        fleet.pause(Duration::from_millis(20));
                    }
                    fleet.pause(Duration::from_millis(rng.random_range(0..800)));
                    let killed = ingesting
                        .lock()
                        .expect("lock")
                        .as_mut()
                        .map(|child| child.kill().is_ok());
                    if killed != Some(true) {
                        // Every chunk is in already: a role instead.
                        done = Fault::Role("enrich-0");
                        fleet.kill("enrich-0");
                        fleet.pause(down);
                        fleet.spawn("enrich-0");
                    }
                }
                Fault::Server(server) => {
                    stack.kill(server);
                    fleet.pause(down);
                    stack.run(&["start", server]);
                }
                Fault::RedisDataLoss => {
                    stack.kill("redis");
                    let data = stack.dir.path().join("redis");
                    std::fs::remove_dir_all(&data).expect("redis data removed");
                    std::fs::create_dir_all(&data).expect("redis data directory");
                    fleet.pause(down);
                    stack.run(&["start", "redis"]);
                }
            }
            println!(
                "fault {}/{} at {at:.1} s: {done:?}, down {:.1} s, back at {:.1} s; {}",
                n + 1,
                schedule.len(),
                down.as_secs_f64(),
                began.elapsed().as_secs_f64(),
                progress(&lane, &groups)
            );
        }
        while !ingest.is_finished() {
            fleet.pause(Duration::from_millis(200));
        }
        ingest.join().expect("ingest thread")
    });
    println!(
        "faults done at {:.1} s; ingest runs per chunk: {ingest_runs:?}",
        began.elapsed().as_secs_f64()
    );

    // Converging: enrich takes every raw record, then both sinks every enriched one, and the
    // speed layer holds every post (a Redis that lost its data is refilled by the sink).
    let patience = Duration::from_secs(300 + plan.posts as u64 / 100);
    fleet.wait_for("enrich to commit every raw record", patience, || {
        try_high_watermarks_on(&lane.brokers, &lane.raw, PARTITIONS).is_some_and(|ends| {
            committed_on(&lane.brokers, &lane.group, &lane.raw, PARTITIONS) == ends
        })
    });
    let enriched = read_all_on(&lane.brokers, &lane.enriched, PARTITIONS);
    let ends = common::ends_of(&enriched, PARTITIONS);
    for group in [&batch_group, &speed_group] {
        fleet.wait_for(&format!("{group} to commit every post"), patience, || {
            committed_on(&lane.brokers, group, &lane.enriched, PARTITIONS)
                .iter()
                .zip(&ends)
                .all(|(at, end)| at >= end)
        });
    }
    println!(
        "converged at {:.1} s: {}",
        began.elapsed().as_secs_f64(),
        progress(&lane, &groups)
    );

    // Kafka: every post reached the raw topic, each chunk run once exactly once; each raw
    // record has exactly one outcome, enriched or dead-lettered.
    let raw = read_all_on(&lane.brokers, &lane.raw, PARTITIONS);
    let key =
        |record: &Record| String::from_utf8(record.key.clone().expect("a key")).expect("utf-8 key");
    let mut raw_posts: BTreeMap<String, usize> = BTreeMap::new();
    let mut raw_bad: BTreeMap<String, usize> = BTreeMap::new();
    for record in &raw {
        let key = key(record);
        let counts = if key.starts_with("bad:") {
            &mut raw_bad
        } else {
            &mut raw_posts
        };
        *counts.entry(key).or_default() += 1;
    }
    let want_ids: BTreeSet<String> = (0..truth.n).map(|i| truth.id(i)).collect();
    assert_eq!(
        raw_posts.keys().cloned().collect::<BTreeSet<_>>(),
        want_ids,
        "the raw topic holds every post, and nothing else"
    );
    let want_bad: BTreeMap<String, usize> = (0..BAD).map(|i| (format!("bad:{i}"), 1)).collect();
    assert_eq!(raw_bad, want_bad);
    for (k, runs) in ingest_runs.iter().enumerate() {
        if *runs == 1 {
            let twice: Vec<String> = (k * CHUNK..((k + 1) * CHUNK).min(truth.n))
                .map(|i| truth.id(i))
                .filter(|id| raw_posts[id] != 1)
                .take(5)
                .collect();
            assert!(
                twice.is_empty(),
                "chunk {k} was ingested by one run, yet these posts are in the raw topic more \
                 than once: {twice:?}"
            );
        }
    }
    let duplicates: usize = raw_posts.values().map(|n| n - 1).sum();

    let mut enriched_posts: BTreeMap<String, Vec<EnrichedPost>> = BTreeMap::new();
    for record in &enriched {
        let post: EnrichedPost = serde_json::from_slice(&record.payload).expect("enriched post");
        assert_eq!(key(record), post.post.id, "keyed by the post id");
        enriched_posts
            .entry(post.post.id.clone())
            .or_default()
            .push(post);
    }
    let enriched_counts: BTreeMap<String, usize> = enriched_posts
        .iter()
        .map(|(id, copies)| (id.clone(), copies.len()))
        .collect();
    assert_eq!(
        enriched_counts, raw_posts,
        "each raw post enriched exactly once"
    );
    let mut dead: BTreeMap<String, usize> = BTreeMap::new();
    for record in read_all_on(&lane.brokers, &lane.dlq, PARTITIONS) {
        assert_eq!(
            record.headers["pulse.stage"], "enrich",
            "{:?}",
            record.headers
        );
        *dead.entry(key(&record)).or_default() += 1;
    }
    assert_eq!(dead, want_bad, "each bad record dead-lettered exactly once");

    // What the stores may hold: each post once, with one of the enrichments it was given.
    let mut posts_per_hour: BTreeMap<(String, DateTime<Utc>), u64> = BTreeMap::new();
    let mut want_channel: BTreeMap<String, Envelope> = BTreeMap::new();
    let mut differing = 0u64;
    for copies in enriched_posts.values() {
        let post = &copies[0].post;
        let hour = Granularity::Hour.floor(post.created_at);
        *posts_per_hour
            .entry((post.channel.clone(), hour))
            .or_default() += 1;
        want_channel
            .entry(post.channel.clone())
            .or_default()
            .add(copies);
        if copies.iter().any(|c| c.enrichment != copies[0].enrichment) {
            differing += 1;
        }
    }
    let channels: Vec<String> = (0..CHANNELS).map(|i| truth.channel(i)).collect();

    // Cassandra: every post once, newest first; then exact rollups from a recompute.
    let rfc3339 = |time: DateTime<Utc>| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let from = rfc3339(truth.start);
    let to = rfc3339(truth.end());
    // From the first stored post: the watermark advances over every hour up to `to`.
    pulse(&["batch", "recompute", "--to", &to]);
    let config = BatchConfig {
        nodes: stack.cql_nodes(),
        keyspace: keyspace.clone(),
        ..BatchConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = BatchStore::connect(&config).await.expect("connected");
        for channel in &channels {
            let stored = common::stored_posts(&store, channel, truth.start, truth.end()).await;
            let ids: Vec<&str> = stored.iter().map(|p| p.post.id.as_str()).collect();
            assert_eq!(
                ids,
                truth.ids_newest_first(channel),
                "{channel}: every post once, newest first"
            );
            // Each stored as enriched (one of its enrichments), and the rollups count
            // exactly what is stored.
            let mut want: BTreeMap<DateTime<Utc>, Tally> = BTreeMap::new();
            for post in &stored {
                assert!(
                    enriched_posts[&post.post.id].contains(post),
                    "{}: stored otherwise than enriched",
                    post.post.id
                );
                want.entry(Granularity::Hour.floor(post.post.created_at))
                    .or_default()
                    .add(&post.enrichment, post.post.lang.as_deref());
            }
            let rollups: BTreeMap<DateTime<Utc>, Tally> = store
                .rollups(channel, Granularity::Hour, truth.start, truth.end())
                .await
                .expect("rollups")
                .into_iter()
                .map(|rollup| (rollup.bucket, rollup.tally))
                .collect();
            assert_eq!(rollups, want, "{channel}: hour rollups");
        }
    });

    // Redis: each channel's live window counts every post once, with the same figures.
    let speed = runtime
        .block_on(async {
            SpeedLayer::connect(&SpeedConfig {
                redis_url: stack.redis_url(),
                key_prefix: prefix.clone(),
                ..SpeedConfig::default()
            })
        })
        .expect("speed layer");
    let window_tally = |channel: &str| {
        let to = minute_of(Utc::now()) + 1;
        runtime
            .block_on(speed.window(channel, minute_of(truth.start), to, 10))
            .map(|window| window.totals.tally())
    };
    for channel in &channels {
        let want = &want_channel[channel];
        // The last Redis fault may have come after the sink committed everything: the sink
        // refills a Redis that lost data within seconds of noticing it.
        fleet.wait_for(
            &format!("{channel}'s live window to count every post"),
            patience,
            || window_tally(channel).is_ok_and(|tally| tally.posts >= want.posts()),
        );
        let got = window_tally(channel).expect("window read");
        want.check(&format!("{channel}'s live window"), &got);
    }

    // The API serves the same: live windows, and history from the batch layer. (It may
    // have been restarted by the last fault: it answers once it is listening.)
    fleet.wait_for("the api to answer", patience, || {
        http_get(api_port, "/healthz").is_some()
    });
    let api = |path: &str| -> serde_json::Value {
        let (status, body) = http_get(api_port, path).expect("the api answers");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("json")
    };
    for channel in &channels {
        let live = api(&format!(
            "/api/v1/live?channel={channel}&window=24h&series=none"
        ));
        assert_eq!(
            live["totals"]["count"].as_u64(),
            Some(want_channel[channel].posts()),
            "{channel}: {live}"
        );
        let history = api(&format!(
            "/api/v1/history?channel={channel}&from={from}&to={to}"
        ));
        let posts: Vec<(String, u64)> = history["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .filter(|b| b["posts"].as_u64() > Some(0))
            .map(|b| {
                assert_eq!(b["source"], "batch", "{b}");
                (
                    b["start"].as_str().expect("start").to_string(),
                    b["posts"].as_u64().expect("posts"),
                )
            })
            .collect();
        let want: Vec<(String, u64)> = posts_per_hour
            .iter()
            .filter(|((c, _), _)| c == channel)
            .map(|((_, hour), posts)| (rfc3339(*hour), *posts))
            .collect();
        assert_eq!(posts, want, "{channel}: history");
    }

    let unprompted = fleet.stop();
    lane.dir.disable_cleanup(false);
    println!(
        "chaos ended exact in {:.1} s: {} posts ({duplicates} ingested twice, {differing} \
         enriched differently), {BAD} dead letters, {} faults, {} roles exited by themselves",
        began.elapsed().as_secs_f64(),
        truth.n,
        schedule.len(),
        unprompted.len()
    );
    assert!(
        unprompted.is_empty(),
        "roles exited while nothing killed them: {unprompted:#?}"
    );
}
