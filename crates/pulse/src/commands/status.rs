//! `pulse status`: one screen on the deployment the configuration points at: whether the
//! broker, Cassandra and Redis answer, the batch schema against `schema.cql`, the topics and
//! their partitions, each consumer group's lag, the batch watermark, the dead letters of the
//! last hour, and each configured live source's last checkpoint. Reads only.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pulse_batch::BatchStore;
use pulse_core::PulseConfig;
use pulse_ingest::live::checkpoint_key;
use pulse_kafka::replay::{group_partitions, ReplayRange, ReplayReader, ReplayStart};
use pulse_pipeline::StageKind;
use pulse_speed::SpeedLayer;
use serde::Serialize;

use crate::console::{self, Output};

/// Longest wait for any one server's answer: a status that hangs on a dead server is no
/// status.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The group that reads topics for the status without ever committing (it joins no group).
const READER_GROUP: &str = "pulse-status";

/// Everything `pulse status` reports.
#[derive(Debug, Serialize)]
struct Status {
    kafka: Server,
    cassandra: Server,
    redis: Server,
    /// `schema.cql` against the keyspace: `up to date`, or what `pulse schema apply` adds.
    schema: String,
    topics: Vec<Topic>,
    groups: Vec<Group>,
    /// Up to when the batch rollups are exact; none before the first recompute.
    watermark: Option<DateTime<Utc>>,
    /// Records on the DLQ stamped in the last hour (transaction markers included).
    dead_letters_last_hour: Option<i64>,
    sources: Vec<Source>,
}

#[derive(Debug, Serialize)]
struct Server {
    address: String,
    answers: bool,
    /// What it said, or why it did not answer.
    detail: String,
}

#[derive(Debug, Serialize)]
struct Topic {
    name: String,
    partitions: Option<usize>,
    /// Offsets held (records and transaction markers).
    offsets: Option<i64>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Group {
    stage: &'static str,
    group: String,
    topic: String,
    /// Offsets not yet committed by the group, over every partition.
    lag: Option<i64>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Source {
    source: String,
    /// When its last checkpoint was committed: it ran then.
    last_checkpoint: Option<DateTime<Utc>>,
}

/// Prints the status; exits 1 when a server does not answer or the schema is not applied.
pub async fn run(config: PulseConfig, output: Output) -> anyhow::Result<ExitCode> {
    let (kafka, (cassandra, schema, watermark), redis) =
        tokio::join!(kafka(&config), batch(&config), redis(&config));
    let (topics, groups, dead_letters_last_hour, sources) = if kafka.answers {
        let (topics, groups, dead_letters, sources) = tokio::join!(
            topics(&config),
            groups(&config),
            dead_letters(&config),
            sources(&config)
        );
        (topics, groups, dead_letters, sources)
    } else {
        (Vec::new(), Vec::new(), None, Vec::new())
    };
    let healthy = kafka.answers && cassandra.answers && redis.answers && schema == "up to date";
    let status = Status {
        kafka,
        cassandra,
        redis,
        schema,
        topics,
        groups,
        watermark,
        dead_letters_last_hour,
        sources,
    };
    output.result(&status, || describe(&status, Utc::now()))?;
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `work`, or its error as text; a timeout when it takes longer than [`ANSWER_WITHIN`].
async fn answer<T, E: std::fmt::Display>(
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(ANSWER_WITHIN, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {} s", ANSWER_WITHIN.as_secs())),
    }
}

async fn kafka(config: &PulseConfig) -> Server {
    let kafka = config.kafka.clone();
    let brokers = answer(async move {
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::{BaseConsumer, Consumer};
            let consumer: BaseConsumer =
                pulse_kafka::client::consumer_config(&kafka, READER_GROUP).create()?;
            let metadata = consumer.fetch_metadata(None, ANSWER_WITHIN)?;
            Ok::<_, rdkafka::error::KafkaError>(metadata.brokers().len())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    })
    .await;
    server(
        &config.kafka.brokers,
        brokers.map(|n| format!("{n} broker(s)")),
    )
}

async fn batch(config: &PulseConfig) -> (Server, String, Option<DateTime<Utc>>) {
    let address = config.batch.nodes.clone();
    let diff = match answer(pulse_batch::schema::compare(&config.batch)).await {
        Ok(diff) => diff,
        Err(error) => return (server(&address, Err(error)), "unknown".into(), None),
    };
    let keyspace = &config.batch.keyspace;
    let schema = if diff.is_up_to_date() {
        "up to date".to_string()
    } else if diff.keyspace_missing {
        format!("keyspace {keyspace} missing: run `pulse schema apply`")
    } else {
        let missing: Vec<String> = diff
            .tables_missing
            .iter()
            .map(|t| t.name.clone())
            .chain(
                diff.columns_missing
                    .iter()
                    .map(|(t, c, _)| format!("{t}.{c}")),
            )
            .collect();
        format!(
            "behind schema.cql ({} missing): run `pulse schema apply`",
            missing.join(", ")
        )
    };
    let watermark = if diff.is_up_to_date() {
        answer(async {
            let store = BatchStore::connect(&config.batch).await?;
            store.watermark().await
        })
        .await
        .ok()
        .flatten()
    } else {
        None
    };
    let detail = format!("keyspace {keyspace}, {} tables", diff.tables_present.len());
    (server(&address, Ok(detail)), schema, watermark)
}

async fn redis(config: &PulseConfig) -> Server {
    let channels = answer(async {
        let layer = SpeedLayer::connect(&config.speed)?;
        layer.channels().await
    })
    .await;
    server(
        &config.speed.redis_url,
        channels.map(|c| {
            format!(
                "{} channel(s) under prefix {}",
                c.len(),
                config.speed.key_prefix
            )
        }),
    )
}

fn server(address: &str, answer: Result<String, String>) -> Server {
    let (answers, detail) = match answer {
        Ok(detail) => (true, detail),
        Err(error) => (false, error),
    };
    Server {
        address: address.to_string(),
        answers,
        detail,
    }
}

async fn topics(config: &PulseConfig) -> Vec<Topic> {
    let names = &config.kafka.topics;
    let mut topics = Vec::new();
    for name in [&names.raw, &names.enriched, &names.dlq, &names.checkpoints] {
        let since = Utc::now();
        let read = answer(group_partitions(&config.kafka, READER_GROUP, name, since)).await;
        topics.push(match read {
            Ok(partitions) => Topic {
                name: name.clone(),
                partitions: Some(partitions.len()),
                offsets: Some(partitions.iter().map(|p| p.high - p.low).sum()),
                error: None,
            },
            Err(error) => Topic {
                name: name.clone(),
                partitions: None,
                offsets: None,
                error: Some(error),
            },
        });
    }
    topics
}

async fn groups(config: &PulseConfig) -> Vec<Group> {
    let mut groups = Vec::new();
    for kind in StageKind::ALL {
        let (group, topic) = (kind.group(config), kind.input_topic(&config.kafka.topics));
        let read = answer(group_partitions(&config.kafka, group, topic, Utc::now())).await;
        let (lag, error) = match read {
            // A partition the group never committed counts from its start.
            Ok(partitions) => (
                Some(
                    partitions
                        .iter()
                        .map(|p| p.high - p.committed.unwrap_or(p.low).max(p.low))
                        .sum(),
                ),
                None,
            ),
            Err(error) => (None, Some(error)),
        };
        groups.push(Group {
            stage: kind.name(),
            group: group.to_string(),
            topic: topic.to_string(),
            lag,
            error,
        });
    }
    groups
}

async fn dead_letters(config: &PulseConfig) -> Option<i64> {
    let since = Utc::now() - chrono::Duration::hours(1);
    let dlq = &config.kafka.topics.dlq;
    let partitions = answer(group_partitions(&config.kafka, READER_GROUP, dlq, since))
        .await
        .ok()?;
    Some(partitions.iter().map(|p| p.high - p.since).sum())
}

/// Each configured source with the time of its last committed checkpoint.
async fn sources(config: &PulseConfig) -> Vec<Source> {
    let configured: Vec<String> = [
        ("reddit", &config.sources.reddit),
        ("x", &config.sources.x),
        ("bluesky", &config.sources.bluesky),
    ]
    .into_iter()
    .flat_map(|(kind, instances)| instances.keys().map(move |name| checkpoint_key(kind, name)))
    .collect();
    if configured.is_empty() {
        return Vec::new();
    }
    let times = answer(checkpoint_times(config)).await.unwrap_or_default();
    configured
        .into_iter()
        .map(|source| Source {
            last_checkpoint: times.get(&source).copied(),
            source,
        })
        .collect()
}

/// The time of the last checkpoint of every source instance on the checkpoints topic.
async fn checkpoint_times(
    config: &PulseConfig,
) -> Result<BTreeMap<String, DateTime<Utc>>, pulse_kafka::replay::ReplayError> {
    let range = ReplayRange {
        topic: config.kafka.topics.checkpoints.clone(),
        start: ReplayStart::Offset(0),
        end: None,
    };
    let mut reader = ReplayReader::open(&config.kafka, range).await?;
    let mut times = BTreeMap::new();
    while let Some(records) = reader.next_batch(1_000, Duration::from_millis(50)).await? {
        for record in records {
            let (Some(key), Some(millis)) = (record.key, record.timestamp_ms) else {
                continue;
            };
            if let Some(at) = DateTime::from_timestamp_millis(millis) {
                times.insert(String::from_utf8_lossy(&key).into_owned(), at);
            }
        }
    }
    Ok(times)
}

/// `at` as a person reads it next to now: `12 s ago`, `3 min ago`, `2 h ago`.
fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    match seconds {
        s if s < 0 => "in the future".to_string(),
        s if s < 120 => format!("{s} s ago"),
        s if s < 7_200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3_600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// The one screen.
fn describe(status: &Status, now: DateTime<Utc>) -> String {
    let server = |name: &str, server: &Server| {
        let state = if server.answers {
            "answers"
        } else {
            "DOES NOT ANSWER"
        };
        format!("{name:<11}{:<26}{state}: {}", server.address, server.detail)
    };
    let mut lines = vec![
        server("kafka", &status.kafka),
        server("cassandra", &status.cassandra),
        server("redis", &status.redis),
        format!("{:<11}{}", "schema", status.schema),
    ];
    for topic in &status.topics {
        lines.push(match (&topic.error, topic.partitions, topic.offsets) {
            (None, Some(partitions), Some(offsets)) => format!(
                "{:<11}{:<26}{partitions} partition(s), {offsets} offsets",
                "topic", topic.name
            ),
            (error, ..) => format!(
                "{:<11}{:<26}{}",
                "topic",
                topic.name,
                error.as_deref().unwrap_or("unknown")
            ),
        });
    }
    for group in &status.groups {
        let lag = match (&group.error, group.lag) {
            (None, Some(lag)) => format!("lag {lag} on {}", group.topic),
            (error, _) => error.clone().unwrap_or_default(),
        };
        lines.push(format!(
            "{:<11}{:<26}{lag} ({})",
            "group", group.group, group.stage
        ));
    }
    lines.push(format!(
        "{:<11}{}",
        "watermark",
        status.watermark.map_or_else(
            || "none (no recompute yet: `pulse batch recompute`)".to_string(),
            |at| format!("{} ({})", at.to_rfc3339(), ago(at, now))
        )
    ));
    lines.push(format!(
        "{:<11}{}",
        "dead letters",
        status
            .dead_letters_last_hour
            .map_or("unknown".to_string(), |n| format!("{n} in the last hour")),
    ));
    if status.sources.is_empty() {
        lines.push(format!("{:<11}none configured ([sources.*])", "sources"));
    }
    for source in &status.sources {
        lines.push(format!(
            "{:<11}{:<26}{}",
            "source",
            source.source,
            source.last_checkpoint.map_or_else(
                || "no checkpoint yet (never ran)".to_string(),
                |at| format!("last checkpoint {}", ago(at, now))
            )
        ));
    }
    if !status.kafka.answers {
        console::err("the broker does not answer: topics, groups and sources are not shown");
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_a_person_says_them() {
        let now = Utc::now();
        let at = |seconds: i64| now - chrono::Duration::seconds(seconds);
        assert_eq!(ago(at(12), now), "12 s ago");
        assert_eq!(ago(at(600), now), "10 min ago");
        assert_eq!(ago(at(3 * 3_600 + 5), now), "3 h ago");
        assert_eq!(ago(at(5 * 86_400), now), "5 days ago");
        assert_eq!(ago(at(-5), now), "in the future");
    }
}
