//! What every handler shares: the stores, the enricher, the publisher and the API's
//! limits.

use std::sync::Arc;

use pulse_batch::BatchStore;
use pulse_core::config::ApiConfig;
use pulse_nlp::Enricher;
use pulse_pipeline::publish::Publisher;
use pulse_pipeline::replay::Replayer;
use pulse_speed::SpeedLayer;
use tokio_util::sync::CancellationToken;

use crate::limits::RateLimit;
use crate::metrics::Telemetry;
use crate::routes::admin::Jobs;

/// Shared state of the API; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) speed: SpeedLayer,
    pub(crate) batch: BatchStore,
    pub(crate) enricher: Arc<Enricher>,
    pub(crate) config: Arc<ApiConfig>,
    /// Publishes `POST /api/v1/posts` to the raw topic.
    pub(crate) publisher: Arc<Publisher>,
    /// Background admin jobs (recomputes, replays).
    pub(crate) jobs: Arc<Jobs>,
    /// Runs `POST /api/v1/admin/replay`; `None`: this process cannot replay (503).
    pub(crate) replayer: Option<Arc<Replayer>>,
    /// Per-client allowance under `/api/v1`; `None`: unlimited.
    pub(crate) rate_limit: Option<Arc<RateLimit>>,
    /// Request metrics and the registry `/metrics` serves; `None`: not recorded.
    pub(crate) telemetry: Option<Telemetry>,
    /// Cancelled when the server shuts down: ends the endless responses (event streams),
    /// which graceful shutdown would otherwise wait for.
    pub(crate) shutdown: CancellationToken,
    /// One permit per event stream that may be open (`api.max_streams`).
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
}

impl ApiState {
    pub fn new(
        speed: SpeedLayer,
        batch: BatchStore,
        enricher: Arc<Enricher>,
        config: ApiConfig,
        publisher: Publisher,
        shutdown: CancellationToken,
    ) -> Self {
        let rate_limit =
            RateLimit::new(config.rate_limit_per_second, config.rate_limit_burst).map(Arc::new);
        let streams = Arc::new(tokio::sync::Semaphore::new(config.max_streams));
        Self {
            speed,
            batch,
            enricher,
            rate_limit,
            config: Arc::new(config),
            publisher: Arc::new(publisher),
            telemetry: None,
            jobs: Arc::default(),
            replayer: None,
            shutdown,
            streams,
        }
    }

    /// Serves `POST /api/v1/admin/replay` with `replayer`.
    pub fn with_replayer(mut self, replayer: Replayer) -> Self {
        self.replayer = Some(Arc::new(replayer));
        self
    }

    /// Records request metrics into `telemetry` and serves its registry at `/metrics`.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }
}
