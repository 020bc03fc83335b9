//! `pulse topics create`.

use std::process::ExitCode;

use pulse_core::PulseConfig;
use pulse_kafka::admin::{create_compacted_topic, create_topics, TopicStatus};
use serde_json::json;

use crate::console::Output;

/// Creates the raw, enriched and DLQ topics and prints what happened to each.
pub async fn create(config: &PulseConfig, output: Output) -> anyhow::Result<ExitCode> {
    for (topic, status) in ensure(config).await? {
        let status = match status {
            TopicStatus::Created => "created",
            TopicStatus::AlreadyExists => "exists",
        };
        output.result(&json!({ "topic": topic, "status": status }), || {
            format!("{topic}: {status}")
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates whichever of Pulse's topics are missing (the sources' checkpoints topic is
/// compacted).
pub async fn ensure(config: &PulseConfig) -> anyhow::Result<Vec<(String, TopicStatus)>> {
    let topics = &config.kafka.topics;
    let mut statuses =
        create_topics(&config.kafka, &[&topics.raw, &topics.enriched, &topics.dlq]).await?;
    let checkpoints = create_compacted_topic(&config.kafka, &topics.checkpoints).await?;
    statuses.push((topics.checkpoints.clone(), checkpoints));
    Ok(statuses)
}
