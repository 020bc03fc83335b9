//! `pulse api`: the query API role. Serves until SIGINT/SIGTERM, then stops accepting and
//! finishes the requests in flight.

use std::process::ExitCode;

use anyhow::Context;
use pulse_api::ApiState;
use pulse_core::PulseConfig;

use crate::root::Root;
use crate::shutdown;

/// Runs the API role until SIGINT/SIGTERM.
pub async fn run(config: PulseConfig) -> anyhow::Result<ExitCode> {
    let mut root = Root::new(config, shutdown::on_signal()?);
    // Waits (with backoff) for the CQL cluster, as the batch sink does.
    let Some(api) = root.api().await? else {
        return Ok(ExitCode::SUCCESS);
    };
    // The API's own readiness is `/readyz` on its port (both stores answer); the metrics
    // listener's says the role is up and not draining.
    let (endpoint, registry) = root.serve_metrics().await?;
    endpoint.ready();
    serve(root.config(), api.with_registry(registry)).await?;
    Ok(ExitCode::SUCCESS)
}

/// Serves the API on `api.listen` until `shutdown` (the token the state carries), then
/// stops accepting and finishes the requests in flight.
pub async fn serve(config: &PulseConfig, state: ApiState) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.api.listen))?;
    // Printed, not only logged: with port 0 this is how callers learn the port.
    let address = listener.local_addr()?;
    tracing::info!(%address, "api listening");
    crate::console::out(format_args!("api: http://{address}/api/v1"));
    pulse_api::serve(listener, state).await?;
    tracing::info!("api stopped");
    Ok(())
}
