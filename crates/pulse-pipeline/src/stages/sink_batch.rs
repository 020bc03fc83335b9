//! The batch sink: enriched posts into the Cassandra/ScyllaDB history, and the deletion of
//! posts whose tombstones arrive. A record that is neither goes to the DLQ, and so does a post the store refuses for good (a key
//! over 64 KiB, checked before writing; a refusal no check foresaw makes the batch be
//! written post by post to find it). Any other CQL error
//! fails the batch, which the stage loop retries with backoff (nothing past it is
//! committed). Writes are upserts by key, so a retried or redelivered batch changes nothing.

use pulse_batch::{BatchError, BatchStore};
use pulse_core::{DeadLetterKind, EnrichedPost, Tombstone};

use crate::catalogue::StageKind;
use crate::stage::{enriched_records, Outcome, ReceivedPost, SourceRecord, Stage, StageError};

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
    fn kind(&self) -> StageKind {
        StageKind::SinkBatch
    }

    async fn process(&self, batch: &[SourceRecord]) -> Result<Vec<Outcome>, StageError> {
        let received = enriched_records(batch);
        let outcomes = self.write(&received.posts, received.outcomes).await?;
        // After the posts: a post and its tombstone can share a batch.
        let tombstones: Vec<&Tombstone> = received.tombstones.iter().map(|(t, _)| t).collect();
        self.store
            .delete(&tombstones)
            .await
            .map_err(|e| StageError(format!("cannot delete from the batch layer: {e}")))?;
        Ok(outcomes)
    }
}

impl BatchSinkStage {
    /// Writes `posts`; a post the store refuses gets its `Reject` in `outcomes`.
    async fn write(
        &self,
        posts: &[ReceivedPost<'_>],
        mut outcomes: Vec<Outcome>,
    ) -> Result<Vec<Outcome>, StageError> {
        // The history keeps each post's JSON as it arrived. Posts the store would refuse
        // are dead-lettered before anything of them is written.
        let mut pairs: Vec<(&EnrichedPost, &str)> = Vec::with_capacity(posts.len());
        let mut indexes = Vec::with_capacity(posts.len());
        for (post, json, index) in posts {
            match BatchStore::refuses(post) {
                Some(refused) => {
                    outcomes[*index] = Outcome::Reject {
                        kind: DeadLetterKind::InvalidForStore,
                        error: refused.to_string(),
                    };
                }
                None => {
                    pairs.push((post, *json));
                    indexes.push(*index);
                }
            }
        }
        match self.store.write(&pairs).await {
            Ok(_) => Ok(outcomes),
            Err(BatchError::Refused { .. }) => {
                // A refusal no check foresaw: find the post, writing one at a time (rows
                // of it written before the refusal stay).
                for (pair, index) in pairs.iter().zip(indexes) {
                    match self.store.write(std::slice::from_ref(pair)).await {
                        Ok(_) => {}
                        Err(refused @ BatchError::Refused { .. }) => {
                            outcomes[index] = Outcome::Reject {
                                kind: DeadLetterKind::InvalidForStore,
                                error: refused.to_string(),
                            };
                        }
                        Err(error) => return Err(unwritten(error)),
                    }
                }
                Ok(outcomes)
            }
            Err(error) => Err(unwritten(error)),
        }
    }
}

fn unwritten(error: BatchError) -> StageError {
    StageError(format!("cannot write to the batch layer: {error}"))
}
