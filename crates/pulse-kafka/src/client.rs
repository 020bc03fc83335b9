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
        .set("compression.type", &config.compression)
        .set("linger.ms", "5")
        .set("message.timeout.ms", config.delivery_timeout_ms.to_string())
        .set("queue.buffering.max.messages", "500000");
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
