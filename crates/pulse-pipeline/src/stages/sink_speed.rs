//! The speed sink: enriched posts into the Redis speed layer, each with its log position;
//! tombstones take their posts out of the feed. A record that is neither goes to the DLQ; Redis errors fail the batch,
//! which the stage loop retries with backoff (nothing past it is committed). As a role, it
//! first makes sure Redis still holds what was committed, and afterwards that the batch
//! went to that same Redis process ([`SpeedRecovery`]).

use std::sync::Arc;

use pulse_speed::{LogPosition, PostToApply, SpeedLayer};

use crate::catalogue::StageKind;
use crate::speed_recovery::SpeedRecovery;
use crate::stage::{enriched_records, Outcome, SourceRecord, Stage, StageError};

/// Applies enriched posts to the speed layer.
pub struct SpeedSinkStage {
    layer: SpeedLayer,
    /// The role's check of Redis before each batch (a replay has none).
    recovery: Option<Arc<SpeedRecovery>>,
}

impl SpeedSinkStage {
    pub fn new(layer: SpeedLayer) -> Self {
        Self {
            layer,
            recovery: None,
        }
    }

    /// Checks Redis with `recovery` before each batch.
    pub fn with_recovery(mut self, recovery: Arc<SpeedRecovery>) -> Self {
        self.recovery = Some(recovery);
        self
    }
}

impl Stage for SpeedSinkStage {
    fn kind(&self) -> StageKind {
        StageKind::SinkSpeed
    }

    async fn process(&self, batch: &[SourceRecord]) -> Result<Vec<Outcome>, StageError> {
        let current = match &self.recovery {
            Some(recovery) => Some(recovery.ensure_current().await?),
            None => None,
        };
        let received = enriched_records(batch);
        // The feed keeps each post's JSON as it arrived: no second serialization.
        let posts: Vec<PostToApply> = received
            .posts
            .iter()
            .map(|(post, json, index)| {
                let record = &batch[*index];
                let at = LogPosition {
                    topic: &record.topic,
                    partition: record.partition,
                    offset: record.offset,
                };
                (post, *json, Some(at))
            })
            .collect();
        let report = self
            .layer
            .apply_json(&posts)
            .await
            .map_err(|e| StageError(format!("cannot apply to the speed layer: {e}")))?;
        // After the posts: a post and its tombstone can share a batch.
        let deleted: Vec<(&str, &str)> = received
            .tombstones
            .iter()
            .map(|(t, _)| (t.channel.as_str(), t.id.as_str()))
            .collect();
        self.layer
            .forget(&deleted)
            .await
            .map_err(|e| StageError(format!("cannot forget deleted posts: {e}")))?;
        if let Some(current) = current {
            current.confirm().await?;
        }
        if report.duplicates > 0 {
            tracing::debug!(
                duplicates = report.duplicates,
                "already applied posts skipped"
            );
        }
        Ok(received.outcomes)
    }
}
