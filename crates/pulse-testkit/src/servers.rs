//! The servers the tests run against: the local stack (`scripts/stack start`) unless
//! `PULSE_TEST_BROKERS`, `PULSE_TEST_CQL_NODES` or `PULSE_TEST_REDIS_URL` name others.

use std::path::PathBuf;

use pulse_core::config::{BatchConfig, KafkaConfig, SpeedConfig, DEFAULT_MODEL};

use crate::names::{key_prefix, keyspace};

/// Kafka's bootstrap servers.
pub fn brokers() -> String {
    std::env::var("PULSE_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// The CQL contact points.
pub fn cql_nodes() -> String {
    std::env::var("PULSE_TEST_CQL_NODES").unwrap_or_else(|_| "127.0.0.1:9042".to_string())
}

/// Redis's URL.
pub fn redis_url() -> String {
    std::env::var("PULSE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// Kafka settings for the test brokers, creating topics with `partitions` partitions.
pub fn kafka_config(partitions: i32) -> KafkaConfig {
    KafkaConfig {
        brokers: brokers(),
        partitions,
        ..KafkaConfig::default()
    }
}

/// Batch-layer settings for the test CQL nodes, in a keyspace of `test`'s own.
pub fn batch_config(test: &str) -> BatchConfig {
    BatchConfig {
        nodes: cql_nodes(),
        keyspace: keyspace(test),
        ..BatchConfig::default()
    }
}

/// Speed-layer settings for the test Redis, under a key prefix of `test`'s own.
pub fn speed_config(test: &str) -> SpeedConfig {
    SpeedConfig {
        redis_url: redis_url(),
        key_prefix: key_prefix(test),
        ..SpeedConfig::default()
    }
}

/// The shipped default model's directory, by absolute path (tests run from their crate's
/// folder, the binary's children from wherever they are started).
pub fn shipped_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(DEFAULT_MODEL)
}
