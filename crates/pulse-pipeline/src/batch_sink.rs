//! The batch sink: enriched posts into the Cassandra/ScyllaDB history. A record that is not
//! an enriched post goes to the DLQ; a CQL error fails the batch, which the stage loop
//! retries with backoff (nothing past it is committed). Writes are upserts by key, so a
//! retried or redelivered batch changes nothing.

use pulse_batch::BatchStore;
use pulse_core::EnrichedPost;

use crate::stage::{enriched_posts, Outcome, SourceRecord, Stage, StageError};

/// Writes enriched posts to the batch layer.
pub struct BatchSinkStage {
    store: BatchStore,
}

impl BatchSinkStage {
    pub fn new(store: BatchStore) -> Self {
        Self { store }
    }
}

impl Stage for BatchSinkStage {
    fn name(&self) -> &'static str {
        "sink-batch"
    }

    fn output_topic(&self) -> Option<&str> {
        None
    }

    async fn process(&self, batch: &[SourceRecord]) -> Result<Vec<Outcome>, StageError> {
        let (posts, outcomes) = enriched_posts(batch);
        // The history keeps each post's JSON as it arrived.
        let pairs: Vec<(&EnrichedPost, &str)> =
            posts.iter().map(|(post, json, _)| (post, *json)).collect();
        self.store
            .write(&pairs)
            .await
            .map_err(|e| StageError(format!("cannot write to the batch layer: {e}")))?;
        Ok(outcomes)
    }
}
