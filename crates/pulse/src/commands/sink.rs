//! `pulse sink ...`: the roles that write enriched posts to the stores.

use std::process::ExitCode;

use clap::Subcommand;
use pulse_core::PulseConfig;
use pulse_pipeline::{PipelineMetrics, SpeedSinkStage};
use pulse_speed::SpeedLayer;

use super::role::{self, StageRole};

#[derive(Debug, Subcommand)]
pub enum SinkCommand {
    /// Enriched posts into the Redis speed layer (live windows, top terms, feed).
    Speed,
}

/// Runs a sink role until SIGINT/SIGTERM.
pub async fn run(command: SinkCommand, config: PulseConfig) -> anyhow::Result<ExitCode> {
    match command {
        SinkCommand::Speed => role::serve(&config, build_speed).await,
    }
}

/// The speed sink: enriched topic into Redis, in group `speed.group`.
pub fn build_speed(
    config: &PulseConfig,
    metrics: &PipelineMetrics,
) -> anyhow::Result<StageRole<SpeedSinkStage>> {
    let stage = SpeedSinkStage::new(SpeedLayer::connect(&config.speed)?);
    StageRole::build(
        config,
        metrics,
        stage,
        &config.speed.group,
        &config.kafka.topics.enriched,
    )
}
