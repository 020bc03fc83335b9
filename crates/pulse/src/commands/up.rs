//! `pulse up`: every role in one process, for a laptop and the demo, with a status line of
//! live counts.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use pulse_core::PulseConfig;
use pulse_pipeline::metrics::StageMetrics;
use pulse_pipeline::PipelineMetrics;
use tokio_util::sync::CancellationToken;

use super::enrich::EnrichRole;
use super::topics;
use crate::{shutdown, telemetry};

/// Ensures the topics, runs every role, prints counts every few seconds.
pub async fn run(config: PulseConfig) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown::on_signal()?;
    match topics::ensure(&config).await {
        Ok(statuses) => tracing::info!(topics = statuses.len(), "topics ready"),
        Err(error) => tracing::warn!(%error, "cannot ensure topics; roles will retry the broker"),
    }
    let mut registry = Registry::default();
    let metrics = PipelineMetrics::register(&mut registry);
    let enrich = EnrichRole::build(&config, &metrics)?;
    if let Some(address) =
        telemetry::serve_metrics(&config.metrics, registry, shutdown.clone()).await?
    {
        println!("metrics: http://{address}/metrics");
    }
    let status = tokio::spawn(print_status(enrich.metrics.clone(), shutdown.clone()));
    let result = enrich.run(shutdown.clone()).await;
    shutdown.cancel();
    let _ = status.await;
    result?;
    println!("pulse up: stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

async fn print_status(enrich: StageMetrics, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let produced = enrich.emitted.get();
        let rate = (produced - last.1) as f64 / last.0.elapsed().as_secs_f64().max(0.001);
        last = (Instant::now(), produced);
        println!(
            "enrich: consumed {} | enriched {} ({rate:.0}/s) | dead-lettered {}",
            enrich.consumed.get(),
            produced,
            enrich.dead_letters.get(),
        );
    }
}
