//! Pulse's sources of posts: files and dumps (JSONL, CSV, plain text, Reddit/Pushshift
//! NDJSON, each optionally gzip- or zstd-compressed) and a synthetic generator.
//!
//! A source is an iterator of [`SourceItem`]s: a post with where it came from, or a record
//! that is not a post with the reason. Sources do blocking reads and know nothing of Kafka;
//! the pipeline's publisher takes their items to the raw topic.

pub mod file;
pub mod synthetic;

pub use file::{FileFormat, FileSource};
pub use synthetic::SyntheticSource;

use pulse_core::{DeadLetterKind, Post};

/// One item of a source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    /// A post, with its location (`path:line`, a generator sequence number...).
    Post { post: Box<Post>, location: String },
    /// A record that could not be made into a post: its original bytes and the reason.
    Malformed {
        location: String,
        kind: DeadLetterKind,
        error: String,
        raw: Vec<u8>,
    },
}
