//! The small trait every stage implements.

use std::future::Future;

use pulse_core::{DeadLetterKind, EnrichedPost};
use pulse_kafka::Origin;

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

    /// The enriched post this record carries, with its JSON as received, or why it is not
    /// one (for the DLQ; the sinks' rejection kind is [`DeadLetterKind::NotEnrichedPost`]).
    pub fn enriched_post(&self) -> Result<(EnrichedPost, &str), String> {
        let bytes = self
            .payload
            .as_deref()
            .ok_or_else(|| "record has no payload".to_string())?;
        let json =
            std::str::from_utf8(bytes).map_err(|e| format!("payload is not valid utf-8: {e}"))?;
        let post = serde_json::from_str::<EnrichedPost>(json)
            .map_err(|e| format!("not an enriched post: {e}"))?;
        Ok((post, json))
    }
}

/// The enriched post of a record, with the JSON it arrived as and the index of its record
/// (and outcome) in the batch.
pub type ReceivedPost<'a> = (EnrichedPost, &'a str, usize);

/// What a sink does with a batch from the enriched topic: the enriched posts, and one
/// outcome per record, `Done` for posts, `Reject` for the rest.
pub fn enriched_posts(batch: &[SourceRecord]) -> (Vec<ReceivedPost<'_>>, Vec<Outcome>) {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut posts = Vec::with_capacity(batch.len());
    for (index, record) in batch.iter().enumerate() {
        match record.enriched_post() {
            Ok((post, json)) => {
                posts.push((post, json, index));
                outcomes.push(Outcome::Done);
            }
            Err(error) => outcomes.push(Outcome::Reject {
                kind: DeadLetterKind::NotEnrichedPost,
                error,
            }),
        }
    }
    (posts, outcomes)
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
    /// Short name used in logs, metrics and DLQ headers (`enrich`, `sink-batch`, ...).
    fn name(&self) -> &'static str;

    /// Topic that [`Outcome::Emit`] records go to, if the stage emits any.
    fn output_topic(&self) -> Option<&str>;

    /// Handles a batch; returns exactly one outcome per record, in order.
    fn process(
        &self,
        batch: &[SourceRecord],
    ) -> impl Future<Output = Result<Vec<Outcome>, StageError>> + Send;
}
