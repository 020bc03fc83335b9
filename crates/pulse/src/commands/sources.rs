//! The live sources as configured: each `[sources.<kind>.<instance>]` built into its
//! source, and run into Kafka with its checkpoint (`pulse ingest reddit|x`, `pulse up`).

use std::time::Duration;

use prometheus_client::registry::Registry;
use pulse_core::config::SourceSection;
use pulse_core::PulseConfig;
use pulse_ingest::live::AnySource;
use pulse_kafka::create_transactional_producer;
use pulse_pipeline::live::{transactional_id, LiveRun};
use pulse_pipeline::metrics::StageMetrics;

/// Instance `instance` of `kind`: its section of the configuration with `overrides`
/// (command-line keys) laid over it.
pub fn build(
    config: &PulseConfig,
    kind: &str,
    instance: &str,
    overrides: SourceSection,
    registry: &mut Registry,
) -> anyhow::Result<AnySource> {
    let sections = match kind {
        "reddit" => &config.sources.reddit,
        "x" => &config.sources.x,
        _ => &config.sources.bluesky,
    };
    let mut section = sections.get(instance).cloned().unwrap_or_default();
    section.extend(overrides);
    Ok(AnySource::build(
        kind,
        instance,
        &section,
        config.enrich.post_limits(),
        registry,
    )?)
}

/// The exactly-once run of one source instance into the raw topic.
pub fn live_run(
    config: &PulseConfig,
    kind: &str,
    instance: &str,
    metrics: StageMetrics,
) -> anyhow::Result<LiveRun> {
    let transactional_id = transactional_id(&config.kafka.client_id, kind, instance);
    let producer = create_transactional_producer(&config.kafka, &transactional_id)?;
    Ok(LiveRun {
        publisher: super::ingest::publisher_with(config, producer, metrics),
        transactional_id,
        checkpoints_topic: config.kafka.topics.checkpoints.clone(),
        kafka: config.kafka.clone(),
        call_timeout: Duration::from_millis(config.kafka.transaction_timeout_ms.min(30_000)),
        drain: Duration::from_millis(config.pipeline.drain_timeout_ms),
        status_every: Duration::from_secs(30),
        // The checkpoint carries the request budget: a killed process's successor must
        // know the requests sent since, so a moved position is committed within a second.
        checkpoint_every: Duration::from_secs(1),
    })
}
