//! The speed sink: enriched posts into the Redis speed layer. A record that is not an
//! enriched post goes to the DLQ; Redis errors fail the batch, which the stage loop retries
//! with backoff (nothing past it is committed).

use pulse_core::EnrichedPost;
use pulse_speed::SpeedLayer;

use crate::stage::{enriched_posts, Outcome, SourceRecord, Stage, StageError};

/// Applies enriched posts to the speed layer.
pub struct SpeedSinkStage {
    layer: SpeedLayer,
}

impl SpeedSinkStage {
    pub fn new(layer: SpeedLayer) -> Self {
        Self { layer }
    }
}

impl Stage for SpeedSinkStage {
    fn name(&self) -> &'static str {
        "sink-speed"
    }

    fn output_topic(&self) -> Option<&str> {
        None
    }

    async fn process(&self, batch: &[SourceRecord]) -> Result<Vec<Outcome>, StageError> {
        let (posts, outcomes) = enriched_posts(batch);
        // The feed keeps each post's JSON as it arrived: no second serialization.
        let pairs: Vec<(&EnrichedPost, &str)> =
            posts.iter().map(|(post, json)| (post, *json)).collect();
        let report = self
            .layer
            .apply_json(&pairs)
            .await
            .map_err(|e| StageError(format!("cannot apply to the speed layer: {e}")))?;
        if report.duplicates > 0 {
            tracing::debug!(
                duplicates = report.duplicates,
                "already applied posts skipped"
            );
        }
        Ok(outcomes)
    }
}
