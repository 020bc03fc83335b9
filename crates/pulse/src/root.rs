//! The composition root: builds each part a process shares once, when first asked for
//! (the enricher, the speed layer, the batch store with its connect retry, one producer
//! shared by the sinks, the publisher and the replayer, the metrics registry), and
//! assembles the roles of the stage catalogue and the API state from them. Commands parse
//! their arguments and call it; `pulse up` asks it for every stage.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use pulse_api::{ApiMetrics, ApiState, Telemetry};
use pulse_batch::{BatchError, BatchStore};
use pulse_core::PulseConfig;
use pulse_kafka::create_producer;
use pulse_nlp::Enricher;
use pulse_pipeline::catalogue::{Resource, StageResources, WithStage};
use pulse_pipeline::publish::Publisher;
use pulse_pipeline::replay::Replayer;
use pulse_pipeline::{PipelineMetrics, SpeedRecovery, Stage, StageKind};
use pulse_speed::SpeedLayer;
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

use crate::commands::role::Role;
use crate::telemetry::{self, MetricsEndpoint};

/// The shared parts of one process, each built at most once.
pub struct Root {
    config: PulseConfig,
    shutdown: CancellationToken,
    registry: Registry,
    metrics: PipelineMetrics,
    enricher: Option<Arc<Enricher>>,
    speed: Option<SpeedLayer>,
    batch: Option<BatchStore>,
    producer: Option<FutureProducer>,
}

/// An API state still to be given the process's frozen metrics registry.
pub struct ApiParts {
    state: ApiState,
    metrics: ApiMetrics,
}

impl ApiParts {
    /// The state, with the registry its `/api/v1/metrics` reads.
    pub fn with_registry(self, registry: Arc<Registry>) -> ApiState {
        self.state.with_telemetry(Telemetry {
            metrics: self.metrics,
            registry,
        })
    }
}

impl Root {
    /// A root for `config`; every role it builds stops with `shutdown`.
    pub fn new(config: PulseConfig, shutdown: CancellationToken) -> Self {
        let mut registry = Registry::default();
        let metrics = PipelineMetrics::register(&mut registry);
        Self {
            config,
            shutdown,
            registry,
            metrics,
            enricher: None,
            speed: None,
            batch: None,
            producer: None,
        }
    }

    pub fn config(&self) -> &PulseConfig {
        &self.config
    }

    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn metrics(&self) -> &PipelineMetrics {
        &self.metrics
    }

    /// Where parts built outside the root (the live sources) register their metrics, until
    /// [`Root::serve_metrics`] freezes it.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The models of `enrich.models`, one session set per process.
    pub fn enricher(&mut self) -> anyhow::Result<Arc<Enricher>> {
        if let Some(enricher) = &self.enricher {
            return Ok(enricher.clone());
        }
        // Session creation reads and optimises the graph (a second or so): off the runtime's
        // worker.
        let enricher = tokio::task::block_in_place(|| Enricher::new(&self.config.enrich))
            .context("cannot load the enrichment models (enrich.models)")?;
        tracing::info!(model = enricher.model_name(), "enricher ready");
        Ok(self.enricher.insert(Arc::new(enricher)).clone())
    }

    /// The speed layer's Redis client.
    pub fn speed_layer(&mut self) -> anyhow::Result<SpeedLayer> {
        if let Some(speed) = &self.speed {
            return Ok(speed.clone());
        }
        let speed =
            SpeedLayer::connect(&self.config.speed).context("cannot reach the speed layer")?;
        Ok(self.speed.insert(speed).clone())
    }

    /// The batch layer, retried with backoff while no node answers or the schema is
    /// missing, so a role can start before its database. `None` if shut down meanwhile.
    pub async fn batch_store(&mut self) -> anyhow::Result<Option<BatchStore>> {
        if let Some(batch) = &self.batch {
            return Ok(Some(batch.clone()));
        }
        let mut backoff = Duration::from_millis(500);
        let store = loop {
            match BatchStore::connect(&self.config.batch).await {
                Ok(store) => break store,
                Err(error @ BatchError::Config(_)) => return Err(error.into()),
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "batch layer unavailable");
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        };
        Ok(Some(self.batch.insert(store).clone()))
    }

    /// The process's idempotent producer, shared by every at-least-once stage, the
    /// publisher and the replayer (a transactional producer cannot be shared: its
    /// transactions are its stage's).
    pub fn producer(&mut self) -> anyhow::Result<FutureProducer> {
        if let Some(producer) = &self.producer {
            return Ok(producer.clone());
        }
        let producer = create_producer(&self.config.kafka)?;
        Ok(self.producer.insert(producer).clone())
    }

    /// A publisher into the raw topic, its metrics labelled `stage`.
    pub fn publisher(&mut self, stage: &str) -> anyhow::Result<Publisher> {
        let producer = self.producer()?;
        Ok(crate::commands::ingest::publisher_with(
            &self.config,
            producer,
            self.metrics.for_stage(stage),
        ))
    }

    /// What `stages` write with, built here once. `None` if shut down while waiting for
    /// the batch layer.
    async fn resources(&mut self, stages: &[StageKind]) -> anyhow::Result<Option<StageResources>> {
        let mut resources = StageResources::default();
        for stage in stages {
            match stage.needs() {
                Resource::Enricher => resources.enricher = Some(self.enricher()?),
                Resource::SpeedLayer => resources.speed = Some(self.speed_layer()?),
                Resource::BatchStore => match self.batch_store().await? {
                    Some(store) => resources.batch = Some(store),
                    None => return Ok(None),
                },
                // The stage creates its folder's subfolders as it writes.
                Resource::ArchiveFolder => {}
            }
        }
        Ok(Some(resources))
    }

    /// A replayer holding what replays into `stages` write with. `None` if shut down while
    /// waiting for the batch layer.
    pub async fn replayer(&mut self, stages: &[StageKind]) -> anyhow::Result<Option<Replayer>> {
        let producer = self.producer()?;
        let Some(resources) = self.resources(stages).await? else {
            return Ok(None);
        };
        let replayer = Replayer::new(&self.config, self.metrics.clone(), producer);
        Ok(Some(replayer.with_resources(resources)))
    }

    /// The role of stage `kind`, wired to its input topic and consumer group. `None` if
    /// shut down while waiting for a store.
    pub async fn role(&mut self, kind: StageKind) -> anyhow::Result<Option<Role>> {
        let producer = self.producer()?;
        let Some(mut resources) = self.resources(&[kind]).await? else {
            return Ok(None);
        };
        match (kind.needs(), &resources.speed) {
            (Resource::SpeedLayer, Some(layer)) => {
                // Checks before each batch, and every few seconds while idle, that Redis
                // still holds what the group committed.
                let recovery = Arc::new(SpeedRecovery::new(
                    &self.config,
                    layer.clone(),
                    self.metrics.clone(),
                    producer.clone(),
                    self.shutdown.clone(),
                ));
                tokio::spawn(recovery.clone().watch());
                resources.speed_recovery = Some(recovery);
            }
            // Fails at start, not at the first batch, on a folder that cannot be made.
            (Resource::ArchiveFolder, _) => {
                let dir = &self.config.archive.dir;
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("cannot create the archive folder {}", dir.display())
                })?;
            }
            _ => {}
        }
        let wire = Wire {
            config: &self.config,
            metrics: &self.metrics,
            producer: &producer,
            shutdown: &self.shutdown,
        };
        Ok(Some(kind.build(&self.config, &resources, wire)??))
    }

    /// The API's state: both stores, the enricher, a publisher and a replayer into every
    /// stage. `None` if shut down while waiting for the batch layer.
    pub async fn api(&mut self) -> anyhow::Result<Option<ApiParts>> {
        let enricher = self.enricher()?;
        let Some(batch) = self.batch_store().await? else {
            return Ok(None);
        };
        let speed = self.speed_layer()?;
        let publisher = self.publisher("api")?;
        let Some(replayer) = self.replayer(&StageKind::ALL).await? else {
            return Ok(None);
        };
        let metrics = ApiMetrics::register(&mut self.registry);
        let state = ApiState::new(
            speed,
            batch,
            enricher,
            self.config.api.clone(),
            publisher,
            self.shutdown.clone(),
        )
        .with_replayer(replayer);
        Ok(Some(ApiParts { state, metrics }))
    }

    /// Freezes the metrics registry and serves `/metrics`, `/healthz` and `/readyz` on
    /// `metrics.listen` (ready once the caller says so). Metrics registered after this are
    /// not served.
    pub async fn serve_metrics(&mut self) -> anyhow::Result<(MetricsEndpoint, Arc<Registry>)> {
        let registry = Arc::new(std::mem::take(&mut self.registry));
        let endpoint = telemetry::serve_metrics(
            &self.config.metrics,
            registry.clone(),
            self.shutdown.clone(),
        )
        .await?;
        Ok((endpoint, registry))
    }

    /// Runs the role of stage `kind` alone, with its `/metrics`, until shutdown.
    pub async fn serve_role(mut self, kind: StageKind) -> anyhow::Result<ExitCode> {
        let (endpoint, _) = self.serve_metrics().await?;
        let Some(role) = self.role(kind).await? else {
            return Ok(ExitCode::SUCCESS);
        };
        endpoint.ready();
        role.run().await?;
        Ok(ExitCode::SUCCESS)
    }
}

/// A built stage wired to its input topic and consumer group, as a role that runs until the
/// root's shutdown.
struct Wire<'a> {
    config: &'a PulseConfig,
    metrics: &'a PipelineMetrics,
    producer: &'a FutureProducer,
    shutdown: &'a CancellationToken,
}

impl WithStage for Wire<'_> {
    type Output = anyhow::Result<Role>;

    fn with<S: Stage>(self, stage: S) -> Self::Output {
        Role::build(
            self.config,
            self.metrics,
            stage,
            self.producer,
            self.shutdown.clone(),
        )
    }
}
