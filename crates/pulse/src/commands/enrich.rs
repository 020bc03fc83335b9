//! `pulse enrich`: the enrich role.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use pulse_core::PulseConfig;
use pulse_nlp::Enricher;
use pulse_pipeline::{EnrichStage, PipelineMetrics};

use super::role::{self, StageRole};
use crate::shutdown;

/// Runs the enrich role until SIGINT/SIGTERM.
pub async fn run(config: PulseConfig) -> anyhow::Result<ExitCode> {
    let enricher = load_enricher(&config)?;
    role::serve(&config, shutdown::on_signal()?, |config, metrics| {
        build(config, metrics, enricher)
    })
    .await
}

/// The process's enricher: the models of `enrich.models`, each one session.
pub fn load_enricher(config: &PulseConfig) -> anyhow::Result<Arc<Enricher>> {
    // Session creation reads and optimises the graph (a second or so): off the runtime's
    // worker, once per process.
    let enricher = tokio::task::block_in_place(|| Enricher::new(&config.enrich))
        .context("cannot load the enrichment models (enrich.models)")?;
    tracing::info!(model = enricher.model_name(), "enricher ready");
    Ok(Arc::new(enricher))
}

/// The enrich stage: raw topic in, enriched topic out, in group `enrich.group`.
pub fn build(
    config: &PulseConfig,
    metrics: &PipelineMetrics,
    enricher: Arc<Enricher>,
) -> anyhow::Result<StageRole<EnrichStage>> {
    let topics = &config.kafka.topics;
    let stage = EnrichStage::new(
        enricher,
        config.enrich.post_limits(),
        topics.enriched.clone(),
    );
    StageRole::build(config, metrics, stage)
}
