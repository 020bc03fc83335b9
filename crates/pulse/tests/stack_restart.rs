//! Acceptance: stopping and starting the local stack (`scripts/stack`) keeps topics,
//! messages and committed offsets. Runs a second stack on its own ports and data directory
//! so it does not disturb the stack the other tests use.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Stack {
    script: PathBuf,
    dir: tempfile::TempDir,
    kafka_port: u16,
    cql_port: u16,
}

impl Stack {
    fn run(&self, action: &str) -> String {
        let output = Command::new(&self.script)
            .arg(action)
            .env("PULSE_STACK_DIR", self.dir.path())
            .env("PULSE_STACK_KAFKA_PORT", self.kafka_port.to_string())
            .env("PULSE_STACK_CQL_PORT", self.cql_port.to_string())
            .output()
            .expect("scripts/stack runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "scripts/stack {action} failed:\n{text}"
        );
        text
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .env("PULSE_STACK_DIR", self.dir.path())
            .env("PULSE_STACK_KAFKA_PORT", self.kafka_port.to_string())
            .env("PULSE_STACK_CQL_PORT", self.cql_port.to_string())
            .output();
    }
}

fn consumer(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer")
}

#[test]
fn restarting_the_stack_keeps_topics_messages_and_committed_offsets() {
    let stack = Stack {
        script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/stack"),
        dir: tempfile::tempdir().expect("stack directory"),
        kafka_port: free_port(),
        cql_port: free_port(),
    };
    let started = stack.run("start");
    assert!(
        started.contains(&format!("127.0.0.1:{}", stack.kafka_port)),
        "{started}"
    );
    assert!(
        stack.run("start").contains("already running"),
        "start is idempotent"
    );

    let brokers = stack.brokers();
    let topic = "restart.posts";
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let config = pulse_core::config::KafkaConfig {
        brokers: brokers.clone(),
        partitions: 1,
        ..Default::default()
    };
    runtime
        .block_on(pulse_kafka::admin::create_topics(&config, &[topic]))
        .expect("topic created");

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for i in 0..100 {
        let payload = format!("message {i}");
        producer
            .send(BaseRecord::to(topic).key(&payload).payload(&payload))
            .map_err(|(e, _)| e)
            .expect("enqueued");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");

    let group = "restart.group";
    let first = consumer(&brokers, group);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    first.assign(&assignment).expect("assign");
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 60 {
        assert!(Instant::now() < deadline, "consumed only {seen} messages");
        if let Some(message) = first.poll(Duration::from_millis(500)) {
            assert_eq!(message.expect("message").offset(), seen);
            seen += 1;
        }
    }
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(topic, 0, Offset::Offset(60))
        .expect("offset");
    first.commit(&commit, CommitMode::Sync).expect("committed");
    drop(first);
    drop(producer);

    let stopped = stack.run("stop");
    assert!(stopped.contains("kafka: stopped"), "{stopped}");
    // The CQL dev server saved its state on SIGTERM (queries against it come with the
    // batch layer's tests).
    let cql_state = stack.dir.path().join("cql/state.ron");
    let saved = std::fs::metadata(&cql_state).map(|m| m.len()).unwrap_or(0);
    assert!(saved > 0, "{} was not written on stop", cql_state.display());
    assert!(stack.run("status").contains("not running"));
    stack.run("start");

    let after = consumer(&brokers, group);
    let (low, high) = after
        .fetch_watermarks(topic, 0, Duration::from_secs(30))
        .expect("the topic survived the restart");
    assert_eq!((low, high), (0, 100), "all messages kept");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let offsets = after
        .committed_offsets(list, Duration::from_secs(30))
        .expect("committed offsets");
    assert_eq!(
        offsets.find_partition(topic, 0).map(|e| e.offset()),
        Some(Offset::Offset(60))
    );

    // Resuming the group continues exactly at the committed offset, with the original data.
    after.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    let message = loop {
        assert!(Instant::now() < deadline, "no message after the restart");
        if let Some(message) = after.poll(Duration::from_millis(500)) {
            break message.expect("message");
        }
    };
    assert_eq!(message.offset(), 60);
    assert_eq!(message.payload(), Some(&b"message 60"[..]));
}
