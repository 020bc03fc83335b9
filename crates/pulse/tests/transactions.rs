//! What the local broker does with Kafka transactions, the basis an exactly-once enrich
//! stage would need: tansu 0.6 accepts InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn
//! and TxnOffsetCommit but has no EndTxn, so no transaction can ever be committed, and the
//! offsets sent in it are never applied. This test pins that finding down; when it fails,
//! the broker has gained EndTxn and the exactly-once mode can be built and tested (README).

mod common;

use std::time::{Duration, Instant};

use common::{brokers, Lane};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[test]
fn the_local_broker_cannot_end_transactions() {
    let lane = Lane::new("txn", 1);
    let input = &lane.raw;
    let output = &lane.enriched;

    let plain: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("producer");
    for i in 0..10 {
        plain
            .send(BaseRecord::to(input).key("k").payload(&format!("in-{i}")))
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    plain.flush(Duration::from_secs(30)).expect("flush");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", &lane.group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[input.as_str()]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no assignment");
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let group = consumer.group_metadata().expect("group metadata");

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("transactional.id", format!("{}.txn", lane.group))
        .create()
        .expect("transactional producer");
    let timeout = Duration::from_secs(30);
    producer
        .init_transactions(timeout)
        .expect("init_transactions");

    producer.begin_transaction().expect("begin");
    for i in 0..5 {
        producer
            .send(BaseRecord::to(output).key("k").payload(&format!("txn-{i}")))
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(input, 0, Offset::Offset(5))
        .expect("offset");
    producer
        .send_offsets_to_transaction(&offsets, &group, timeout)
        .expect("send_offsets_to_transaction");
    let error = producer
        .commit_transaction(timeout)
        .expect_err("the broker cannot end a transaction");
    println!("commit_transaction on the local broker: {error}");
    assert!(error.to_string().contains("EndTxnRequest"), "{error}");

    let mut list = TopicPartitionList::new();
    list.add_partition(input, 0);
    let offsets = consumer
        .committed_offsets(list, timeout)
        .expect("committed offsets");
    assert_eq!(
        offsets.find_partition(input, 0).map(|e| e.offset()),
        Some(Offset::Invalid),
        "offsets sent in an unfinished transaction are not applied"
    );
}
