//! Acceptance of `pulse sink speed`: enriched posts from Kafka reach the Redis speed layer;
//! while Redis is down the sink retries, stays up and commits nothing past unapplied posts,
//! and a shutdown then ends at the drain deadline; once Redis is back every post is counted
//! exactly once.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use common::{committed, high_watermarks, wait_for, Lane};
use pulse_core::config::SpeedConfig;
use pulse_core::{EnrichedPost, Enrichment, Keyword, Post};
use pulse_speed::{minute_of, SpeedLayer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// A private redis-server with an append-only file, so data survives its restart.
struct Redis {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    fn start(port: u16, dir: tempfile::TempDir) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
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

#[test]
fn the_speed_sink_survives_redis_going_down_and_counts_every_post_once() {
    let lane = Lane::new("speedsink", 2);
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let redis = Redis::start(port, tempfile::tempdir().expect("redis dir"));
    let prefix = format!("pulse-test:sink:{}", lane.group);
    let group = format!("{}.speed", lane.group);
    let url = format!("redis://127.0.0.1:{port}");

    let spawn_sink = |name: &str| {
        let log = lane.dir.path().join(format!("{name}.log"));
        common::Role {
            child: lane
                .pulse(&["sink", "speed"])
                .env("PULSE_SPEED__REDIS_URL", &url)
                .env("PULSE_SPEED__KEY_PREFIX", &prefix)
                .env("PULSE_SPEED__GROUP", &group)
                .env("PULSE_PIPELINE__DRAIN_TIMEOUT_MS", "2000")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log"))
                .spawn()
                .expect("pulse sink speed starts"),
            log,
        }
    };
    let mut sink = spawn_sink("sink-1");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", common::brokers())
        .create()
        .expect("producer");
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

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let config = SpeedConfig {
        redis_url: url,
        key_prefix: prefix,
        ..SpeedConfig::default()
    };
    let end = minute_of(Utc::now()) + 1;
    let window = runtime
        .block_on(async {
            SpeedLayer::connect(&config)?
                .window("test/sink", end - 60, end, 10)
                .await
        })
        .expect("window");
    assert_eq!(window.totals.count, 2_000, "every post counted once");
    assert_eq!(window.keywords.iter().map(|k| k.count).sum::<u64>(), 2_000);
    drop(redis);
}
