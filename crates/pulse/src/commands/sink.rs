//! `pulse sink ...`: the roles that write enriched posts to the stores.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use pulse_batch::{BatchError, BatchStore};
use pulse_core::PulseConfig;
use pulse_pipeline::{
    ArchiveSinkStage, BatchSinkStage, PipelineMetrics, SpeedRecovery, SpeedSinkStage,
};
use pulse_speed::SpeedLayer;
use tokio_util::sync::CancellationToken;

use super::role::{self, StageRole};
use crate::shutdown;

#[derive(Debug, Subcommand)]
pub enum SinkCommand {
    /// Enriched posts into the Redis speed layer (live windows, top terms, feed).
    Speed,
    /// Enriched posts into the Cassandra/ScyllaDB history (posts, mentions).
    Batch,
    /// Enriched posts into hourly Parquet files under `archive.dir`, by channel and hour.
    Archive,
}

/// Runs a sink role until SIGINT/SIGTERM.
pub async fn run(command: SinkCommand, config: PulseConfig) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown::on_signal()?;
    match command {
        SinkCommand::Speed => {
            let stopping = shutdown.clone();
            role::serve(&config, shutdown, |config, metrics| {
                build_speed(config, metrics, &stopping)
            })
            .await
        }
        SinkCommand::Batch => {
            let Some(store) = connect_batch(&config, &shutdown).await? else {
                return Ok(ExitCode::SUCCESS);
            };
            role::serve(&config, shutdown, |config, metrics| {
                build_batch(config, metrics, store)
            })
            .await
        }
        SinkCommand::Archive => role::serve(&config, shutdown, build_archive).await,
    }
}

/// The speed sink: enriched topic into Redis, in group `speed.group`, checking before each
/// batch (and every few seconds while idle, until `shutdown`) that Redis still holds what
/// the group committed.
pub fn build_speed(
    config: &PulseConfig,
    metrics: &PipelineMetrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<StageRole<SpeedSinkStage>> {
    let layer = SpeedLayer::connect(&config.speed)?;
    let recovery = Arc::new(SpeedRecovery::new(
        config,
        layer.clone(),
        metrics.clone(),
        shutdown.clone(),
    )?);
    tokio::spawn(recovery.clone().watch());
    let stage = SpeedSinkStage::new(layer).with_recovery(recovery);
    StageRole::build(config, metrics, stage)
}

/// The batch sink: enriched topic into the batch layer, in group `batch.group`.
pub fn build_batch(
    config: &PulseConfig,
    metrics: &PipelineMetrics,
    store: BatchStore,
) -> anyhow::Result<StageRole<BatchSinkStage>> {
    StageRole::build(config, metrics, BatchSinkStage::new(store))
}

/// The archive sink: enriched topic into Parquet files under `archive.dir`, in group
/// `archive.group`, with the archive's batching.
pub fn build_archive(
    config: &PulseConfig,
    metrics: &PipelineMetrics,
) -> anyhow::Result<StageRole<ArchiveSinkStage>> {
    std::fs::create_dir_all(&config.archive.dir).with_context(|| {
        format!(
            "cannot create the archive folder {}",
            config.archive.dir.display()
        )
    })?;
    StageRole::build(config, metrics, ArchiveSinkStage::new(&config.archive))
}

/// Connects to the batch layer, retrying with backoff while no node answers or the schema
/// is missing, so the role can start before its database. `None` if shut down meanwhile.
pub async fn connect_batch(
    config: &PulseConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<BatchStore>> {
    let mut backoff = Duration::from_millis(500);
    loop {
        match BatchStore::connect(&config.batch).await {
            Ok(store) => return Ok(Some(store)),
            Err(error @ BatchError::Config(_)) => return Err(error.into()),
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "batch layer unavailable");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
