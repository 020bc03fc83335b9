//! Acceptance of `pulse sink speed`: enriched posts from Kafka reach the Redis speed layer;
//! while Redis is down the sink retries, stays up and commits nothing past unapplied posts,
//! and a shutdown then ends at the drain deadline; once Redis is back every post is counted
//! exactly once. A Redis that comes back without writes it had acknowledged (killed after
//! its last snapshot) is caught up by the running sink, with no manual step.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use common::{committed, free_port, high_watermarks, wait_for, Lane, Role};
use pulse_core::config::SpeedConfig;
use pulse_core::EnrichedPost;
use pulse_speed::{minute_of, SpeedLayer};
use pulse_testkit::post;
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
    post(format!("sink:{i}"), "test/sink", Utc::now())
        .keyword(format!("term{}", i % 7))
        .enriched()
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

/// A test's topics, the port of its private Redis, its key prefix and the sink's group.
struct SpeedLane {
    lane: Lane,
    port: u16,
    prefix: String,
    group: String,
    url: String,
}

impl SpeedLane {
    fn new(test: &str) -> SpeedLane {
        let lane = Lane::new(test, 2);
        let port = free_port();
        SpeedLane {
            prefix: format!("pulse-test:{test}:{}", lane.group),
            group: format!("{}.speed", lane.group),
            url: format!("redis://127.0.0.1:{port}"),
            port,
            lane,
        }
    }

    /// Starts `pulse sink speed` on this lane, with `extra` settings.
    fn spawn_sink(&self, name: &str, extra: &[(&str, &str)]) -> Role {
        let mut env = vec![
            ("PULSE_SPEED__REDIS_URL", self.url.as_str()),
            ("PULSE_SPEED__KEY_PREFIX", self.prefix.as_str()),
            ("PULSE_SPEED__GROUP", self.group.as_str()),
        ];
        env.extend_from_slice(extra);
        self.lane.spawn(name, &["sink", "speed"], &env)
    }

    /// Whether the sink committed every record of the enriched topic.
    fn all_committed(&self) -> bool {
        committed(&self.group, &self.lane.enriched, 2) == high_watermarks(&self.lane.enriched, 2)
    }

    /// Posts and keyword hits in the test channel's 24-hour window.
    fn counted(&self) -> (u64, u64) {
        counted(&self.url, &self.prefix)
    }
}

#[test]
fn the_speed_sink_survives_redis_going_down_and_counts_every_post_once() {
    let speed = SpeedLane::new("speedsink");
    let redis = Redis::start(speed.port, tempfile::tempdir().expect("redis dir"));
    let spawn_sink =
        |name: &str| speed.spawn_sink(name, &[("PULSE_PIPELINE__DRAIN_TIMEOUT_MS", "2000")]);
    let mut sink = spawn_sink("sink-1");
    let producer = producer();
    let all_committed = || speed.all_committed();

    produce(&producer, &speed.lane.enriched, 0..1_000);
    wait_for("the first 1,000 posts committed", all_committed);

    let dir = redis.stop();
    produce(&producer, &speed.lane.enriched, 1_000..2_000);
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

    let redis = Redis::start(speed.port, dir);
    let mut sink = spawn_sink("sink-2");
    wait_for("every post committed after redis came back", all_committed);
    assert!(sink.terminate().success());

    // Every post counted once, with its keyword.
    assert_eq!(speed.counted(), (2_000, 2_000));
    drop(redis);
}

#[test]
fn a_redis_that_lost_unsaved_writes_is_caught_up_by_the_running_sink() {
    let speed = SpeedLane::new("speedloss");
    let redis = Redis::snapshots_only(speed.port, tempfile::tempdir().expect("redis dir"));
    let mut sink = speed.spawn_sink("sink", &[]);
    let producer = producer();
    let all_committed = || speed.all_committed();

    produce(&producer, &speed.lane.enriched, 0..3_000);
    wait_for("3,000 posts committed", all_committed);
    let mut connection = redis::Client::open(speed.url.as_str())
        .and_then(|client| client.get_connection())
        .expect("redis connection");
    redis::cmd("SAVE")
        .query::<()>(&mut connection)
        .expect("snapshot saved");
    // Applied and committed after the snapshot: what a crash now loses.
    produce(&producer, &speed.lane.enriched, 3_000..6_000);
    wait_for("6,000 posts committed", all_committed);
    assert_eq!(speed.counted(), (6_000, 6_000));

    let redis = Redis::snapshots_only(speed.port, redis.kill());
    // No new post arrives: the idle sink notices the new Redis process by itself.
    wait_for("the lost posts re-applied", || {
        speed.counted() == (6_000, 6_000)
    });
    let repairs = sink.log_events(
        "speed layer lacks records its group passed (redis lost writes); re-applying them",
    );
    assert_eq!(repairs.len(), 1, "{}", sink.logs());
    assert_eq!(repairs[0]["fields"]["offsets"], 3_000, "{}", sink.logs());

    // The sink goes on counting new posts, each once.
    produce(&producer, &speed.lane.enriched, 6_000..7_000);
    wait_for("7,000 posts committed", all_committed);
    wait_for("7,000 posts counted", || speed.counted() == (7_000, 7_000));
    assert!(sink.terminate().success(), "{}", sink.logs());
    assert_eq!(speed.counted(), (7_000, 7_000));
    drop(redis);
}

#[test]
fn a_redis_replaced_during_a_catch_up_is_caught_up_whole() {
    let speed = SpeedLane::new("speedtwice");
    let redis = Redis::snapshots_only(speed.port, tempfile::tempdir().expect("redis dir"));
    // Small batches: the catch-up of 20,000 posts takes long enough to be interrupted.
    let mut sink = speed.spawn_sink("sink", &[("PULSE_PIPELINE__BATCH_SIZE", "20")]);
    let producer = producer();
    let all_committed = || speed.all_committed();
    produce(&producer, &speed.lane.enriched, 0..20_000);
    wait_for("20,000 posts committed", all_committed);
    assert_eq!(speed.counted(), (20_000, 20_000));

    // Redis loses everything; while the sink replays it back, the new process is lost too,
    // and the one after it takes the rest of that replay.
    let redis = Redis::snapshots_only(speed.port, redis.kill());
    let replaying =
        "speed layer lacks records its group passed (redis lost writes); re-applying them";
    wait_for("the catch-up to be under way", || {
        speed.counted().0 >= 4_000
    });
    let redis = Redis::snapshots_only(speed.port, redis.kill());
    assert!(
        sink.log_events("speed layer caught up with its group")
            .is_empty(),
        "the catch-up ended before redis was replaced again; the test needs a longer one: {}",
        sink.logs()
    );

    wait_for("every post counted again", || {
        speed.counted() == (20_000, 20_000)
    });
    let catch_ups = sink.log_events(replaying);
    let last = catch_ups.last().expect("a catch-up");
    assert_eq!(last["fields"]["trust_positions"], false, "{}", sink.logs());
    assert!(sink.terminate().success(), "{}", sink.logs());
    assert_eq!(speed.counted(), (20_000, 20_000));
    drop(redis);
}
