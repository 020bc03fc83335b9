//! `pulse enrich`: the enrich role.

use std::process::ExitCode;

use pulse_core::PulseConfig;
use pulse_pipeline::StageKind;

use crate::root::Root;
use crate::shutdown;

/// Runs the enrich role until SIGINT/SIGTERM.
pub async fn run(config: PulseConfig) -> anyhow::Result<ExitCode> {
    Root::new(config, shutdown::on_signal()?)
        .serve_role(StageKind::Enrich)
        .await
}
