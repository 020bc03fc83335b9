//! Acceptance of `pulse sink speed`: enriched posts from Kafka reach the Redis speed layer;
//! while Redis is down the sink retries, stays up and commits nothing past unapplied posts,
//! and a shutdown then ends at the drain deadline; once Redis is back every post is counted
//! exactly once. A Redis that comes back without writes it had acknowledged (killed after
//! its last snapshot) is caught up by the running sink, with no manual step.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use common::{committed, free_port, high_watermarks, wait_for, Lane};
use pulse_core::config::SpeedConfig;
use pulse_core::{EnrichedPost, Enrichment, Keyword, Post};
use pulse_speed::{minute_of, SpeedLayer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// A private redis-server.
struct Redis {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    /// With an append-only file, so data survives its restart.
    fn start(port: u16, dir: tempfile::TempDir) -> Redis {
        Redis::start_with(
            port,
            dir,
            &["--appendonly", "yes", "--appendfsync", "always"],
        )
    }

    /// With snapshots only when told (`SAVE`): a crash loses what came after the last one.
    fn snapshots_only(port: u16, dir: tempfile::TempDir) -> Redis {
        Redis::start_with(port, dir, &["--appendonly", "no"])
    }

    fn start_with(port: u16, dir: tempfile::TempDir, persistence: &[&str]) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(persistence)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        wait_for("redis to answer", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Redis {
            dir,
            child: Some(child),
        }
    }

    fn stop(mut self) -> tempfile::TempDir {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal redis");
            child.wait().expect("redis exits");
        }
        let dir = tempfile::tempdir().expect("placeholder");
        std::mem::replace(&mut self.dir, dir)
    }

    /// SIGKILL, as a crash: nothing is saved on the way out.
    fn kill(mut self) -> tempfile::TempDir {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("redis killed");
            child.wait().expect("redis exits");
        }
        let dir = tempfile::tempdir().expect("placeholder");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn enriched(i: usize) -> EnrichedPost {
    let post = Post {
        id: format!("sink:{i}"),
        source: "synthetic".into(),
        channel: "test/sink".into(),
        author: None,
        text: "text".into(),
        created_at: Utc::now(),
        url: None,
        lang: None,
        parent_id: None,
        meta: Default::default(),
        extra: Default::default(),
    };
    let enrichment = Enrichment {
        keywords: vec![Keyword {
            term: format!("term{}", i % 7),
            score: 0.5,
        }],
        ..Enrichment::default()
    };
    EnrichedPost::new(post, enrichment, "test@1".into(), Utc::now())
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", common::brokers())
        .create()
        .expect("producer")
}

fn produce(producer: &FutureProducer, topic: &str, range: std::ops::Range<usize>) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for i in range {
            let payload = serde_json::to_vec(&enriched(i)).expect("json");
            let key = format!("sink:{i}");
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("produced");
        }
    });
}

/// The 24-hour window of the test channel: posts counted, and keyword hits.
fn counted(url: &str, prefix: &str) -> (u64, u64) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let config = SpeedConfig {
        redis_url: url.to_string(),
        key_prefix: prefix.to_string(),
        ..SpeedConfig::default()
    };
    let end = minute_of(Utc::now()) + 1;
    runtime
        .block_on(async {
            SpeedLayer::connect(&config)?
                .window("test/sink", end - 1_440, end, 10)
                .await
        })
        .map(|w| (w.totals.count, w.keywords.iter().map(|k| k.count).sum()))
        .unwrap_or((0, 0))
}

#[test]
fn the_speed_sink_survives_redis_going_down_and_counts_every_post_once() {
    let lane = Lane::new("speedsink", 2);
    let port = free_port();
    let redis = Redis::start(port, tempfile::tempdir().expect("redis dir"));
    let prefix = format!("pulse-test:sink:{}", lane.group);
    let group = format!("{}.speed", lane.group);
    let url = format!("redis://127.0.0.1:{port}");

    let spawn_sink = |name: &str| {
        lane.spawn(
            name,
            &["sink", "speed"],
            &[
                ("PULSE_SPEED__REDIS_URL", &url),
                ("PULSE_SPEED__KEY_PREFIX", &prefix),
                ("PULSE_SPEED__GROUP", &group),
                ("PULSE_PIPELINE__DRAIN_TIMEOUT_MS", "2000"),
            ],
        )
    };
    let mut sink = spawn_sink("sink-1");
    let producer = producer();
    let all_committed =
        || committed(&group, &lane.enriched, 2) == high_watermarks(&lane.enriched, 2);

    produce(&producer, &lane.enriched, 0..1_000);
    wait_for("the first 1,000 posts committed", all_committed);

    let dir = redis.stop();
    produce(&producer, &lane.enriched, 1_000..2_000);
    wait_for("the sink to retry against the stopped redis", || {
        !sink.log_events("batch failed; retrying").is_empty()
    });
    assert!(
        !all_committed(),
        "nothing past unapplied posts is committed while redis is down"
    );
    assert!(
        matches!(sink.child.try_wait(), Ok(None)),
        "the sink stays up"
    );

    // SIGTERM while redis is down: the drain deadline ends the wait, nothing unapplied is
    // committed, and the exit is clean.
    let started = std::time::Instant::now();
    assert!(sink.terminate().success(), "log: {}", sink.logs());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(!all_committed());
    assert_eq!(
        sink.log_events("drain deadline passed; unfinished records stay uncommitted")
            .len(),
        1
    );

    let redis = Redis::start(port, dir);
    let mut sink = spawn_sink("sink-2");
    wait_for("every post committed after redis came back", all_committed);
    assert!(sink.terminate().success());

    // Every post counted once, with its keyword.
    assert_eq!(counted(&url, &prefix), (2_000, 2_000));
    drop(redis);
}

#[test]
fn a_redis_that_lost_unsaved_writes_is_caught_up_by_the_running_sink() {
    let lane = Lane::new("speedloss", 2);
    let port = free_port();
    let redis = Redis::snapshots_only(port, tempfile::tempdir().expect("redis dir"));
    let prefix = format!("pulse-test:loss:{}", lane.group);
    let group = format!("{}.speed", lane.group);
    let url = format!("redis://127.0.0.1:{port}");
    let mut sink = lane.spawn(
        "sink",
        &["sink", "speed"],
        &[
            ("PULSE_SPEED__REDIS_URL", &url),
            ("PULSE_SPEED__KEY_PREFIX", &prefix),
            ("PULSE_SPEED__GROUP", &group),
        ],
    );
    let producer = producer();
    let all_committed =
        || committed(&group, &lane.enriched, 2) == high_watermarks(&lane.enriched, 2);

    produce(&producer, &lane.enriched, 0..3_000);
    wait_for("3,000 posts committed", all_committed);
    let mut connection = redis::Client::open(url.as_str())
        .and_then(|client| client.get_connection())
        .expect("redis connection");
    redis::cmd("SAVE")
        .query::<()>(&mut connection)
        .expect("snapshot saved");
    // Applied and committed after the snapshot: what a crash now loses.
    produce(&producer, &lane.enriched, 3_000..6_000);
    wait_for("6,000 posts committed", all_committed);
    assert_eq!(counted(&url, &prefix), (6_000, 6_000));

    let redis = Redis::snapshots_only(port, redis.kill());
    // No new post arrives: the idle sink notices the new Redis process by itself.
    wait_for("the lost posts re-applied", || {
        counted(&url, &prefix) == (6_000, 6_000)
    });
    let repairs = sink.log_events(
        "speed layer lacks records its group passed (redis lost writes); re-applying them",
    );
    assert_eq!(repairs.len(), 1, "{}", sink.logs());
    assert_eq!(repairs[0]["fields"]["offsets"], 3_000, "{}", sink.logs());

    // The sink goes on counting new posts, each once.
    produce(&producer, &lane.enriched, 6_000..7_000);
    wait_for("7,000 posts committed", all_committed);
    wait_for("7,000 posts counted", || {
        counted(&url, &prefix) == (7_000, 7_000)
    });
    assert!(sink.terminate().success(), "{}", sink.logs());
    assert_eq!(counted(&url, &prefix), (7_000, 7_000));
    drop(redis);
}

#[test]
fn a_redis_replaced_during_a_catch_up_is_caught_up_whole() {
    let lane = Lane::new("speedtwice", 2);
    let port = free_port();
    let redis = Redis::snapshots_only(port, tempfile::tempdir().expect("redis dir"));
    let prefix = format!("pulse-test:twice:{}", lane.group);
    let group = format!("{}.speed", lane.group);
    let url = format!("redis://127.0.0.1:{port}");
    // Small batches: the catch-up of 20,000 posts takes long enough to be interrupted.
    let mut sink = lane.spawn(
        "sink",
        &["sink", "speed"],
        &[
            ("PULSE_SPEED__REDIS_URL", &url),
            ("PULSE_SPEED__KEY_PREFIX", &prefix),
            ("PULSE_SPEED__GROUP", &group),
            ("PULSE_PIPELINE__BATCH_SIZE", "20"),
        ],
    );
    let producer = producer();
    let all_committed =
        || committed(&group, &lane.enriched, 2) == high_watermarks(&lane.enriched, 2);
    produce(&producer, &lane.enriched, 0..20_000);
    wait_for("20,000 posts committed", all_committed);
    assert_eq!(counted(&url, &prefix), (20_000, 20_000));

    // Redis loses everything; while the sink replays it back, the new process is lost too,
    // and the one after it takes the rest of that replay.
    let redis = Redis::snapshots_only(port, redis.kill());
    let replaying =
        "speed layer lacks records its group passed (redis lost writes); re-applying them";
    wait_for("the catch-up to be under way", || {
        counted(&url, &prefix).0 >= 4_000
    });
    let redis = Redis::snapshots_only(port, redis.kill());
    assert!(
        sink.log_events("speed layer caught up with its group")
            .is_empty(),
        "the catch-up ended before redis was replaced again; the test needs a longer one: {}",
        sink.logs()
    );

    wait_for("every post counted again", || {
        counted(&url, &prefix) == (20_000, 20_000)
    });
    let catch_ups = sink.log_events(replaying);
    let last = catch_ups.last().expect("a catch-up");
    assert_eq!(last["fields"]["trust_positions"], false, "{}", sink.logs());
    assert!(sink.terminate().success(), "{}", sink.logs());
    assert_eq!(counted(&url, &prefix), (20_000, 20_000));
    drop(redis);
}
