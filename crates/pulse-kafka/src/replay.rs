//! Replay: a bounded re-read of a topic, from an offset or a time, up to a time or up to
//! the end the topic had when the replay began. It reads by assignment, outside any
//! consumer group: nothing is committed and no running stage's position moves. What the
//! records are replayed into is the caller's business (`pulse-pipeline` hands them to a
//! stage).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pulse_core::config::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::client::consumer_config;

/// Broker calls made while planning.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read waits for a record before checking whether the partitions are done
/// (the last offsets of a range can be transaction markers, which are never delivered).
const IDLE: Duration = Duration::from_millis(500);

/// Where a replay starts in every partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayStart {
    /// This offset of each partition (clamped to what the partition holds); a negative
    /// offset counts back from the partition's end.
    Offset(i64),
    /// An offset per partition, as [`ReplayStart::Offset`] (a report's `resume_at`);
    /// partitions not named are not replayed.
    Offsets(BTreeMap<i32, i64>),
    /// The first record of each partition stamped at or after this time.
    Time(DateTime<Utc>),
}

/// What to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRange {
    pub topic: String,
    pub start: ReplayStart,
    /// Records stamped at or after this time are not replayed; `None`: up to the end the
    /// topic had when the replay began.
    pub end: Option<DateTime<Utc>>,
}

/// The offsets of one partition a replay reads: `from` up to, not including, `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartitionSpan {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

impl PartitionSpan {
    /// Offsets in the span: the records, unless some are transaction markers.
    pub fn len(&self) -> u64 {
        (self.to - self.from).max(0) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a replay cannot be planned or read.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("the end {end} is before the start {start}")]
    EndBeforeStart {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the replay reader task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A replayed record.
#[derive(Debug, Clone)]
pub struct ReplayRecord {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp, in milliseconds since the Unix epoch, when it has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// Reads the records of a [`ReplayRange`], in batches, until every partition's span is
/// read.
pub struct ReplayReader {
    consumer: StreamConsumer,
    topic: String,
    spans: Vec<PartitionSpan>,
    /// Next offset to read, per partition not finished yet.
    next: BTreeMap<i32, i64>,
    /// An error met after records of a batch were read: returned by the next call, once
    /// those records are handed out.
    deferred: Option<ReplayError>,
}

impl ReplayReader {
    /// Resolves `range` against the broker (offsets of the start and end times, watermarks)
    /// and positions a consumer at the start of every partition.
    pub async fn open(config: &KafkaConfig, range: ReplayRange) -> Result<Self, ReplayError> {
        if let (ReplayStart::Time(start), Some(end)) = (&range.start, range.end) {
            let start = *start;
            if end < start {
                return Err(ReplayError::EndBeforeStart { start, end });
            }
        }
        let client = consumer_config(config, &format!("{}-replay", config.client_id));
        tokio::task::spawn_blocking(move || {
            let consumer: StreamConsumer = client.create()?;
            let spans = plan(&consumer, &range)?;
            let mut assignment = TopicPartitionList::new();
            for span in &spans {
                assignment.add_partition_offset(
                    &range.topic,
                    span.partition,
                    Offset::Offset(span.from),
                )?;
            }
            consumer.assign(&assignment)?;
            let next = spans
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| (s.partition, s.from))
                .collect();
            Ok(ReplayReader {
                consumer,
                topic: range.topic,
                spans,
                next,
                deferred: None,
            })
        })
        .await?
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// What is read of each partition.
    pub fn spans(&self) -> &[PartitionSpan] {
        &self.spans
    }

    /// Offsets to read over all partitions (records, but for transaction markers).
    pub fn total(&self) -> u64 {
        self.spans.iter().map(PartitionSpan::len).sum()
    }

    /// The next offset of each partition: where a replay stopped early would resume.
    pub fn positions(&self) -> BTreeMap<i32, i64> {
        self.spans
            .iter()
            .map(|s| {
                (
                    s.partition,
                    self.next.get(&s.partition).copied().unwrap_or(s.to),
                )
            })
            .collect()
    }

    /// Up to `max` records, waiting at most `wait` for more once one arrived; `None` once
    /// every partition is read. Broker errors are returned; calling again goes on.
    pub async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Option<Vec<ReplayRecord>>, ReplayError> {
        if let Some(error) = self.deferred.take() {
            return Err(error);
        }
        let mut batch = Vec::new();
        if let Err(error) = self.read_into(&mut batch, max, wait).await {
            if batch.is_empty() {
                return Err(error);
            }
            // The records read before the error count as read: dropped with it, they would
            // never be replayed.
            self.deferred = Some(error);
        }
        Ok(if batch.is_empty() && self.next.is_empty() {
            None
        } else {
            Some(batch)
        })
    }

    /// Reads into `batch` as [`ReplayReader::next_batch`] describes; on an error, `batch`
    /// keeps what was read before it.
    async fn read_into(
        &mut self,
        batch: &mut Vec<ReplayRecord>,
        max: usize,
        wait: Duration,
    ) -> Result<(), ReplayError> {
        let mut deadline = None;
        while !self.next.is_empty() && batch.len() < max.max(1) {
            let timeout = deadline
                .map(|d: tokio::time::Instant| {
                    d.saturating_duration_since(tokio::time::Instant::now())
                })
                .unwrap_or(IDLE);
            let message = match tokio::time::timeout(timeout, self.consumer.recv()).await {
                Ok(message) => message?,
                Err(_) if deadline.is_some() => break,
                Err(_) => {
                    self.finish_passed_partitions()?;
                    continue;
                }
            };
            let partition = message.partition();
            let offset = message.offset();
            let Some(span) = self
                .spans
                .iter()
                .find(|s| s.partition == partition)
                .copied()
            else {
                continue;
            };
            if !self.next.contains_key(&partition) || offset >= span.to {
                self.finish(partition)?;
                continue;
            }
            batch.push(ReplayRecord {
                partition,
                offset,
                timestamp_ms: message.timestamp().to_millis(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().map(<[u8]>::to_vec),
            });
            self.next.insert(partition, offset + 1);
            if offset + 1 >= span.to {
                self.finish(partition)?;
            }
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + wait);
        }
        Ok(())
    }

    /// Stops fetching `partition`: its span is read.
    fn finish(&mut self, partition: i32) -> Result<(), ReplayError> {
        if self.next.remove(&partition).is_some() {
            let mut done = TopicPartitionList::new();
            done.add_partition(&self.topic, partition);
            self.consumer.pause(&done)?;
        }
        Ok(())
    }

    /// Finishes the partitions whose fetch position passed the end of their span without a
    /// record to show it (the last offsets were transaction markers).
    fn finish_passed_partitions(&mut self) -> Result<(), ReplayError> {
        let position = self.consumer.position()?;
        let passed: Vec<i32> = self
            .spans
            .iter()
            .filter(|span| {
                matches!(
                    position.find_partition(&self.topic, span.partition).map(|e| e.offset()),
                    Some(Offset::Offset(at)) if at >= span.to
                )
            })
            .map(|span| span.partition)
            .collect();
        for partition in passed {
            self.finish(partition)?;
        }
        Ok(())
    }
}

/// Blocking: the span of every partition of the range's topic.
/// Blocking: every partition of `topic` with its first offset and its end.
fn partition_bounds(
    consumer: &StreamConsumer,
    topic: &str,
) -> Result<BTreeMap<i32, (i64, i64)>, ReplayError> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let mut watermarks = BTreeMap::new();
    for partition in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
    {
        watermarks.insert(
            partition,
            consumer.fetch_watermarks(topic, partition, TIMEOUT)?,
        );
    }
    if watermarks.is_empty() {
        return Err(ReplayError::UnknownTopic(topic.to_string()));
    }
    Ok(watermarks)
}

fn plan(consumer: &StreamConsumer, range: &ReplayRange) -> Result<Vec<PartitionSpan>, ReplayError> {
    let watermarks = partition_bounds(consumer, &range.topic)?;
    let starts = match range.start {
        ReplayStart::Offset(offset) => watermarks
            .iter()
            .map(|(&p, &(low, high))| (p, offset_in(offset, low, high)))
            .collect(),
        ReplayStart::Offsets(ref offsets) => watermarks
            .iter()
            .map(|(&p, &(low, high))| {
                let at = offsets.get(&p).map_or(high, |&o| offset_in(o, low, high));
                (p, at)
            })
            .collect(),
        ReplayStart::Time(time) => offsets_at(consumer, &range.topic, &watermarks, time)?,
    };
    let ends = match range.end {
        Some(time) => offsets_at(consumer, &range.topic, &watermarks, time)?,
        None => watermarks
            .iter()
            .map(|(&p, &(_, high))| (p, high))
            .collect(),
    };
    Ok(watermarks
        .keys()
        .map(|&partition| {
            let from = starts.get(&partition).copied().unwrap_or(0);
            let to = ends.get(&partition).copied().unwrap_or(from).max(from);
            PartitionSpan {
                partition,
                from,
                to,
            }
        })
        .collect())
}

/// `offset` of a partition holding `[low, high)`, clamped; negative: back from `high`.
fn offset_in(offset: i64, low: i64, high: i64) -> i64 {
    let at = if offset < 0 { high + offset } else { offset };
    at.clamp(low, high)
}

/// Blocking: per partition, the first offset stamped at or after `time` (the partition's
/// end when no record is: the broker answers "end" then).
fn offsets_at(
    consumer: &StreamConsumer,
    topic: &str,
    watermarks: &BTreeMap<i32, (i64, i64)>,
    time: DateTime<Utc>,
) -> Result<BTreeMap<i32, i64>, ReplayError> {
    let mut query = TopicPartitionList::new();
    for &partition in watermarks.keys() {
        query.add_partition_offset(topic, partition, Offset::Offset(time.timestamp_millis()))?;
    }
    let found = consumer.offsets_for_times(query, TIMEOUT)?;
    let mut offsets = BTreeMap::new();
    for (&partition, &(low, high)) in watermarks {
        let offset = match found.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(offset)) => offset.clamp(low, high),
            _ => high,
        };
        offsets.insert(partition, offset);
    }
    Ok(offsets)
}

/// Where a consumer group stands in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPartition {
    pub partition: i32,
    /// The group's committed offset (the next record it will read), if it committed one.
    pub committed: Option<i64>,
    /// The first offset the partition still holds, and its end.
    pub low: i64,
    pub high: i64,
    /// The first offset stamped at or after the `since` time asked for (`high` if none).
    pub since: i64,
}

/// Per partition of `topic`: `group`'s committed offset, the partition's bounds, and the
/// first offset at or after `since`. Reads only; joins no group.
pub async fn group_partitions(
    config: &KafkaConfig,
    group: &str,
    topic: &str,
    since: DateTime<Utc>,
) -> Result<Vec<GroupPartition>, ReplayError> {
    let client = consumer_config(config, group);
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: StreamConsumer = client.create()?;
        let watermarks = partition_bounds(&consumer, &topic)?;
        let mut query = TopicPartitionList::new();
        for &partition in watermarks.keys() {
            query.add_partition(&topic, partition);
        }
        let committed = consumer.committed_offsets(query, TIMEOUT)?;
        let since = offsets_at(&consumer, &topic, &watermarks, since)?;
        Ok(watermarks
            .iter()
            .map(|(&partition, &(low, high))| GroupPartition {
                partition,
                committed: match committed
                    .find_partition(&topic, partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(offset)) => Some(offset),
                    _ => None,
                },
                low,
                high,
                since: since.get(&partition).copied().unwrap_or(high),
            })
            .collect())
    })
    .await?
}
