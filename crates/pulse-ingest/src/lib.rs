//! Pulse's sources of posts: files and dumps (JSONL, CSV, plain text, Reddit/Pushshift
//! NDJSON, each optionally gzip- or zstd-compressed), a synthetic generator, and live APIs
//! (Reddit, X, Bluesky) behind the [`live::LiveSource`] trait.
//!
//! A source hands out [`SourceItem`]s: a post with where it came from, a tombstone of a
//! post deleted at the source, or a record that is not a post with the reason. File and
//! synthetic sources are blocking iterators; live sources are async and say where they
//! stand as a checkpoint. None knows Kafka: the pipeline's publisher takes their items (and
//! checkpoints) to the topics.

pub mod bluesky;
pub mod file;
pub mod live;
pub mod reddit;
pub mod synthetic;
pub mod x;

pub use file::{FileFormat, FileSource};
pub use synthetic::SyntheticSource;

use pulse_core::{DeadLetterKind, Post, Tombstone};

/// One item of a source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    /// A post, with its location (`path:line`, a generator sequence number...).
    Post { post: Box<Post>, location: String },
    /// A post deleted at its source: every store must stop serving it.
    Tombstone {
        tombstone: Tombstone,
        location: String,
    },
    /// A record that could not be made into a post: its original bytes and the reason.
    Malformed {
        location: String,
        kind: DeadLetterKind,
        error: String,
        raw: Vec<u8>,
    },
}
