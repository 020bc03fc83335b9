//! What Pulse's tests share, and nothing the product runs: posts built field by field
//! ([`post`]), names no other test or run uses ([`unique`], [`keyspace`], [`key_prefix`]),
//! the test servers' addresses from the environment ([`servers`]), and seeded noise
//! ([`noise`]).
//!
//! Only ever a dev-dependency; it depends on pulse-core alone, so every crate's tests can
//! use it.

mod names;
mod posts;
pub mod servers;

pub use names::{key_prefix, keyspace, unique};
pub use posts::{post, PostBuilder, TEST_MODEL};
pub use servers::{batch_config, kafka_config, shipped_model, speed_config};

/// `len` bytes of noise from a seeded xorshift: the same bytes for the same seed on every
/// run, and no valid gzip, zstd or UTF-8 stream.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
