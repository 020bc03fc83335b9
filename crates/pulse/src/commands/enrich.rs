//! `pulse enrich`: the enrich role.

use std::process::ExitCode;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use pulse_core::PulseConfig;
use pulse_nlp::Enricher;
use pulse_pipeline::{EnrichStage, PipelineMetrics};

use super::role::StageRole;
use crate::{shutdown, telemetry};

/// Runs the enrich role until SIGINT/SIGTERM.
pub async fn run(config: PulseConfig) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown::on_signal()?;
    let mut registry = Registry::default();
    let metrics = PipelineMetrics::register(&mut registry);
    let role = build(&config, &metrics)?;
    telemetry::serve_metrics(&config.metrics, registry, shutdown.clone()).await?;
    role.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// The enrich stage: raw topic in, enriched topic out, in group `enrich.group`.
pub fn build(
    config: &PulseConfig,
    metrics: &PipelineMetrics,
) -> anyhow::Result<StageRole<EnrichStage>> {
    let topics = &config.kafka.topics;
    let stage = EnrichStage::new(
        Arc::new(Enricher::new(&config.enrich)),
        config.enrich.post_limits(),
        topics.enriched.clone(),
    );
    StageRole::build(config, metrics, stage, &config.enrich.group, &topics.raw)
}
