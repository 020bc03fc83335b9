//! librdkafka settings for Pulse's producers and consumers.

use pulse_core::config::KafkaConfig;
use rdkafka::error::KafkaResult;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

/// Producer settings: idempotent (no duplicates or reordering from the producer's own
/// retries), acknowledged by all in-sync replicas.
pub fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", config.compression.as_str())
        .set("linger.ms", "5")
        .set("message.timeout.ms", config.delivery_timeout_ms.to_string())
        .set("queue.buffering.max.messages", "500000")
        .set("message.max.bytes", config.max_record_bytes.to_string());
    with_overrides(client, config)
}

/// Consumer settings for `group`: offsets are committed by Pulse only (never automatically),
/// and only transactionally committed records are read.
pub fn consumer_config(config: &KafkaConfig, group: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "statistics.interval.ms",
            config.statistics_interval_ms.to_string(),
        );
    with_overrides(client, config)
}

/// Applies the user's `kafka.librdkafka` properties over Pulse's.
pub(crate) fn with_overrides(mut client: ClientConfig, config: &KafkaConfig) -> ClientConfig {
    for (key, value) in &config.librdkafka {
        client.set(key, value);
    }
    client
}

/// An idempotent producer.
pub fn create_producer(config: &KafkaConfig) -> KafkaResult<FutureProducer> {
    producer_config(config).create()
}

/// A transactional producer with `transactional_id` (idempotent, acks=all). Its
/// transactions must be initialised (`init_transactions`) before the first one begins.
pub fn create_transactional_producer(
    config: &KafkaConfig,
    transactional_id: &str,
) -> KafkaResult<FutureProducer> {
    let mut client = producer_config(config);
    client
        .set("transactional.id", transactional_id)
        .set(
            "transaction.timeout.ms",
            config.transaction_timeout_ms.to_string(),
        )
        // Every record of a transaction must be delivered or the transaction aborts, so
        // a record's delivery may take no longer than the transaction may stay open.
        .set(
            "message.timeout.ms",
            config
                .delivery_timeout_ms
                .min(config.transaction_timeout_ms)
                .to_string(),
        );
    client.create()
}
