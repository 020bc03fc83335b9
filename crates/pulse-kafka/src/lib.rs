//! Pulse's Kafka plumbing: how producers and consumers are built, which offsets may be
//! committed, what happens to them on a rebalance, how dead letters are labelled, topic
//! creation, and bounded replays of a topic by offset or time.
//!
//! Knows nothing of what a stage does with a record; `pulse-pipeline` drives these pieces.

pub mod admin;
pub mod client;
pub mod consumer;
pub mod dlq;
pub mod instance;
pub mod offsets;
pub mod replay;

pub use client::{
    consumer_config, create_producer, create_transactional_producer, producer_config,
};
pub use consumer::{ConsumerLag, PulseConsumer, PulseConsumerContext};
pub use dlq::{DeadLetter, Origin};
pub use offsets::OffsetTracker;
