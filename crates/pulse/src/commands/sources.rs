//! The live sources as configured: each `[sources.<kind>.<instance>]` built into its
//! source, and run into Kafka with its checkpoint (`pulse ingest reddit`, `pulse up`).

use std::time::Duration;

use prometheus_client::registry::Registry;
use pulse_core::config::SourceSection;
use pulse_core::PulseConfig;
use pulse_ingest::live::SourceMetrics;
use pulse_ingest::reddit::{RedditConfig, RedditSource};
use pulse_kafka::create_transactional_producer;
use pulse_pipeline::live::{transactional_id, LiveRun};
use pulse_pipeline::metrics::StageMetrics;
use pulse_pipeline::publish::Publisher;

/// A Reddit instance: its section of the configuration, `overrides` (command-line keys)
/// laid over it.
pub fn reddit(
    config: &PulseConfig,
    instance: &str,
    overrides: SourceSection,
    registry: &mut Registry,
) -> anyhow::Result<RedditSource> {
    let mut section = config
        .sources
        .reddit
        .get(instance)
        .cloned()
        .unwrap_or_default();
    section.extend(overrides);
    let reddit = RedditConfig::from_section(instance, &section)?;
    let metrics = SourceMetrics::register(registry, "reddit", instance);
    Ok(RedditSource::new(
        instance,
        reddit,
        config.enrich.post_limits(),
        metrics,
    )?)
}

/// Every configured Reddit instance, for `pulse up`.
pub fn configured_reddit(
    config: &PulseConfig,
    registry: &mut Registry,
) -> anyhow::Result<Vec<RedditSource>> {
    config
        .sources
        .reddit
        .keys()
        .map(|instance| reddit(config, instance, SourceSection::new(), registry))
        .collect()
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
        publisher: Publisher {
            producer,
            raw_topic: config.kafka.topics.raw.clone(),
            dlq_topic: config.kafka.topics.dlq.clone(),
            limits: config.enrich.post_limits(),
            max_in_flight: config.ingest.max_in_flight,
            max_record_bytes: config.kafka.max_record_bytes,
            metrics,
        },
        transactional_id,
        checkpoints_topic: config.kafka.topics.checkpoints.clone(),
        kafka: config.kafka.clone(),
        call_timeout: Duration::from_millis(config.kafka.transaction_timeout_ms.min(30_000)),
        drain: Duration::from_millis(config.pipeline.drain_timeout_ms),
        status_every: Duration::from_secs(30),
    })
}
