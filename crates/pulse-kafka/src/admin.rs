//! Topic creation: idempotent, so every start can ensure its topics exist.

use std::time::Duration;

use pulse_core::config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;

use crate::client::with_overrides;

/// A topic that could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach the brokers: {0}")]
    Client(#[from] KafkaError),
    #[error("cannot create topic {topic}: {code}")]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// What happened to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicStatus {
    Created,
    AlreadyExists,
}

/// Creates `topics` with the configured partitions and replication; existing topics are
/// left as they are.
pub async fn create_topics(
    config: &KafkaConfig,
    topics: &[&str],
) -> Result<Vec<(String, TopicStatus)>, AdminError> {
    create(config, topics, &[]).await
}

/// Creates `topic` compacted (only the last record of each key is kept for good), with one
/// partition: it holds a few small records (checkpoints), read whole at every start.
pub async fn create_compacted_topic(
    config: &KafkaConfig,
    topic: &str,
) -> Result<TopicStatus, AdminError> {
    let compacted = KafkaConfig {
        partitions: 1,
        ..config.clone()
    };
    let mut statuses = create(&compacted, &[topic], &[("cleanup.policy", "compact")]).await?;
    Ok(statuses
        .pop()
        .map_or(TopicStatus::AlreadyExists, |(_, status)| status))
}

async fn create(
    config: &KafkaConfig,
    topics: &[&str],
    settings: &[(&str, &str)],
) -> Result<Vec<(String, TopicStatus)>, AdminError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id);
    let admin: AdminClient<DefaultClientContext> = with_overrides(client, config).create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            settings.iter().fold(
                NewTopic::new(
                    name,
                    config.partitions,
                    TopicReplication::Fixed(config.replication_factor),
                ),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new_topics, &options).await?;
    let mut statuses = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(topic) => statuses.push((topic, TopicStatus::Created)),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                statuses.push((topic, TopicStatus::AlreadyExists))
            }
            Err((topic, code)) => return Err(AdminError::Create { topic, code }),
        }
    }
    Ok(statuses)
}
