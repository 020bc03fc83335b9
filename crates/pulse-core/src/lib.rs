//! Pulse's domain: what a post is, what enrichment adds to it, how a raw record is judged
//! acceptable, the time buckets and counters both stores roll posts up into, the words
//! of a query (windows, series, terms), and the configuration every role shares.
//!
//! This crate does no network I/O; every other crate depends on it and on nothing above it.

pub mod bucket;
pub mod config;
pub mod dead_letter;
pub mod post;
pub mod query;
pub mod rollup;
pub mod time;
pub mod tombstone;
pub mod validate;

pub use bucket::Granularity;
pub use config::PulseConfig;
pub use dead_letter::DeadLetterKind;
pub use post::{
    EnrichedPost, Enrichment, Entity, EntityKind, Keyword, Post, Sentiment, SentimentLabel,
};
pub use query::{Series, TermCount, Window};
pub use rollup::{entity_member, micros, Tally, UNDETERMINED_LANGUAGE};
pub use tombstone::Tombstone;
pub use validate::{decode_post, decode_record, PostLimits, RawRecord, Rejection};
