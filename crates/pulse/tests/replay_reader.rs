//! The replay reader across a broker crash, against Apache Kafka on a private stack: the
//! records it read before the broker's error are handed out before the error, never dropped
//! with it (each would count as read and never be replayed: a speed-layer catch-up cut by a
//! Kafka crash then ended "complete" with holes).

mod common;

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
    // The first record: the fetch that brought it brought all 100 into the local queue.
    let first = reader
        .next_batch(1, Duration::ZERO)
        .await
        .expect("read")
        .expect("a batch");
    assert_eq!(first.iter().map(|r| r.offset).collect::<Vec<_>>(), [0]);

    // The broker dies: its error is queued behind the 99 records already fetched.
    stack.kill("kafka");
    let batch = reader
        .next_batch(1_000, Duration::from_secs(30))
        .await
        .expect("the records read before the error")
        .expect("a batch");
    assert_eq!(
        batch.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (1..100).collect::<Vec<i64>>()
    );
    let error = reader
        .next_batch(1_000, Duration::from_secs(30))
        .await
        .expect_err("the broker's error, after the records");
    assert!(error.to_string().contains("AllBrokersDown"), "{error}");

    // Back up, the reader finds nothing more to read (the rest is the aborted transaction).
    stack.run(&["start", "kafka"]);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match reader.next_batch(1_000, Duration::from_millis(200)).await {
            Ok(None) => break,
            Ok(Some(batch)) => assert!(batch.is_empty(), "read again: {batch:?}"),
            Err(error) => assert!(Instant::now() < deadline, "still failing: {error}"),
        }
    }
}
