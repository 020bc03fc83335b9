//! Acceptance: the pipeline survives its servers failing mid-run. On a private stack, the
//! roles run as separate processes (`pulse enrich`, `pulse sink speed`, `pulse sink batch`)
//! over 20,000 posts while one server fails: the Kafka broker SIGKILLed and restarted,
//! Cassandra SIGKILLed and restarted, Redis restarted. After each run every post is in both
//! stores exactly once, the speed layer's window and the recomputed rollups equal the ground
//! truth computed from the enriched topic, and no role died.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use chrono::{DateTime, Duration, Utc};
use common::{read_all_on, wait_for, Lane, PrivateStack, Role};
use pulse_batch::BatchStore;
use pulse_core::config::{BatchConfig, SpeedConfig};
use pulse_core::{EnrichedPost, Granularity, Series, Tally};
use pulse_speed::{minute_of, SpeedLayer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const POSTS: usize = 20_000;
const CHANNELS: [&str; 2] = ["test/faults-a", "test/faults-b"];
const PARTITIONS: i32 = 4;

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillKafka,
    KillCassandra,
    RestartRedis,
}

/// One run's names and roles.
struct Run<'a> {
    stack: &'a PrivateStack,
    lane: Lane,
    keyspace: String,
    prefix: String,
}

impl Run<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.lane.pulse(args);
        command
            .env(
                "PULSE_ENRICH__MODELS",
                format!("[{:?}]", common::shipped_model()),
            )
            .env("PULSE_BATCH__NODES", self.stack.cql_nodes())
            .env("PULSE_BATCH__KEYSPACE", &self.keyspace)
            .env("PULSE_BATCH__GROUP", format!("{}.batch", self.lane.group))
            .env("PULSE_BATCH__REQUEST_TIMEOUT_MS", "3000")
            .env("PULSE_BATCH__CONNECT_TIMEOUT_MS", "2000")
            .env("PULSE_SPEED__REDIS_URL", self.stack.redis_url())
            .env("PULSE_SPEED__KEY_PREFIX", &self.prefix)
            .env("PULSE_SPEED__GROUP", format!("{}.speed", self.lane.group))
            .env("PULSE_KAFKA__SESSION_TIMEOUT_MS", "6000")
            .env("PULSE_PIPELINE__BATCH_SIZE", "100");
        command
    }

    fn spawn(&self, name: &str, args: &[&str]) -> Role {
        let log = self.lane.dir.path().join(format!("{name}.log"));
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("role starts");
        Role { child, log }
    }

    fn run(&self, args: &[&str]) -> String {
        let output = self.command(args).output().expect("pulse runs");
        assert!(
            output.status.success(),
            "pulse {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Offsets committed by `group` on the enriched topic.
    fn committed(&self, group: &str, topic: &str) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.stack.brokers())
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            list.add_partition(topic, p);
        }
        match consumer.committed_offsets(list, std::time::Duration::from_secs(5)) {
            Ok(offsets) => (0..PARTITIONS)
                .map(
                    |p| match offsets.find_partition(topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => -1,
                    },
                )
                .collect(),
            // The broker may be down: nothing known.
            Err(_) => vec![-1; PARTITIONS as usize],
        }
    }
}

/// Waits for `condition`; on timeout fails with the end of every role's log.
fn wait_with_logs(
    what: &str,
    stack: &PrivateStack,
    roles: &[Role],
    mut condition: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while !condition() {
        if std::time::Instant::now() > deadline {
            let logs: Vec<String> = roles
                .iter()
                .map(|role| {
                    let log = role.logs();
                    let lines: Vec<&str> = log.lines().collect();
                    lines[lines.len().saturating_sub(40)..].join("\n")
                })
                .collect();
            let servers: Vec<String> = ["kafka", "cql", "redis"]
                .iter()
                .map(|service| format!("{service}:\n{}", stack.log_tail(service, 30)))
                .collect();
            panic!(
                "timed out waiting for {what}; the roles' logs end:\n{}\n=== servers\n{}\n{}",
                logs.join("\n---\n"),
                servers.join("\n---\n"),
                stack.run(&["status"])
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn write_posts(path: &std::path::Path, start: DateTime<Utc>) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("posts file"));
    let moods = [
        "I love how fast this release is",
        "This outage is terrible and I am angry",
        "The meeting moved to Tuesday in Berlin",
        "What a surprise, Mozilla shipped it early",
    ];
    for i in 0..POSTS {
        let post = serde_json::json!({
            "id": format!("fault:{i:05}"),
            "source": "file",
            "channel": CHANNELS[i % CHANNELS.len()],
            "text": format!("{} ({i})", moods[i % moods.len()]),
            // Spread over 100 minutes ending a minute ago: inside the speed layer's window.
            "created_at": (start + Duration::milliseconds(i as i64 * 300)).to_rfc3339(),
        });
        writeln!(file, "{post}").expect("write");
    }
    file.flush().expect("flush");
}

fn run_with(stack: &PrivateStack, fault: Fault) {
    let tag = format!("{fault:?}").to_lowercase();
    let lane = Lane::on(&stack.brokers(), &format!("fault-{tag}"), PARTITIONS);
    let run = Run {
        stack,
        keyspace: pulse_testkit::keyspace(&format!("fault_{tag}")),
        prefix: pulse_testkit::key_prefix(&format!("fault:{tag}")),
        lane,
    };
    run.run(&["schema", "apply"]);
    let start = Granularity::Hour.floor(Utc::now() - Duration::minutes(101));
    let path = run.lane.dir.path().join("posts.jsonl");
    write_posts(&path, start);
    run.run(&["ingest", "file", path.to_str().expect("path")]);

    let mut roles = [
        run.spawn("enrich", &["enrich"]),
        run.spawn("speed", &["sink", "speed"]),
        run.spawn("batch", &["sink", "batch"]),
    ];
    let speed_group = format!("{}.speed", run.lane.group);
    let batch_group = format!("{}.batch", run.lane.group);
    wait_for("the sinks to be under way", || {
        let progress = |group: &str| {
            run.committed(group, &run.lane.enriched)
                .iter()
                .filter(|&&o| o > 0)
                .sum::<i64>()
        };
        progress(&speed_group) >= 2_000 && progress(&batch_group) >= 2_000
    });
    match fault {
        Fault::KillKafka => {
            stack.kill("kafka");
            std::thread::sleep(std::time::Duration::from_secs(3));
            print!("{}", stack.run(&["start", "kafka"]));
        }
        Fault::KillCassandra => {
            stack.kill("cql");
            print!("{}", stack.run(&["start", "cql"]));
        }
        Fault::RestartRedis => {
            stack.run(&["stop", "redis"]);
            std::thread::sleep(std::time::Duration::from_secs(3));
            print!("{}", stack.run(&["start", "redis"]));
        }
    }
    println!("{fault:?}: done mid-run");

    // Done when the enrich group committed the raw topic and both sinks the enriched one.
    let raw_ends = common::high_watermarks_on(&stack.brokers(), &run.lane.raw, PARTITIONS);
    wait_with_logs("enrich to commit every raw record", stack, &roles, || {
        run.committed(&run.lane.group, &run.lane.raw) == raw_ends
    });
    let enriched = read_all_on(&stack.brokers(), &run.lane.enriched, PARTITIONS);
    let mut ends = vec![0i64; PARTITIONS as usize];
    for record in &enriched {
        ends[record.partition as usize] = ends[record.partition as usize].max(record.offset + 1);
    }
    let caught_up = |group: &str| {
        let committed = run.committed(group, &run.lane.enriched);
        committed.iter().zip(&ends).all(|(at, end)| at >= end)
    };
    wait_with_logs(
        "both sinks to commit every enriched record",
        stack,
        &roles,
        || caught_up(&speed_group) && caught_up(&batch_group),
    );
    for role in &mut roles {
        assert!(
            matches!(role.child.try_wait(), Ok(None)),
            "{fault:?}: a role died: {}",
            role.logs()
        );
        assert!(role.terminate().success(), "{fault:?}: {}", role.logs());
    }

    // Ground truth: the enriched topic as committed, each post once.
    let posts: Vec<EnrichedPost> = enriched
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).expect("enriched post"))
        .collect();
    let ids: BTreeSet<&str> = posts.iter().map(|p| p.post.id.as_str()).collect();
    assert_eq!(posts.len(), POSTS, "{fault:?}: enriched each post once");
    assert_eq!(ids.len(), POSTS);
    let mut hours: BTreeMap<(String, DateTime<Utc>), Tally> = BTreeMap::new();
    for post in &posts {
        hours
            .entry((
                post.post.channel.clone(),
                Granularity::Hour.floor(post.post.created_at),
            ))
            .or_default()
            .add(&post.enrichment, post.post.lang.as_deref());
    }

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let batch = runtime
        .block_on(BatchStore::connect(&BatchConfig {
            nodes: stack.cql_nodes(),
            keyspace: run.keyspace.clone(),
            ..BatchConfig::default()
        }))
        .expect("batch store");
    runtime.block_on(async {
        let speed = SpeedLayer::connect(&SpeedConfig {
            redis_url: stack.redis_url(),
            key_prefix: run.prefix.clone(),
            ..SpeedConfig::default()
        })
        .expect("speed layer");
        let end = start + Duration::hours(3);
        for channel in CHANNELS {
            let mut want = Tally::default();
            for ((c, _), tally) in &hours {
                if c == channel {
                    want.merge(tally);
                }
            }
            let window = speed
                .window_with(channel, minute_of(start), minute_of(end), 5, Series::None)
                .await
                .expect("window");
            let totals = &window.totals;
            assert_eq!(totals.count, want.posts, "{fault:?} {channel}: speed count");
            assert_eq!(totals.scored, want.scored, "{fault:?} {channel}");
            assert_eq!(
                totals.score_micros, want.score_micros,
                "{fault:?} {channel}"
            );
            assert_eq!(
                totals.emotion_micros, want.emotion_micros,
                "{fault:?} {channel}"
            );
            for (label, n) in [
                ("negative", want.negative),
                ("neutral", want.neutral),
                ("positive", want.positive),
            ] {
                assert_eq!(
                    totals.labels.get(label).copied().unwrap_or(0),
                    n,
                    "{fault:?} {channel} {label}"
                );
            }

            let stored = common::stored_ids(&batch, channel, start, end).await;
            let distinct: BTreeSet<&String> = stored.iter().collect();
            assert_eq!(
                distinct.len(),
                stored.len(),
                "{fault:?}: a post stored twice"
            );
            assert_eq!(
                stored.len() as u64,
                want.posts,
                "{fault:?} {channel}: stored posts"
            );
        }
    });

    run.run(&[
        "batch",
        "recompute",
        "--from",
        &start.to_rfc3339(),
        "--to",
        &(start + Duration::hours(3)).to_rfc3339(),
    ]);
    runtime.block_on(async {
        for channel in CHANNELS {
            let rollups = batch
                .rollups(
                    channel,
                    Granularity::Hour,
                    start,
                    start + Duration::hours(3),
                )
                .await
                .expect("rollups");
            let got: BTreeMap<DateTime<Utc>, Tally> =
                rollups.into_iter().map(|r| (r.bucket, r.tally)).collect();
            let want: BTreeMap<DateTime<Utc>, Tally> = hours
                .iter()
                .filter(|((c, _), _)| c == channel)
                .map(|((_, hour), tally)| (*hour, tally.clone()))
                .collect();
            assert_eq!(got, want, "{fault:?} {channel}: hourly rollups");
        }
    });
    println!("{fault:?}: {POSTS} posts in both stores once; window and rollups exact");
}

#[test]
fn every_post_lands_once_when_a_server_fails_mid_run() {
    let stack = PrivateStack::start(&[]);
    for fault in [Fault::KillKafka, Fault::KillCassandra, Fault::RestartRedis] {
        run_with(&stack, fault);
    }
}
