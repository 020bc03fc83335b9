//! A stage wired to its consumer group, input topic, producer and DLQ: what every
//! consuming role (`pulse enrich`, `pulse sink ...`, `pulse up`) runs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use pulse_core::config::Delivery;
use pulse_core::PulseConfig;
use pulse_kafka::consumer::subscribe;
use pulse_kafka::create_transactional_producer;
use pulse_kafka::instance;
use pulse_pipeline::metrics::StageMetrics;
use pulse_pipeline::runner::StageIo;
use pulse_pipeline::{run_stage, PipelineMetrics, Stage, StageKind};
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

/// A role of any stage, built and ready to run.
pub struct Role {
    pub kind: StageKind,
    /// Its metrics; `pulse up` reads them for its status lines.
    pub metrics: StageMetrics,
    running: BoxFuture<'static, anyhow::Result<()>>,
}

impl Role {
    /// Wires `stage` to its input topic and consumer group, delivering its outputs as the
    /// catalogue says: at-least-once through `shared`, the process's producer; exactly-once
    /// through a transactional producer of its own, whose id this process claims while the
    /// role runs. The role runs until `shutdown`, then drains and commits.
    pub fn build<S: Stage>(
        config: &PulseConfig,
        metrics: &PipelineMetrics,
        stage: S,
        shared: &FutureProducer,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let kind = stage.kind();
        let (group, input, delivery) = (
            kind.group(config),
            kind.input_topic(&config.kafka.topics),
            kind.delivery(config),
        );
        let consumer = subscribe(&config.kafka, group, &[input], metrics.lag.clone())?;
        let (producer, instance) = match delivery {
            Delivery::AtLeastOnce => (shared.clone(), None),
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
        let stage_metrics = metrics.for_stage(stage.name());
        let pipeline = kind.pipeline(config);
        let running = {
            let metrics = stage_metrics.clone();
            Box::pin(async move {
                // The transactional id stays claimed while the stage runs.
                let _claim = instance;
                run_stage(Arc::new(stage), io, &pipeline, metrics, shutdown).await?;
                Ok(())
            })
        };
        Ok(Role {
            kind,
            metrics: stage_metrics,
            running,
        })
    }

    /// Runs until the shutdown it was built with, then drains and commits.
    pub async fn run(self) -> anyhow::Result<()> {
        let kind = self.kind;
        self.running
            .await
            .with_context(|| format!("stage {kind} failed"))
    }
}
