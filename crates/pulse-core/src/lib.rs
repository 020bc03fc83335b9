//! Pulse's domain: what a post is, what enrichment adds to it, how a raw record is judged
//! acceptable, and the configuration every role shares.
//!
//! This crate does no network I/O; every other crate depends on it and on nothing above it.

pub mod config;
pub mod post;
pub mod validate;

pub use config::PulseConfig;
pub use post::{
    EnrichedPost, Enrichment, Entity, EntityKind, Keyword, Post, Sentiment, SentimentLabel,
};
pub use validate::{decode_post, PostLimits, Rejection};
