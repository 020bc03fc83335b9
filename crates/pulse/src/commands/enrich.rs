//! `pulse enrich`: the enrich role.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use pulse_core::config::PipelineConfig;
use pulse_core::PulseConfig;
use pulse_kafka::consumer::subscribe;
use pulse_kafka::create_producer;
use pulse_nlp::Enricher;
use pulse_pipeline::metrics::StageMetrics;
use pulse_pipeline::runner::StageIo;
use pulse_pipeline::{run_stage, EnrichStage, PipelineMetrics};
use tokio_util::sync::CancellationToken;

use crate::{shutdown, telemetry};

/// Runs the enrich role until SIGINT/SIGTERM.
pub async fn run(config: PulseConfig) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown::on_signal()?;
    let mut registry = Registry::default();
    let metrics = PipelineMetrics::register(&mut registry);
    let role = EnrichRole::build(&config, &metrics)?;
    telemetry::serve_metrics(&config.metrics, registry, shutdown.clone()).await?;
    role.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// The enrich stage wired to its topics.
pub struct EnrichRole {
    stage: Arc<EnrichStage>,
    io: StageIo,
    pipeline: PipelineConfig,
    /// This role's metrics; `pulse up` reads them for its status lines.
    pub metrics: StageMetrics,
}

impl EnrichRole {
    /// Builds the enricher, the consumer (group `enrich.group`) and the producer.
    pub fn build(config: &PulseConfig, metrics: &PipelineMetrics) -> anyhow::Result<Self> {
        let topics = &config.kafka.topics;
        let enricher = Arc::new(Enricher::new(&config.enrich));
        let stage = Arc::new(EnrichStage::new(
            enricher,
            config.enrich.post_limits(),
            topics.enriched.clone(),
        ));
        let consumer = subscribe(
            &config.kafka,
            &config.enrich.group,
            &[topics.raw.as_str()],
            metrics.lag.clone(),
        )?;
        let io = StageIo {
            consumer,
            producer: create_producer(&config.kafka)?,
            dlq_topic: topics.dlq.clone(),
            commit_interval: Duration::from_millis(config.kafka.commit_interval_ms),
            topics: vec![topics.raw.clone()],
            stall_check_interval: Duration::from_millis(2 * config.kafka.session_timeout_ms),
        };
        tracing::info!(group = %config.enrich.group, from = %topics.raw, to = %topics.enriched, "enrich role ready");
        Ok(Self {
            stage,
            io,
            pipeline: config.pipeline.clone(),
            metrics: metrics.for_stage("enrich"),
        })
    }

    /// Runs until `shutdown`, then drains and commits.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        run_stage(self.stage, self.io, &self.pipeline, self.metrics, shutdown).await?;
        Ok(())
    }
}
