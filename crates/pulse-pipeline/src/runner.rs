//! The stage loop: consume -> batch -> process -> produce -> confirm -> commit.
//!
//! At-least-once (every sink, and enrich when configured so): three tasks joined by bounded
//! channels. The consumer task stops fetching while the record queue is full; the process
//! task batches by count and time and hands outcomes to the producer; the confirm task waits
//! for each batch's deliveries and only then marks its offsets handled. A ticker commits
//! what is handled. On shutdown fetching stops, queued work drains (up to a deadline), the
//! last handled offsets are committed synchronously.
//!
//! Exactly-once (enrich by default) runs [`crate::transactional`] instead: the outputs and
//! the consumed offsets of each batch in one Kafka transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pulse_core::config::{Delivery, PipelineConfig};
use pulse_core::DeadLetterKind;
use pulse_kafka::consumer::commit_handled;
use pulse_kafka::{DeadLetter, PulseConsumer};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::delivery::{
    backoff, confirm, consume_pause, enqueue, Aborted, Delivered, OutgoingRecord, Sent,
};
use crate::metrics::StageMetrics;
use crate::stage::{Outcome, SourceRecord, Stage};

/// Where a stage's records come from and go to.
pub struct StageIo {
    pub consumer: Arc<PulseConsumer>,
    /// Idempotent; transactional (its transactions not yet initialised) under exactly-once
    /// delivery.
    pub producer: FutureProducer,
    pub dlq_topic: String,
    pub commit_interval: Duration,
    /// Topics the consumer is subscribed to (to rejoin the group after a transaction lost
    /// its membership).
    pub topics: Vec<String>,
    pub delivery: Delivery,
    /// The producer's transactional id under exactly-once delivery.
    pub transactional_id: String,
    /// Largest record produced (`kafka.max_record_bytes`); a larger output is dead-lettered.
    pub max_record_bytes: usize,
    /// How long a transaction call (commit, abort, offsets) may block before it is retried.
    pub transaction_call_timeout: Duration,
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
    #[error(
        "stage {stage}: another instance took over transactional id {transactional_id} (this \
         one was fenced: {detail}); give each instance its own enrich.transactional_id"
    )]
    Fenced {
        stage: &'static str,
        transactional_id: String,
        detail: String,
    },
    #[error("stage {stage}: the broker cannot run transactions: {detail}; set enrich.delivery = \"at_least_once\" for brokers without them")]
    TransactionsUnsupported { stage: &'static str, detail: String },
}

/// A processed batch whose outputs await acknowledgement.
struct PendingBatch {
    offsets: Vec<(String, i32, i64)>,
    sent: Vec<Sent>,
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
    match io.delivery {
        Delivery::ExactlyOnce => {
            crate::transactional::run(stage, io, pipeline, metrics, shutdown).await
        }
        Delivery::AtLeastOnce => run_at_least_once(stage, io, pipeline, metrics, shutdown).await,
    }
}

async fn run_at_least_once<S: Stage>(
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
    let outputs = Outputs {
        dlq_topic: io.dlq_topic.clone(),
        max_record_bytes: io.max_record_bytes,
    };

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
        outputs,
        pipeline.clone(),
        metrics.clone(),
        abort.clone(),
    ));
    let mut confirm_task = tokio::spawn(confirm_batches(
        io.consumer.clone(),
        pending_rx,
        io.producer.clone(),
        io.dlq_topic.clone(),
        metrics.clone(),
        abort.clone(),
    ));
    let committer = tokio::spawn(commit_periodically(
        io.consumer.clone(),
        io.commit_interval,
        metrics.clone(),
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
    flush(&io.producer).await;
    stopped(stage.name(), &metrics);
    result?
}

/// Waits up to 5 s for what the producer still holds to reach the broker, off the async
/// workers: the wait blocks, and a producer shared with other roles may hold their records.
pub(crate) async fn flush(producer: &FutureProducer) {
    let producer = producer.clone();
    let flushed = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
    if let Ok(Err(error)) = flushed {
        tracing::warn!(%error, "producer not flushed at stop");
    }
}

/// Logs the end of a stage loop with its counts.
pub(crate) fn stopped(stage: &str, metrics: &StageMetrics) {
    tracing::info!(
        stage,
        consumed = metrics.consumed.get(),
        produced = metrics.emitted.get(),
        dead_lettered = metrics.dead_letters.get(),
        "stage stopped"
    );
}

/// A consumed message as a stage sees it.
pub(crate) fn source_record(message: &impl Message) -> SourceRecord {
    SourceRecord {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
    }
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
                    _ = tokio::time::sleep(consume_pause(&error, failures)) => continue,
                }
            }
        };
        let record = source_record(&message);
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
    outputs: Outputs,
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
            &outputs,
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
            sent: handled.sent,
            produced_at: Instant::now(),
        };
        if pending.send(handoff).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Where a stage's outcomes go besides its output topic, and how large a record may be.
#[derive(Debug, Clone)]
pub(crate) struct Outputs {
    pub dlq_topic: String,
    pub max_record_bytes: usize,
}

/// The records a batch's outcomes produce, in order.
pub(crate) struct BatchOutputs {
    pub records: Vec<OutgoingRecord>,
    /// Records for the output topic among them.
    pub emitted: u64,
    /// Dead letters among them.
    pub dead_lettered: u64,
}

impl Outputs {
    /// What `outcomes` (one per record of `batch`) produce: emitted records (falling back
    /// to a dead letter of their input if the broker refuses them) and dead letters. An
    /// output over the record size limit is dead-lettered at once. Counts dead letters.
    pub(crate) fn records<S: Stage>(
        &self,
        stage: &S,
        batch: &[SourceRecord],
        outcomes: Vec<Outcome>,
        metrics: &StageMetrics,
    ) -> Result<BatchOutputs, RunError> {
        if outcomes.len() != batch.len() {
            return Err(RunError::OutcomeCount {
                stage: stage.name(),
                expected: batch.len(),
                got: outcomes.len(),
            });
        }
        let mut outputs = BatchOutputs {
            records: Vec::with_capacity(batch.len()),
            emitted: 0,
            dead_lettered: 0,
        };
        for (record, outcome) in batch.iter().zip(outcomes) {
            let outgoing = match outcome {
                Outcome::Emit { key, payload } => {
                    let Some(topic) = stage.output_topic() else {
                        return Err(RunError::NoOutputTopic {
                            stage: stage.name(),
                        });
                    };
                    if payload.len() > self.max_record_bytes {
                        let error = format!(
                            "the {} output of this record is {} bytes, more than \
                             kafka.max_record_bytes ({})",
                            stage.name(),
                            payload.len(),
                            self.max_record_bytes
                        );
                        metrics.dead_letter(DeadLetterKind::RecordTooLarge);
                        outputs.dead_lettered += 1;
                        self.dead_letter(stage, record, DeadLetterKind::RecordTooLarge, &error)
                    } else {
                        outputs.emitted += 1;
                        let refused = self.dead_letter(
                            stage,
                            record,
                            DeadLetterKind::RefusedByBroker,
                            &format!("the broker refused this record's output to {topic} for good"),
                        );
                        OutgoingRecord::new(topic, Some(key.into_bytes()), payload)
                            .or_else(refused.counted_as(DeadLetterKind::RefusedByBroker))
                    }
                }
                Outcome::Reject { kind, error } => {
                    metrics.dead_letter(kind);
                    outputs.dead_lettered += 1;
                    tracing::debug!(
                        stage = stage.name(),
                        kind = kind.as_str(),
                        error,
                        partition = record.partition,
                        offset = record.offset,
                        "dead-lettering record"
                    );
                    self.dead_letter(stage, record, kind, &error)
                }
                Outcome::Done => continue,
            };
            outputs.records.push(outgoing);
        }
        Ok(outputs)
    }

    /// The dead letter of `record`: its original bytes and key, with headers naming the
    /// stage, the kind, the error and the record's origin.
    fn dead_letter<S: Stage>(
        &self,
        stage: &S,
        record: &SourceRecord,
        kind: DeadLetterKind,
        error: &str,
    ) -> OutgoingRecord {
        let letter = DeadLetter {
            stage: stage.name().to_string(),
            error_kind: kind,
            error: error.to_string(),
            origin: record.origin(),
        };
        OutgoingRecord::dead_letter(
            &self.dlq_topic,
            record.key.clone(),
            record.payload.clone().unwrap_or_default(),
            letter.headers(),
        )
    }
}

/// A batch its stage handled, with what it emitted and rejected handed to the producer.
pub(crate) struct HandledBatch {
    pub sent: Vec<Sent>,
    /// Records sent to the DLQ.
    pub dead_lettered: u64,
}

/// Has `stage` handle `batch` (retrying while it fails) and queues what it emits to its
/// output topic and what it rejects to the DLQ. `None` when aborted first.
pub(crate) async fn handle_batch<S: Stage>(
    stage: &S,
    batch: &[SourceRecord],
    producer: &FutureProducer,
    outputs: &Outputs,
    metrics: &StageMetrics,
    abort: &CancellationToken,
) -> Result<Option<HandledBatch>, RunError> {
    let started = Instant::now();
    let Some(outcomes) = process_until_done(stage, batch, metrics, abort).await else {
        return Ok(None);
    };
    metrics
        .process_seconds
        .observe(started.elapsed().as_secs_f64());
    let records = outputs.records(stage, batch, outcomes, metrics)?;
    let mut sent = Vec::with_capacity(records.records.len());
    for record in records.records {
        match enqueue(producer, record, metrics, abort).await {
            Ok(Some(one)) => sent.push(one),
            // Refused for good with no fallback: logged and counted where it happened.
            Ok(None) => {}
            Err(Aborted) => return Ok(None),
        }
    }
    Ok(Some(HandledBatch {
        sent,
        dead_lettered: records.dead_lettered,
    }))
}

/// Calls the stage until it handles the batch, backing off between failures. `None` when
/// aborted first.
pub(crate) async fn process_until_done<S: Stage>(
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

/// Confirms every record of `sent`; returns how many reached `output` topics other than
/// the DLQ as themselves, or `None` when aborted first.
pub(crate) async fn confirm_all(
    producer: &FutureProducer,
    sent: Vec<Sent>,
    dlq_topic: &str,
    metrics: &StageMetrics,
    abort: &CancellationToken,
) -> Option<u64> {
    let mut emitted = 0;
    for one in sent {
        let to_output = one.record.topic != dlq_topic;
        match confirm(producer, one, metrics, abort).await {
            Ok(Delivered::AsIs) => emitted += u64::from(to_output),
            Ok(Delivered::Fallback | Delivered::GivenUp) => {}
            Err(Aborted) => return None,
        }
    }
    Some(emitted)
}

async fn confirm_batches(
    consumer: Arc<PulseConsumer>,
    mut pending: mpsc::Receiver<PendingBatch>,
    producer: FutureProducer,
    dlq_topic: String,
    metrics: StageMetrics,
    abort: CancellationToken,
) {
    while let Some(batch) = pending.recv().await {
        let Some(emitted) = confirm_all(&producer, batch.sent, &dlq_topic, &metrics, &abort).await
        else {
            return;
        };
        metrics
            .delivery_seconds
            .observe(batch.produced_at.elapsed().as_secs_f64());
        metrics.emitted.inc_by(emitted);
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
