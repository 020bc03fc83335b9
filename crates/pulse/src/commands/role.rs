//! A stage wired to its consumer group, input topic, producer and DLQ: what every
//! consuming role (`pulse enrich`, `pulse sink speed`, `pulse up`) runs.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use pulse_core::config::Delivery;
use pulse_core::config::PipelineConfig;
use pulse_core::PulseConfig;
use pulse_kafka::consumer::subscribe;
use pulse_kafka::instance::{self, InstanceId};
use pulse_kafka::{create_producer, create_transactional_producer};
use pulse_pipeline::metrics::StageMetrics;
use pulse_pipeline::runner::StageIo;
use pulse_pipeline::{run_stage, PipelineMetrics, Stage};
use tokio_util::sync::CancellationToken;

use crate::telemetry;

/// Runs the one role `build` makes, with its `/metrics`, until `shutdown`.
pub async fn serve<S: Stage>(
    config: &PulseConfig,
    shutdown: CancellationToken,
    build: impl FnOnce(&PulseConfig, &PipelineMetrics) -> anyhow::Result<StageRole<S>>,
) -> anyhow::Result<ExitCode> {
    let mut registry = Registry::default();
    let metrics = PipelineMetrics::register(&mut registry);
    let endpoint =
        telemetry::serve_metrics(&config.metrics, Arc::new(registry), shutdown.clone()).await?;
    let role = build(config, &metrics)?;
    endpoint.ready();
    role.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// A stage ready to run.
pub struct StageRole<S: Stage> {
    stage: Arc<S>,
    io: StageIo,
    pipeline: PipelineConfig,
    /// This role's metrics; `pulse up` reads them for its status lines.
    pub metrics: StageMetrics,
    /// Holds the transactional id of an exactly-once role while it runs.
    _instance: Option<InstanceId>,
}

impl<S: Stage> StageRole<S> {
    /// Wires `stage` to its input topic and consumer group, delivering its outputs as the
    /// catalogue says (exactly-once: with a transactional producer whose id this process
    /// claims).
    pub fn build(
        config: &PulseConfig,
        metrics: &PipelineMetrics,
        stage: S,
    ) -> anyhow::Result<Self> {
        let kind = stage.kind();
        let (group, input, delivery) = (
            kind.group(config),
            kind.input_topic(&config.kafka.topics),
            kind.delivery(config),
        );
        let consumer = subscribe(&config.kafka, group, &[input], metrics.lag.clone())?;
        let (producer, instance) = match delivery {
            Delivery::AtLeastOnce => (create_producer(&config.kafka)?, None),
            Delivery::ExactlyOnce => {
                let instance = instance::claim(
                    &config.enrich.transactional_id,
                    group,
                    &instance::default_lock_dir(),
                )
                .context("cannot claim a transactional id")?;
                let producer =
                    create_transactional_producer(&config.kafka, &instance.transactional_id)?;
                (producer, Some(instance))
            }
        };
        let transactional_id = instance
            .as_ref()
            .map(|i| i.transactional_id.clone())
            .unwrap_or_default();
        let io = StageIo {
            consumer,
            producer,
            dlq_topic: config.kafka.topics.dlq.clone(),
            commit_interval: Duration::from_millis(config.kafka.commit_interval_ms),
            topics: vec![input.to_string()],
            delivery,
            transactional_id,
            max_record_bytes: config.kafka.max_record_bytes,
            transaction_call_timeout: Duration::from_millis(
                config.kafka.transaction_timeout_ms.clamp(1_000, 30_000),
            ),
        };
        tracing::info!(
            stage = stage.name(),
            group,
            from = input,
            to = stage.output_topic().unwrap_or("-"),
            delivery = ?delivery,
            transactional_id = io.transactional_id,
            "role ready"
        );
        Ok(Self {
            metrics: metrics.for_stage(stage.name()),
            stage: Arc::new(stage),
            io,
            pipeline: kind.pipeline(config),
            _instance: instance,
        })
    }

    /// Runs until `shutdown`, then drains and commits.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        run_stage(self.stage, self.io, &self.pipeline, self.metrics, shutdown).await?;
        Ok(())
    }
}
