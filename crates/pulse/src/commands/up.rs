//! `pulse up`: every role in one process (each stage of the catalogue that runs in `up`,
//! the API, the sources configured under `[sources.*]`), for a laptop and the demo, with a
//! status line of live counts. The parts the roles share are built once, by the root.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures::future::join_all;
use pulse_core::PulseConfig;
use pulse_ingest::live::{AnySource, LiveSource};
use pulse_pipeline::metrics::StageMetrics;
use pulse_pipeline::publish::PublishTally;
use pulse_pipeline::StageKind;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{api, sources, topics};
use crate::root::Root;
use crate::{console, shutdown};

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
    let mut root = Root::new(config, shutdown.clone());
    let mut roles = Vec::new();
    for kind in StageKind::ALL {
        if !kind.in_up(root.config()) {
            continue;
        }
        let Some(role) = root.role(kind).await? else {
            return Ok(ExitCode::SUCCESS);
        };
        roles.push(role);
    }
    let Some(api) = root.api().await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let live_sources = start_sources(&mut root)?;
    let (endpoint, registry) = root.serve_metrics().await?;
    if let Some(address) = endpoint.address {
        console::out(format_args!("metrics: http://{address}/metrics"));
    }
    endpoint.ready();
    let api_state = api.with_registry(registry);
    let status = tokio::spawn(print_status(
        roles.iter().map(|role| role.metrics.clone()).collect(),
        shutdown.clone(),
    ));
    let config = root.config();
    let (ran, served) = tokio::join!(
        // Every role runs until the shutdown, even when another one fails, and drains.
        join_all(roles.into_iter().map(|role| role.run())),
        async {
            // An API that cannot serve (address in use) stops the whole process.
            let served = api::serve(config, api_state).await;
            if served.is_err() {
                shutdown.cancel();
            }
            served
        }
    );
    shutdown.cancel();
    let _ = status.await;
    // Every failure is reported, not only the first; any of them fails the process, so a
    // supervisor (systemd, a shell's `&&`) sees that something stopped early.
    let mut failures: Vec<String> = live_sources
        .join_all()
        .await
        .into_iter()
        .flatten()
        .collect();
    failures.extend(
        ran.into_iter()
            .filter_map(Result::err)
            .map(|e| format!("{e:#}")),
    );
    if let Err(error) = served {
        failures.push(format!("api: {error:#}"));
    }
    if let Some((last, others)) = failures.split_last() {
        for failure in others {
            console::err(format_args!("error: {failure}"));
        }
        anyhow::bail!("{last}");
    }
    console::out("pulse up: stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// Starts every source configured under `[sources.*]`. A source that stops with an error
/// (credentials rejected, fenced by another process) is reported when it stops, and its
/// error is its task's outcome; the other roles go on.
fn start_sources(root: &mut Root) -> anyhow::Result<JoinSet<Option<String>>> {
    let mut running = JoinSet::new();
    let config = root.config().clone();
    let limits = config.enrich.post_limits();
    for mut source in AnySource::configured(&config.sources, &limits, root.registry())? {
        let key = format!("{}/{}", source.kind(), source.instance());
        let run = sources::live_run(
            &config,
            source.kind(),
            source.instance(),
            root.metrics().for_stage("ingest"),
        )?;
        let stop = root.shutdown().clone();
        console::out(format_args!("source {key}: starting"));
        running.spawn(async move {
            let tally = PublishTally::default();
            let error = run.run(&mut source, &tally, &stop).await.err()?;
            tracing::error!(source = key, %error, "source stopped");
            Some(format!("source {key}: {error:#}"))
        });
    }
    Ok(running)
}

async fn print_status(stages: Vec<StageMetrics>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    let mut last = (Instant::now(), vec![0u64; stages.len()]);
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
