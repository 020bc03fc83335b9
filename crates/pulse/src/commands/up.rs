//! `pulse up`: every role in one process (enrich, both sinks, the API, the sources
//! configured under `[sources.*]`), for a laptop and the demo, with a status line of live
//! counts.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use pulse_api::{ApiMetrics, ApiState, Telemetry};
use pulse_core::PulseConfig;
use pulse_ingest::live::{AnySource, LiveSource};
use pulse_pipeline::metrics::StageMetrics;
use pulse_pipeline::publish::PublishTally;
use pulse_pipeline::replay::Replayer;
use pulse_pipeline::PipelineMetrics;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use pulse_speed::SpeedLayer;

use super::{api, enrich, ingest, sink, sources, topics};
use crate::{console, shutdown, telemetry};

/// Ensures the topics, runs every role, prints counts every few seconds.
pub async fn run(config: PulseConfig) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown::on_signal()?;
    match topics::ensure(&config).await {
        Ok(statuses) => tracing::info!(topics = statuses.len(), "topics ready"),
        Err(error) => tracing::warn!(%error, "cannot ensure topics; roles will retry the broker"),
    }
    match pulse_batch::schema::apply(&config.batch).await {
        Ok(report) => tracing::info!(
            keyspace = config.batch.keyspace,
            created = report.tables_created.len(),
            "batch schema ready"
        ),
        Err(error) => tracing::warn!(%error, "cannot apply the batch schema; retrying to connect"),
    }
    let Some(store) = sink::connect_batch(&config, &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut registry = Registry::default();
    let metrics = PipelineMetrics::register(&mut registry);
    // One enricher (one session per model) for the enrich stage and the API's analysis.
    let enricher = enrich::load_enricher(&config)?;
    let enrich = enrich::build(&config, &metrics, enricher.clone())?;
    let speed = sink::build_speed(&config, &metrics, &shutdown)?;
    let batch = sink::build_batch(&config, &metrics, store.clone())?;
    let api_metrics = ApiMetrics::register(&mut registry);
    let live_sources = start_sources(&config, &mut registry, &metrics, &shutdown)?;
    let registry = Arc::new(registry);
    let speed_layer = SpeedLayer::connect(&config.speed)?;
    let replayer = Replayer::new(&config, metrics.clone())?
        .with_enricher(enricher.clone())
        .with_speed(speed_layer.clone())
        .with_batch(store.clone());
    let api_state = ApiState::new(
        speed_layer,
        store,
        enricher,
        config.api.clone(),
        ingest::publisher(&config, metrics.for_stage("api"))?,
        shutdown.clone(),
    )
    .with_replayer(replayer)
    .with_telemetry(Telemetry {
        metrics: api_metrics,
        registry: registry.clone(),
    });
    let endpoint = telemetry::serve_metrics(&config.metrics, registry, shutdown.clone()).await?;
    if let Some(address) = endpoint.address {
        console::out(format_args!("metrics: http://{address}/metrics"));
    }
    endpoint.ready();
    let status = tokio::spawn(print_status(
        [
            enrich.metrics.clone(),
            speed.metrics.clone(),
            batch.metrics.clone(),
        ],
        shutdown.clone(),
    ));
    let (enriched, applied, written, served) = tokio::join!(
        enrich.run(shutdown.clone()),
        speed.run(shutdown.clone()),
        batch.run(shutdown.clone()),
        async {
            // An API that cannot serve (address in use) stops the whole process.
            let served = api::serve(&config, api_state).await;
            if served.is_err() {
                shutdown.cancel();
            }
            served
        }
    );
    shutdown.cancel();
    let _ = status.await;
    live_sources.join_all().await;
    enriched?;
    applied?;
    written?;
    served?;
    console::out("pulse up: stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// Starts every source configured under `[sources.*]`. A source that stops with an error
/// (credentials rejected, fenced by another process) is reported; the other roles go on.
fn start_sources(
    config: &PulseConfig,
    registry: &mut Registry,
    metrics: &PipelineMetrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinSet<()>> {
    let mut running = JoinSet::new();
    let limits = config.enrich.post_limits();
    for mut source in AnySource::configured(&config.sources, &limits, registry)? {
        let key = format!("{}/{}", source.kind(), source.instance());
        let run = sources::live_run(
            config,
            source.kind(),
            source.instance(),
            metrics.for_stage("ingest"),
        )?;
        let stop = shutdown.clone();
        console::out(format_args!("source {key}: starting"));
        running.spawn(async move {
            let tally = PublishTally::default();
            if let Err(error) = run.run(&mut source, &tally, &stop).await {
                tracing::error!(%error, "source stopped");
                console::out(format_args!("source {key} stopped: {error}"));
            }
        });
    }
    Ok(running)
}

async fn print_status(stages: [StageMetrics; 3], shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    let mut last = (Instant::now(), [0u64; 3]);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let seconds = last.0.elapsed().as_secs_f64().max(0.001);
        let line: Vec<String> = stages
            .iter()
            .zip(last.1.iter_mut())
            .map(|(stage, previous)| {
                let consumed = stage.consumed.get();
                let rate = (consumed - *previous) as f64 / seconds;
                *previous = consumed;
                format!(
                    "{}: consumed {consumed} ({rate:.0}/s), dead-lettered {}",
                    stage.name(),
                    stage.dead_letters.get()
                )
            })
            .collect();
        last.0 = Instant::now();
        console::out(line.join(" | "));
    }
}
