//! `pulse api`: the query API role. Serves until SIGINT/SIGTERM, then stops accepting and
//! finishes the requests in flight.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use prometheus_client::registry::Registry;
use pulse_api::{ApiMetrics, ApiState, Telemetry};
use pulse_core::PulseConfig;
use pulse_pipeline::replay::Replayer;
use pulse_pipeline::PipelineMetrics;
use pulse_speed::SpeedLayer;

use super::{enrich, ingest, sink};
use crate::{shutdown, telemetry};

/// Runs the API role until SIGINT/SIGTERM.
pub async fn run(config: PulseConfig) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown::on_signal()?;
    let enricher = enrich::load_enricher(&config)?;
    // Waits (with backoff) for the CQL cluster, as the batch sink does.
    let Some(batch) = sink::connect_batch(&config, &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let speed = SpeedLayer::connect(&config.speed).context("cannot reach the speed layer")?;
    let mut registry = Registry::default();
    let pipeline_metrics = PipelineMetrics::register(&mut registry);
    let publisher = ingest::publisher(&config, pipeline_metrics.for_stage("api"))?;
    let replayer = Replayer::new(&config, pipeline_metrics)?
        .with_enricher(enricher.clone())
        .with_speed(speed.clone())
        .with_batch(batch.clone());
    let metrics = ApiMetrics::register(&mut registry);
    let registry = Arc::new(registry);
    let state = ApiState::new(
        speed,
        batch,
        enricher,
        config.api.clone(),
        publisher,
        shutdown.clone(),
    )
    .with_replayer(replayer)
    .with_telemetry(Telemetry {
        metrics,
        registry: registry.clone(),
    });
    // The API's own readiness is `/readyz` on its port (both stores answer); the metrics
    // listener's says the role is up and not draining.
    telemetry::serve_metrics(&config.metrics, registry, shutdown.clone())
        .await?
        .ready();
    serve(&config, state).await?;
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
