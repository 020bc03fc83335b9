//! `pulse sink ...`: the roles that write enriched posts to the stores.

use std::process::ExitCode;

use clap::Subcommand;
use pulse_core::PulseConfig;
use pulse_pipeline::StageKind;

use crate::root::Root;
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
    let stage = match command {
        SinkCommand::Speed => StageKind::SinkSpeed,
        SinkCommand::Batch => StageKind::SinkBatch,
        SinkCommand::Archive => StageKind::SinkArchive,
    };
    Root::new(config, shutdown::on_signal()?)
        .serve_role(stage)
        .await
}
