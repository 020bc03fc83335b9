//! The replay reader across a broker crash, against Apache Kafka on a private stack: the
//! records it read before the broker's error are handed out before the error, never dropped
//! with it (each would count as read and never be replayed: a speed-layer catch-up cut by a
//! Kafka crash then ended "complete" with holes). Every record of the range is handed out
//! exactly once, in order, across the crash.

use crate::common;

use std::time::{Duration, Instant};

use common::{PrivateStack, PATIENCE};
use pulse_core::config::KafkaConfig;
use pulse_kafka::replay::{ReplayRange, ReplayReader, ReplayStart};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_read_before_a_broker_crash_are_replayed() {
    let stack = PrivateStack::start(&["kafka"]);
    let topic = "replay.crash";
    let config = KafkaConfig {
        brokers: stack.brokers(),
        partitions: 1,
        ..KafkaConfig::default()
    };
    pulse_kafka::admin::create_topics(&config, &[topic])
        .await
        .expect("topic");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", stack.brokers())
        .create()
        .expect("producer");
    for i in 0..100 {
        producer
            .send(BaseRecord::to(topic).key("k").payload(&format!("{i}")))
            .map_err(|(e, _)| e)
            .expect("enqueued");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
    // An aborted transaction ends the span: its record and marker are never delivered, so
    // the reader waits out its batch time with the 100 records in hand.
    let aborted: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", stack.brokers())
        .set("transactional.id", "replay.crash.aborted")
        .create()
        .expect("transactional producer");
    aborted
        .init_transactions(Duration::from_secs(30))
        .expect("transactions");
    aborted.begin_transaction().expect("begun");
    aborted
        .send(BaseRecord::to(topic).key("k").payload("aborted"))
        .map_err(|(e, _)| e)
        .expect("enqueued");
    aborted.flush(Duration::from_secs(30)).expect("flushed");
    aborted
        .abort_transaction(Duration::from_secs(30))
        .expect("aborted");
    // The coordinator writes the abort marker after it answers: the range is whole once
    // the partition's end counts it.
    let deadline = Instant::now() + PATIENCE;
    while producer
        .client()
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks")
        .1
        < 102
    {
        assert!(Instant::now() < deadline, "the abort marker never landed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut reader = ReplayReader::open(
        &config,
        ReplayRange {
            topic: topic.to_string(),
            start: ReplayStart::Offset(0),
            end: None,
        },
    )
    .await
    .expect("reader");
    assert_eq!(reader.total(), 102, "{:?}", reader.spans());
    // The first record: the fetch that brought it usually brought all 100 into the local
    // queue.
    let first = reader
        .next_batch(1, Duration::ZERO)
        .await
        .expect("read")
        .expect("a batch");
    assert_eq!(first.iter().map(|r| r.offset).collect::<Vec<_>>(), [0]);
    let mut read: Vec<i64> = vec![0];

    // The broker dies. Whether its error comes behind the records already fetched or
    // overtakes some of them is librdkafka's timing; either way, every record handed out
    // before the error is kept, and none is handed out twice.
    stack.kill("kafka");
    let error = loop {
        match reader.next_batch(1_000, Duration::from_secs(30)).await {
            Ok(Some(batch)) => read.extend(batch.iter().map(|r| r.offset)),
            Ok(None) => panic!("the reader ended while its broker was down"),
            Err(error) => break error,
        }
    };
    eprintln!(
        "replay_reader: {} records read before the error: {error}",
        read.len()
    );

    // Back up, the reader reads what it had not handed out, and then reports itself done
    // (the rest of the span is the aborted transaction).
    stack.run(&["start", "kafka"]);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match reader.next_batch(1_000, Duration::from_millis(200)).await {
            Ok(None) => break,
            Ok(Some(batch)) => read.extend(batch.iter().map(|r| r.offset)),
            Err(error) => assert!(Instant::now() < deadline, "still failing: {error}"),
        }
    }
    assert_eq!(
        read,
        (0..100).collect::<Vec<i64>>(),
        "each record once, in order"
    );
}
