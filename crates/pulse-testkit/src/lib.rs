//! What Pulse's tests share, and nothing the product runs: posts built field by field
//! ([`post`]), names no other test or run uses ([`unique`], [`keyspace`], [`key_prefix`]),
//! and the test servers' addresses from the environment ([`servers`]).
//!
//! Only ever a dev-dependency; it depends on pulse-core alone, so every crate's tests can
//! use it.

mod names;
mod posts;
pub mod servers;

pub use names::{key_prefix, keyspace, unique};
pub use posts::{post, PostBuilder, TEST_MODEL};
pub use servers::{batch_config, kafka_config, shipped_model, speed_config};
