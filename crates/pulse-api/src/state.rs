//! What every handler shares: the stores, the enricher and the API's limits.

use std::sync::Arc;

use pulse_batch::BatchStore;
use pulse_core::config::ApiConfig;
use pulse_nlp::Enricher;
use pulse_speed::SpeedLayer;

/// Shared state of the API; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) speed: SpeedLayer,
    pub(crate) batch: BatchStore,
    pub(crate) enricher: Arc<Enricher>,
    pub(crate) config: Arc<ApiConfig>,
}

impl ApiState {
    pub fn new(
        speed: SpeedLayer,
        batch: BatchStore,
        enricher: Arc<Enricher>,
        config: ApiConfig,
    ) -> Self {
        Self {
            speed,
            batch,
            enricher,
            config: Arc::new(config),
        }
    }
}
