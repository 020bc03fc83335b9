//! The stage loop: consume -> batch -> process -> produce -> confirm -> commit.
//!
//! Three tasks joined by bounded channels: the consumer task stops fetching while the record
//! queue is full; the process task batches by count and time and hands outcomes to the
//! producer; the confirm task waits for each batch's deliveries and only then marks its
//! offsets handled. A ticker commits what is handled. On shutdown fetching stops, queued
//! work drains (up to a deadline), the last handled offsets are committed synchronously.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pulse_core::config::PipelineConfig;
use pulse_kafka::consumer::{commit_handled, rejoin, StallDetector};
use pulse_kafka::{DeadLetter, PulseConsumer};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, Producer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::delivery::{backoff, confirm, enqueue, OutgoingRecord};
use crate::metrics::StageMetrics;
use crate::stage::{Outcome, SourceRecord, Stage};

/// Where a stage's records come from and go to.
pub struct StageIo {
    pub consumer: Arc<PulseConsumer>,
    pub producer: FutureProducer,
    pub dlq_topic: String,
    pub commit_interval: Duration,
    /// Topics the consumer is subscribed to (for rejoining a stalled group).
    pub topics: Vec<String>,
    /// How often to check for an idle member of a stalled group; at least the session
    /// timeout.
    pub stall_check_interval: Duration,
}

/// A stage loop that could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("stage {stage} returned {got} outcomes for {expected} records")]
    OutcomeCount {
        stage: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("stage {stage} emitted a record but has no output topic")]
    NoOutputTopic { stage: &'static str },
    #[error("a stage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A processed batch whose outputs await acknowledgement.
struct PendingBatch {
    offsets: Vec<(String, i32, i64)>,
    deliveries: Vec<DeliveryFuture>,
    emitted: u64,
    produced_at: Instant,
}

/// Runs `stage` until `shutdown` is cancelled, then drains and commits.
pub async fn run_stage<S: Stage>(
    stage: Arc<S>,
    io: StageIo,
    pipeline: &PipelineConfig,
    metrics: StageMetrics,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    // Cancelled when draining takes longer than allowed: in-flight work is abandoned
    // uncommitted, to be redelivered after a restart.
    let abort = CancellationToken::new();
    let (record_tx, record_rx) = mpsc::channel(pipeline.queue_capacity.max(1));
    let (pending_tx, pending_rx) = mpsc::channel(pipeline.max_in_flight_batches.max(1));

    let consume = tokio::spawn(consume(
        io.consumer.clone(),
        record_tx,
        metrics.clone(),
        shutdown.clone(),
    ));
    let mut process = tokio::spawn(process(
        stage.clone(),
        record_rx,
        pending_tx,
        io.producer.clone(),
        io.dlq_topic.clone(),
        pipeline.clone(),
        metrics.clone(),
        abort.clone(),
    ));
    let mut confirm_task = tokio::spawn(confirm_batches(
        io.consumer.clone(),
        pending_rx,
        io.producer.clone(),
        metrics.clone(),
        abort.clone(),
    ));
    let committer = tokio::spawn(commit_periodically(
        io.consumer.clone(),
        io.commit_interval,
        metrics.clone(),
    ));

    let watchdog = tokio::spawn(watch_for_stall(
        io.consumer.clone(),
        io.topics.clone(),
        io.stall_check_interval,
    ));

    let processed = tokio::select! {
        result = &mut process => Some(result),
        _ = shutdown.cancelled() => None,
    };
    if processed.is_some() {
        // The process task ended without a shutdown: a stage bug. Stop fetching too.
        shutdown.cancel();
    } else {
        tracing::info!(
            stage = stage.name(),
            "shutting down: draining in-flight work"
        );
    }
    // The deadline covers both processing and delivery confirmation: a broker that stays
    // down must not hold the shutdown forever.
    let drain = Duration::from_millis(pipeline.drain_timeout_ms);
    let mut outcome = processed;
    let drained = tokio::time::timeout(drain, async {
        if outcome.is_none() {
            outcome = Some((&mut process).await);
        }
        let _ = (&mut confirm_task).await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            stage = stage.name(),
            "drain deadline passed; unfinished records stay uncommitted"
        );
        abort.cancel();
        let _ = confirm_task.await;
    }
    let result = match outcome {
        Some(result) => result,
        None => process.await,
    };
    let _ = consume.await;
    committer.abort();
    watchdog.abort();
    let final_commit = io.consumer.clone();
    let committed =
        tokio::task::spawn_blocking(move || commit_handled(&final_commit, CommitMode::Sync))
            .await?;
    match committed {
        Ok(partitions) => tracing::info!(stage = stage.name(), partitions, "final commit done"),
        Err(error) => {
            tracing::warn!(stage = stage.name(), %error, "final commit failed; records since the last commit will be redelivered")
        }
    }
    let in_flight = io.consumer.context().tracker().in_flight();
    if in_flight > 0 {
        tracing::warn!(
            stage = stage.name(),
            in_flight,
            "records left unhandled; they will be redelivered"
        );
    }
    let _ = io.producer.flush(Duration::from_secs(5));
    tracing::info!(
        stage = stage.name(),
        consumed = metrics.consumed.get(),
        produced = metrics.emitted.get(),
        dead_lettered = metrics.dead_letters.get(),
        "stage stopped"
    );
    result?
}

async fn consume(
    consumer: Arc<PulseConsumer>,
    records: mpsc::Sender<SourceRecord>,
    metrics: StageMetrics,
    shutdown: CancellationToken,
) {
    let mut failures = 0;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return,
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => {
                failures = 0;
                message
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, "consume failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff(failures)) => continue,
                }
            }
        };
        let record = SourceRecord {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
        };
        drop(message);
        consumer
            .context()
            .tracker()
            .consumed(&record.topic, record.partition, record.offset);
        metrics.consumed.inc();
        // Waiting here is the backpressure: no fetching while the queue is full.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            sent = records.send(record) => if sent.is_err() { return },
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn process<S: Stage>(
    stage: Arc<S>,
    mut records: mpsc::Receiver<SourceRecord>,
    pending: mpsc::Sender<PendingBatch>,
    producer: FutureProducer,
    dlq_topic: String,
    pipeline: PipelineConfig,
    metrics: StageMetrics,
    abort: CancellationToken,
) -> Result<(), RunError> {
    let batch_size = pipeline.batch_size.max(1);
    let batch_wait = Duration::from_millis(pipeline.batch_wait_ms);
    while let Some(first) = records.recv().await {
        let mut batch = Vec::with_capacity(batch_size);
        batch.push(first);
        let deadline = tokio::time::Instant::now() + batch_wait;
        while batch.len() < batch_size {
            match tokio::time::timeout_at(deadline, records.recv()).await {
                Ok(Some(record)) => batch.push(record),
                Ok(None) | Err(_) => break,
            }
        }
        metrics.batch_size.observe(batch.len() as f64);

        let Some(handled) = handle_batch(
            stage.as_ref(),
            &batch,
            &producer,
            &dlq_topic,
            &metrics,
            &abort,
        )
        .await?
        else {
            return Ok(());
        };
        let batch_offsets = batch
            .into_iter()
            .map(|r| (r.topic, r.partition, r.offset))
            .collect();
        let handoff = PendingBatch {
            offsets: batch_offsets,
            deliveries: handled.deliveries,
            emitted: handled.emitted,
            produced_at: Instant::now(),
        };
        if pending.send(handoff).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// A batch its stage handled, with the deliveries of what it emitted and rejected.
pub(crate) struct HandledBatch {
    pub deliveries: Vec<DeliveryFuture>,
    /// Records produced to the output topic.
    pub emitted: u64,
    /// Records sent to the DLQ.
    pub dead_lettered: u64,
}

/// Has `stage` handle `batch` (retrying while it fails) and queues what it emits to its
/// output topic and what it rejects to the DLQ. `None` when aborted first.
pub(crate) async fn handle_batch<S: Stage>(
    stage: &S,
    batch: &[SourceRecord],
    producer: &FutureProducer,
    dlq_topic: &str,
    metrics: &StageMetrics,
    abort: &CancellationToken,
) -> Result<Option<HandledBatch>, RunError> {
    let started = Instant::now();
    let Some(outcomes) = process_until_done(stage, batch, metrics, abort).await else {
        return Ok(None);
    };
    if outcomes.len() != batch.len() {
        return Err(RunError::OutcomeCount {
            stage: stage.name(),
            expected: batch.len(),
            got: outcomes.len(),
        });
    }
    metrics
        .process_seconds
        .observe(started.elapsed().as_secs_f64());

    let mut deliveries = Vec::with_capacity(batch.len());
    let mut emitted = 0;
    let mut dead_lettered = 0;
    for (record, outcome) in batch.iter().zip(outcomes) {
        let delivery = match outcome {
            Outcome::Emit { key, payload } => {
                let Some(topic) = stage.output_topic() else {
                    return Err(RunError::NoOutputTopic {
                        stage: stage.name(),
                    });
                };
                emitted += 1;
                let outgoing = OutgoingRecord {
                    topic: topic.to_string(),
                    key: Some(key.into_bytes()),
                    payload,
                    headers: None,
                };
                enqueue(producer, &outgoing, metrics, abort).await
            }
            Outcome::Reject { kind, error } => {
                metrics.dead_letter(&kind);
                dead_lettered += 1;
                dead_letter(
                    producer,
                    dlq_topic,
                    stage.name(),
                    record,
                    &kind,
                    &error,
                    metrics,
                    abort,
                )
                .await
            }
            Outcome::Done => continue,
        };
        let Some(delivery) = delivery else {
            return Ok(None);
        };
        deliveries.push(delivery);
    }
    Ok(Some(HandledBatch {
        deliveries,
        emitted,
        dead_lettered,
    }))
}

#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    producer: &FutureProducer,
    dlq_topic: &str,
    stage: &str,
    record: &SourceRecord,
    kind: &str,
    error: &str,
    metrics: &StageMetrics,
    abort: &CancellationToken,
) -> Option<DeliveryFuture> {
    let letter = DeadLetter {
        stage: stage.to_string(),
        error_kind: kind.to_string(),
        error: error.to_string(),
        origin: record.origin(),
    };
    tracing::debug!(
        stage,
        kind,
        error,
        partition = record.partition,
        offset = record.offset,
        "dead-lettering record"
    );
    let outgoing = OutgoingRecord {
        topic: dlq_topic.to_string(),
        key: record.key.clone(),
        payload: record.payload.clone().unwrap_or_default(),
        headers: Some(letter.headers()),
    };
    enqueue(producer, &outgoing, metrics, abort).await
}

/// Calls the stage until it handles the batch, backing off between failures. `None` when
/// aborted first.
async fn process_until_done<S: Stage>(
    stage: &S,
    batch: &[SourceRecord],
    metrics: &StageMetrics,
    abort: &CancellationToken,
) -> Option<Vec<Outcome>> {
    let mut attempt = 0;
    loop {
        match stage.process(batch).await {
            Ok(outcomes) => return Some(outcomes),
            Err(error) => {
                attempt += 1;
                metrics.retries.inc();
                tracing::warn!(stage = stage.name(), %error, attempt, records = batch.len(), "batch failed; retrying");
                tokio::select! {
                    _ = abort.cancelled() => return None,
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                }
            }
        }
    }
}

async fn confirm_batches(
    consumer: Arc<PulseConsumer>,
    mut pending: mpsc::Receiver<PendingBatch>,
    producer: FutureProducer,
    metrics: StageMetrics,
    abort: CancellationToken,
) {
    while let Some(batch) = pending.recv().await {
        for delivery in batch.deliveries {
            if !confirm(&producer, delivery, &metrics, &abort).await {
                return;
            }
        }
        metrics
            .delivery_seconds
            .observe(batch.produced_at.elapsed().as_secs_f64());
        metrics.emitted.inc_by(batch.emitted);
        let mut tracker = consumer.context().tracker();
        for (topic, partition, offset) in &batch.offsets {
            tracker.handled(topic, *partition, *offset);
        }
    }
}

async fn commit_periodically(consumer: Arc<PulseConsumer>, every: Duration, metrics: StageMetrics) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Synchronous, so a failed commit is known and its offsets are offered again.
        let consumer = consumer.clone();
        match tokio::task::spawn_blocking(move || commit_handled(&consumer, CommitMode::Sync)).await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(_)) => {
                metrics.commits.inc();
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "offset commit failed; retrying on the next tick")
            }
            Err(error) => tracing::warn!(%error, "offset commit task failed"),
        }
    }
}

/// Rejoins the group when this member is idle while nobody consumes the group's records.
async fn watch_for_stall(consumer: Arc<PulseConsumer>, topics: Vec<String>, every: Duration) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_secs(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut detector = StallDetector::default();
    loop {
        ticker.tick().await;
        let consumer = consumer.clone();
        let topics = topics.clone();
        let check = tokio::task::spawn_blocking(move || {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            let stalled = detector.stalled(&consumer, &topics, Duration::from_secs(10))?;
            if stalled {
                tracing::warn!(
                    "no partitions here and the group's records go unconsumed; rejoining the group"
                );
                rejoin(&consumer, &topics)?;
            }
            Ok::<_, rdkafka::error::KafkaError>(detector)
        })
        .await;
        detector = match check {
            Ok(Ok(detector)) => detector,
            Ok(Err(error)) => {
                tracing::debug!(%error, "stall check failed; trying again later");
                StallDetector::default()
            }
            Err(error) => {
                tracing::warn!(%error, "stall check task failed");
                StallDetector::default()
            }
        };
    }
}
