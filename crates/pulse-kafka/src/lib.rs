//! Pulse's Kafka plumbing: how producers and consumers are built, which offsets may be
//! committed, what happens to them on a rebalance, how dead letters are labelled, and topic
//! creation.
//!
//! Knows nothing of what a stage does with a record; `pulse-pipeline` drives these pieces.

pub mod admin;
pub mod client;
pub mod consumer;
pub mod dlq;
pub mod offsets;

pub use client::{consumer_config, create_producer, producer_config};
pub use consumer::{ConsumerLag, PulseConsumer, PulseConsumerContext};
pub use dlq::{DeadLetter, Origin};
pub use offsets::OffsetTracker;
