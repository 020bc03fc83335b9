//! Pulse's speed layer: rolling aggregates of enriched posts in Redis, for the live view.
//!
//! Per channel: per-minute buckets (count, sentiment label counts, score and emotion sums),
//! per-minute and per-hour sorted sets of keywords and entities, a capped stream of recent
//! posts, and a registry of channels with their last-seen time. Every key of a channel
//! shares the hash tag `{channel}`, so the layer works on Redis Cluster. Applying a post is
//! one atomic script that first marks the post id as seen: redelivery never double-counts.
//! Windows are folded from the buckets at read time. The script also records each post's
//! log position in the channel's slot, so a sink can tell what a Redis crash lost. A post
//! deleted at its source leaves the feed, and a `deleted` entry tells live readers.

mod apply;
mod forget;
mod keys;
mod position;
mod window;

pub use apply::{ApplyReport, LogPosition, PostToApply};
pub use forget::FeedEntry;
pub use keys::{minute_of, Keys};
pub use pulse_core::{entity_member, micros};
pub use window::{MinuteStats, WindowStats};

use pulse_core::config::SpeedConfig;
use redis::aio::ConnectionManager;

/// An error talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum SpeedError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("invalid window: {0}")]
    Window(String),
    #[error("unexpected answer from redis: {0}")]
    Answer(String),
}

/// A handle on the speed layer; cheap to clone (one multiplexed, reconnecting connection).
#[derive(Clone)]
pub struct SpeedLayer {
    connection: ConnectionManager,
    keys: Keys,
    retention_secs: u64,
    feed_length: usize,
}

impl SpeedLayer {
    /// A handle on the configured Redis. The connection is made on first use and remade
    /// after failures, so a role starts (and retries) while Redis is down. Must be called
    /// within a Tokio runtime.
    pub fn connect(config: &SpeedConfig) -> Result<Self, SpeedError> {
        let client = redis::Client::open(config.redis_url.as_str())?;
        let connection =
            client.get_connection_manager_lazy(redis::aio::ConnectionManagerConfig::new())?;
        Ok(Self {
            connection,
            keys: Keys::new(&config.key_prefix),
            retention_secs: config.retention_secs.max(1),
            feed_length: config.feed_length.max(1),
        })
    }

    /// The key layout in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// How long the speed layer keeps minute buckets, in seconds: older minutes read as
    /// empty.
    pub fn retention_secs(&self) -> u64 {
        self.retention_secs
    }
}
