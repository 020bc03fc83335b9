//! Why a member forgets the partitions a rebalance takes from it, against Apache Kafka: the
//! broker accepts an offset commit from any member of the current generation for any
//! partition, owned or not, so a member that finished old records late and committed them
//! would move another member's partition backwards (its records read twice). Pulse's
//! consumer commits what is handled of a revoked partition at the revocation and nothing of
//! it afterwards.

use std::time::{Duration, Instant};

use pulse_core::config::KafkaConfig;
use pulse_kafka::consumer::{commit_handled, subscribe, ConsumerLag};
use pulse_testkit::servers::brokers;
use pulse_testkit::{kafka_config, unique};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn committed(group: &str, topic: &str, partition: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let offsets = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    match offsets.find_partition(topic, partition).map(|e| e.offset()) {
        Some(Offset::Offset(offset)) => offset,
        _ => -1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_never_commits_a_partition_a_rebalance_took_away() {
    let topic = format!("test.{}", unique("rebalance"));
    let group = format!("{topic}.group");
    let config = KafkaConfig {
        session_timeout_ms: 6_000,
        ..kafka_config(2)
    };
    pulse_kafka::admin::create_topics(&config, &[&topic])
        .await
        .expect("topic (is the stack running? scripts/stack start)");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("producer");
    for partition in 0..2 {
        for i in 0..100 {
            producer
                .send(
                    BaseRecord::to(&topic)
                        .partition(partition)
                        .key("k")
                        .payload(&format!("{i}")),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue");
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");

    // Member A takes both partitions and reads 50 records of each: 30 handled, 20 still in
    // flight.
    let first = subscribe(&config, &group, &[&topic], ConsumerLag::default()).expect("member a");
    let mut read = [0i64; 2];
    let deadline = Instant::now() + Duration::from_secs(60);
    while read.iter().any(|&n| n < 50) {
        assert!(Instant::now() < deadline, "member a read only {read:?}");
        let Ok(Ok(message)) = tokio::time::timeout(Duration::from_millis(500), first.recv()).await
        else {
            continue;
        };
        let partition = message.partition();
        if read[partition as usize] >= 50 {
            continue;
        }
        let offset = message.offset();
        let mut tracker = first.context().tracker();
        tracker.consumed(&topic, partition, offset);
        if offset < 30 {
            tracker.handled(&topic, partition, offset);
        }
        read[partition as usize] += 1;
    }
    assert_eq!(
        commit_handled(&first, CommitMode::Sync).expect("commit"),
        2,
        "both partitions committed at 30"
    );

    // Member B joins: the group rebalances and one partition moves to B.
    let second: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("member b");
    second.subscribe(&[&topic]).expect("subscribe b");
    let deadline = Instant::now() + Duration::from_secs(60);
    let moved = loop {
        assert!(Instant::now() < deadline, "no rebalance");
        let _ = tokio::time::timeout(Duration::from_millis(200), first.recv()).await;
        let _ = second.poll(Duration::from_millis(200));
        let assigned = second.assignment().expect("assignment");
        if let Some(element) = assigned.elements().first() {
            break element.partition();
        }
    };
    // A committed the revoked partition's handled offset when it lost it.
    assert_eq!(committed(&group, &topic, moved), 30);

    // B reads the moved partition to its end and commits it.
    let mut done = TopicPartitionList::new();
    done.add_partition_offset(&topic, moved, Offset::Offset(100))
        .expect("offset");
    second.commit(&done, CommitMode::Sync).expect("b commits");
    assert_eq!(committed(&group, &topic, moved), 100);

    // A finishes its old in-flight records late: Pulse commits nothing of the partition it
    // no longer owns.
    {
        let mut tracker = first.context().tracker();
        for offset in 30..50 {
            tracker.handled(&topic, moved, offset);
        }
    }
    commit_handled(&first, CommitMode::Sync).expect("commit");
    assert_eq!(
        committed(&group, &topic, moved),
        100,
        "the moved partition kept B's offset"
    );

    // What the safeguard prevents: the broker takes the same late commit from A, and the
    // group's offset goes back from 100 to 50: 50 records would be read again.
    let mut stale = TopicPartitionList::new();
    stale
        .add_partition_offset(&topic, moved, Offset::Offset(50))
        .expect("offset");
    first
        .commit(&stale, CommitMode::Sync)
        .expect("the broker accepts a commit for a partition this member does not own");
    assert_eq!(committed(&group, &topic, moved), 50);
}
