//! The small trait every stage implements.

use std::future::Future;

use pulse_core::{DeadLetterKind, EnrichedPost, Tombstone};
use pulse_kafka::Origin;

use crate::catalogue::StageKind;

/// A record consumed from a topic, as handed to a stage.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

impl SourceRecord {
    /// Where this record came from, for dead letters.
    pub fn origin(&self) -> Origin {
        Origin::Record {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// The enriched post or tombstone this record carries (a post with its JSON as
    /// received), or why it is neither (for the DLQ; the sinks' rejection kind is
    /// [`DeadLetterKind::NotEnrichedPost`]).
    pub fn enriched(&self) -> Result<Enriched<'_>, String> {
        let bytes = self
            .payload
            .as_deref()
            .ok_or_else(|| "record has no payload".to_string())?;
        let json =
            std::str::from_utf8(bytes).map_err(|e| format!("payload is not valid utf-8: {e}"))?;
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("not an enriched post: {e}"))?;
        if Tombstone::is_claimed_by(&value) {
            return serde_json::from_value(value)
                .map(Enriched::Tombstone)
                .map_err(|e| format!("not a tombstone: {e}"));
        }
        let post = serde_json::from_value::<EnrichedPost>(value)
            .map_err(|e| format!("not an enriched post: {e}"))?;
        Ok(Enriched::Post(Box::new(post), json))
    }
}

/// What a record of the enriched topic carries.
#[derive(Debug)]
pub enum Enriched<'a> {
    /// An enriched post and its JSON as received.
    Post(Box<EnrichedPost>, &'a str),
    /// A post deleted at its source.
    Tombstone(Tombstone),
}

/// The enriched post of a record, with the JSON it arrived as and the index of its record
/// (and outcome) in the batch.
pub type ReceivedPost<'a> = (EnrichedPost, &'a str, usize);

/// A batch from the enriched topic as a sink sees it.
pub struct Received<'a> {
    pub posts: Vec<ReceivedPost<'a>>,
    /// Tombstones, with the index of their record.
    pub tombstones: Vec<(Tombstone, usize)>,
    /// One per record: `Done` for posts and tombstones, `Reject` for the rest.
    pub outcomes: Vec<Outcome>,
}

/// Sorts a batch from the enriched topic into posts, tombstones and rejected records.
pub fn enriched_records(batch: &[SourceRecord]) -> Received<'_> {
    let mut received = Received {
        posts: Vec::with_capacity(batch.len()),
        tombstones: Vec::new(),
        outcomes: Vec::with_capacity(batch.len()),
    };
    for (index, record) in batch.iter().enumerate() {
        match record.enriched() {
            Ok(Enriched::Post(post, json)) => {
                received.posts.push((*post, json, index));
                received.outcomes.push(Outcome::Done);
            }
            Ok(Enriched::Tombstone(tombstone)) => {
                received.tombstones.push((tombstone, index));
                received.outcomes.push(Outcome::Done);
            }
            Err(error) => received.outcomes.push(Outcome::Reject {
                kind: DeadLetterKind::NotEnrichedPost,
                error,
            }),
        }
    }
    received
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Produce `payload` keyed by `key` to the stage's output topic.
    Emit { key: String, payload: Vec<u8> },
    /// The record is unusable: send its original bytes to the DLQ with this reason.
    Reject { kind: DeadLetterKind, error: String },
    /// The stage handled the record itself (a sink wrote it).
    Done,
}

/// A batch that could not be handled now and should be retried as a whole (a store is
/// down, ...). Bad input is never a `StageError`: it is an [`Outcome::Reject`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StageError(pub String);

/// One step of the pipeline.
pub trait Stage: Send + Sync + 'static {
    /// Which stage of the catalogue this is.
    fn kind(&self) -> StageKind;

    /// The stage's name in logs, metrics and DLQ headers.
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Topic that [`Outcome::Emit`] records go to, if the stage emits any (sinks do not).
    fn output_topic(&self) -> Option<&str> {
        None
    }

    /// Handles a batch; returns exactly one outcome per record, in order.
    fn process(
        &self,
        batch: &[SourceRecord],
    ) -> impl Future<Output = Result<Vec<Outcome>, StageError>> + Send;
}
