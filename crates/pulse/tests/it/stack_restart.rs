//! Acceptance: stopping and starting the local stack (`scripts/stack`) keeps Kafka's topics,
//! messages and committed offsets, Cassandra's tables and rows and Redis's keys; start is
//! idempotent and status names each server. Runs a second stack on its own ports and data
//! directory so it does not disturb the stack the other tests use.

use crate::common;

use std::time::{Duration, Instant};

use common::PrivateStack;
use pulse_core::config::BatchConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use redis::Commands;

fn consumer(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer")
}

/// A post stored through the batch layer, to be read back after the restart.
fn stored_post() -> pulse_core::EnrichedPost {
    let created_at = "2026-11-01T12:00:00Z".parse().unwrap_or_default();
    pulse_testkit::post("restart:1", "test/restart", created_at)
        .source("file")
        .text("kept across a restart")
        .enriched()
}

#[test]
fn restarting_the_stack_keeps_topics_messages_and_committed_offsets() {
    let stack = PrivateStack::start(&[]);
    let status = stack.run(&["status"]);
    for (service, port, version) in [
        ("kafka", stack.kafka_port, "Apache Kafka 4."),
        ("cql", stack.cql_port, "Apache Cassandra 5.0."),
        ("redis", stack.redis_port, "Redis "),
    ] {
        let line = status
            .lines()
            .find(|line| line.starts_with(service))
            .unwrap_or_else(|| panic!("no {service} in status:\n{status}"));
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
        assert!(line.contains(version), "{line}");
        assert!(line.contains("MiB") && line.ends_with("running"), "{line}");
    }
    let again = stack.run(&["start"]);
    assert_eq!(
        again.matches("already running").count(),
        3,
        "start is idempotent: {again}"
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

    let batch = BatchConfig {
        nodes: stack.cql_nodes(),
        keyspace: "restart".into(),
        ..BatchConfig::default()
    };
    let post = stored_post();
    let json = serde_json::to_string(&post).expect("json");
    runtime.block_on(async {
        pulse_batch::schema::apply(&batch)
            .await
            .expect("schema applied");
        let store = pulse_batch::BatchStore::connect(&batch)
            .await
            .expect("store");
        store
            .write(&[(&post, json.as_str())])
            .await
            .expect("written");
    });
    let redis = redis::Client::open(stack.redis_url()).expect("redis client");
    let mut connection = redis.get_connection().expect("redis connection");
    let _: () = connection.set("restart:key", "kept").expect("set");

    let stopped = stack.run(&["stop"]);
    for service in ["kafka", "cql", "redis"] {
        assert!(
            stopped.contains(&format!("{service}: stopped")),
            "{stopped}"
        );
    }
    assert_eq!(stack.run(&["status"]).matches("not running").count(), 3);
    stack.run(&["start"]);

    let read_back = runtime.block_on(async {
        let store = pulse_batch::BatchStore::connect(&batch)
            .await
            .expect("store");
        store.post("restart:1").await.expect("read")
    });
    assert_eq!(
        read_back.map(|p| p.post),
        Some(post.post),
        "the row survived"
    );
    let mut connection = redis.get_connection().expect("redis connection");
    let kept: String = connection.get("restart:key").expect("get");
    assert_eq!(kept, "kept");

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
