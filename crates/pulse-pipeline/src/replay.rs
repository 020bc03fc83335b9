//! Replay into a stage: the records of a bounded range of a topic (read by
//! [`ReplayReader`], outside any consumer group) handed to a stage exactly as the stage
//! loop hands them: what it emits goes to its output topic, what it rejects to the DLQ, and
//! every delivery of a batch is confirmed before the next batch is read. Used for a model
//! upgrade (raw posts into `enrich`), a lost Redis (enriched posts into `sink-speed`) or a
//! backfill (into `sink-batch` or `sink-archive`); every sink is idempotent, so replaying twice is harmless.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use pulse_core::config::{PipelineConfig, TopicsConfig};
use pulse_core::PulseConfig;
use pulse_kafka::replay::{PartitionSpan, ReplayError, ReplayRange, ReplayReader};
use pulse_speed::SpeedLayer;
use rdkafka::producer::FutureProducer;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::catalogue::{MissingResource, StageKind, StageResources, WithStage};
use crate::delivery::{backoff, consume_pause};
use crate::metrics::{PipelineMetrics, StageMetrics};
use crate::runner::{confirm_all, handle_batch, Outputs, RunError};
use crate::stage::{SourceRecord, Stage};

/// How far a replay is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplayProgress {
    /// Offsets in the range (records, but for transaction markers).
    pub total: u64,
    /// Records read and handled by the stage, their outputs delivered.
    pub replayed: u64,
    /// Records the stage produced to its output topic.
    pub emitted: u64,
    /// Records sent to the DLQ.
    pub dead_lettered: u64,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    pub topic: String,
    pub stage: &'static str,
    /// The offsets of each partition the replay covered.
    pub spans: Vec<PartitionSpan>,
    #[serde(flatten)]
    pub progress: ReplayProgress,
    /// Whether every span was replayed (`false`: stopped by a shutdown).
    pub complete: bool,
    /// The next offset of each partition after the last delivered batch: where to resume a
    /// replay that stopped early ([`ReplayStart::Offsets`](pulse_kafka::replay::ReplayStart)).
    pub resume_at: BTreeMap<i32, i64>,
}

/// Where a replay's outputs go.
pub struct ReplaySink<'a> {
    pub producer: &'a FutureProducer,
    pub dlq_topic: &'a str,
    /// Largest record produced; a larger output is dead-lettered.
    pub max_record_bytes: usize,
    pub metrics: &'a StageMetrics,
}

/// Replays what `reader` reads into `stage`, in batches of the pipeline's size, calling
/// `progress` after each delivered batch, until the range is read or `shutdown` is
/// cancelled. Broker read errors and a failing stage (a store down) are retried with
/// backoff.
pub async fn replay_into<S: Stage>(
    stage: &S,
    reader: &mut ReplayReader,
    sink: ReplaySink<'_>,
    pipeline: &PipelineConfig,
    progress: &(dyn Fn(ReplayProgress) + Sync),
    shutdown: &CancellationToken,
) -> Result<ReplayReport, RunError> {
    let batch_size = pipeline.batch_size.max(1);
    let batch_wait = Duration::from_millis(pipeline.batch_wait_ms);
    let mut done = ReplayProgress {
        total: reader.total(),
        ..ReplayProgress::default()
    };
    let mut resume_at = reader.positions();
    let mut failures = 0;
    progress(done);
    let complete = loop {
        if shutdown.is_cancelled() {
            break false;
        }
        let records = tokio::select! {
            _ = shutdown.cancelled() => break false,
            read = reader.next_batch(batch_size, batch_wait) => read,
        };
        let records = match records {
            Ok(Some(records)) => records,
            Ok(None) => break true,
            Err(error) => {
                failures += 1;
                tracing::warn!(topic = reader.topic(), %error, "replay read failed; retrying");
                let pause = match &error {
                    ReplayError::Kafka(error) => consume_pause(error, failures),
                    _ => backoff(failures),
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break false,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        failures = 0;
        if records.is_empty() {
            continue;
        }
        let batch: Vec<SourceRecord> = records
            .into_iter()
            .map(|r| SourceRecord {
                topic: reader.topic().to_string(),
                partition: r.partition,
                offset: r.offset,
                key: r.key,
                payload: r.payload,
            })
            .collect();
        sink.metrics.consumed.inc_by(batch.len() as u64);
        let outputs = Outputs {
            dlq_topic: sink.dlq_topic.to_string(),
            max_record_bytes: sink.max_record_bytes,
        };
        let Some(handled) = handle_batch(
            stage,
            &batch,
            sink.producer,
            &outputs,
            sink.metrics,
            shutdown,
        )
        .await?
        else {
            break false;
        };
        let Some(emitted) = confirm_all(
            sink.producer,
            handled.sent,
            sink.dlq_topic,
            sink.metrics,
            shutdown,
        )
        .await
        else {
            return Ok(report(stage, reader, done, false, resume_at));
        };
        sink.metrics.emitted.inc_by(emitted);
        done.replayed += batch.len() as u64;
        done.emitted += emitted;
        done.dead_lettered += handled.dead_lettered;
        resume_at = reader.positions();
        progress(done);
    };
    Ok(report(stage, reader, done, complete, resume_at))
}

fn report<S: Stage>(
    stage: &S,
    reader: &ReplayReader,
    progress: ReplayProgress,
    complete: bool,
    resume_at: BTreeMap<i32, i64>,
) -> ReplayReport {
    ReplayReport {
        topic: reader.topic().to_string(),
        stage: stage.name(),
        spans: reader.spans().to_vec(),
        progress,
        complete,
        resume_at,
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayFailure {
    #[error(transparent)]
    Read(#[from] ReplayError),
    #[error(transparent)]
    Unavailable(#[from] MissingResource),
    #[error(transparent)]
    Stage(#[from] RunError),
}

/// Everything a replay into any stage needs: the stores and enricher the stages write
/// with (each optional: a process replays into the stages it has), a producer for outputs
/// and dead letters, and the configuration of topics, batches and post limits.
pub struct Replayer {
    config: PulseConfig,
    producer: FutureProducer,
    metrics: PipelineMetrics,
    resources: StageResources,
}

impl Replayer {
    /// A replayer producing through `producer` (idempotent, not transactional: it may be
    /// shared with the process's other producers); add the stages' resources with the
    /// `with_*` methods. Its metrics are labelled `replay-<stage>`.
    pub fn new(config: &PulseConfig, metrics: PipelineMetrics, producer: FutureProducer) -> Self {
        Self {
            config: config.clone(),
            producer,
            metrics,
            resources: StageResources::default(),
        }
    }

    /// What the stages a replay feeds write with.
    pub fn with_resources(mut self, resources: StageResources) -> Self {
        self.resources = resources;
        self
    }

    pub fn with_speed(mut self, speed: SpeedLayer) -> Self {
        self.resources.speed = Some(speed);
        self
    }

    /// The topics of this deployment.
    pub fn topics(&self) -> &TopicsConfig {
        &self.config.kafka.topics
    }

    /// Plans `range` against the broker: the reader to hand to [`Replayer::run`]. Fails
    /// early (unknown topic, broker down, a stage this process cannot feed).
    pub async fn open(
        &self,
        stage: StageKind,
        range: ReplayRange,
    ) -> Result<ReplayReader, ReplayFailure> {
        stage.build(&self.config, &self.resources, Buildable)?;
        Ok(ReplayReader::open(&self.config.kafka, range).await?)
    }

    /// Replays what `reader` reads into `stage` (see [`replay_into`]).
    pub async fn run(
        &self,
        stage: StageKind,
        reader: &mut ReplayReader,
        progress: &(dyn Fn(ReplayProgress) + Sync),
        shutdown: &CancellationToken,
    ) -> Result<ReplayReport, ReplayFailure> {
        let metrics = self.metrics.for_stage(&format!("replay-{}", stage.name()));
        let pipeline = stage.pipeline(&self.config);
        let replay = Replay {
            reader,
            sink: ReplaySink {
                producer: &self.producer,
                dlq_topic: &self.config.kafka.topics.dlq,
                max_record_bytes: self.config.kafka.max_record_bytes,
                metrics: &metrics,
            },
            pipeline: &pipeline,
            progress,
            shutdown,
        };
        let report = stage.build(&self.config, &self.resources, replay)?.await?;
        Ok(report)
    }
}

/// Builds a stage only to learn that it can be built.
struct Buildable;

impl WithStage for Buildable {
    type Output = ();

    fn with<S: Stage>(self, _stage: S) {}
}

/// A replay of one range into whichever stage is built.
struct Replay<'a> {
    reader: &'a mut ReplayReader,
    sink: ReplaySink<'a>,
    pipeline: &'a PipelineConfig,
    progress: &'a (dyn Fn(ReplayProgress) + Sync),
    shutdown: &'a CancellationToken,
}

impl<'a> WithStage for Replay<'a> {
    type Output = BoxFuture<'a, Result<ReplayReport, RunError>>;

    fn with<S: Stage>(self, stage: S) -> Self::Output {
        Box::pin(async move {
            replay_into(
                &stage,
                self.reader,
                self.sink,
                self.pipeline,
                self.progress,
                self.shutdown,
            )
            .await
        })
    }
}
