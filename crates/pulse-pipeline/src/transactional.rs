//! The exactly-once stage loop: each batch's outputs, its dead letters and the consumed
//! offsets are one Kafka transaction (`send_offsets_to_transaction`), so readers of
//! committed data see every input record's outputs exactly once, whatever crashes.
//!
//! One task does everything in order (collect a batch, process it, run its transaction),
//! so no transaction is open while the consumer polls and a rebalance can only happen
//! between batches. Failures:
//! - a rebalance while a batch is collected: the batch is dropped; its partitions are
//!   re-read from the committed offsets by whoever owns them now;
//! - a transaction that fails and can be retried (broker down, timeouts, a record refused
//!   for good, which is replaced by its dead letter): aborted and run again with the same
//!   records;
//! - the group's membership lost (an old generation): aborted, the batch dropped, the group
//!   rejoined, so the partitions restart from their committed offsets;
//! - fenced (another instance took over the transactional id): the loop ends with an error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pulse_core::config::PipelineConfig;
use pulse_kafka::consumer::offsets_list;
use pulse_kafka::PulseConsumer;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use tokio_util::sync::CancellationToken;

use crate::delivery::{backoff, consume_pause, is_permanent, refused, send, OutgoingRecord};
use crate::metrics::StageMetrics;
use crate::runner::{
    flush, process_until_done, source_record, stopped, Outputs, RunError, StageIo,
};
use crate::stage::{SourceRecord, Stage};

/// Runs `stage` with exactly-once delivery until `shutdown`; the batch in hand when it
/// comes is finished and committed if that takes less than the drain deadline, aborted
/// otherwise.
pub(crate) async fn run<S: Stage>(
    stage: Arc<S>,
    io: StageIo,
    pipeline: &PipelineConfig,
    metrics: StageMetrics,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let transaction = Transaction {
        stage: stage.name(),
        transactional_id: io.transactional_id.clone(),
        dlq_topic: io.dlq_topic.clone(),
        producer: io.producer.clone(),
        consumer: Some(io.consumer.clone()),
        call_timeout: io.transaction_call_timeout,
    };
    if !transaction.init(&shutdown).await? {
        return Ok(());
    }
    let outputs = Outputs {
        dlq_topic: io.dlq_topic.clone(),
        max_record_bytes: io.max_record_bytes,
    };
    let batch_size = pipeline.batch_size.max(1);
    let batch_wait = Duration::from_millis(pipeline.batch_wait_ms);
    let drain = Duration::from_millis(pipeline.drain_timeout_ms);
    let topics: Vec<&str> = io.topics.iter().map(String::as_str).collect();
    let result = loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            batch = collect(&io.consumer, batch_size, batch_wait, stage.name()) => batch,
        };
        if batch.is_empty() {
            continue;
        }
        metrics.consumed.inc_by(batch.len() as u64);
        metrics.batch_size.observe(batch.len() as f64);
        // Once a shutdown is asked for, the batch in hand has the drain deadline to finish.
        let abort = CancellationToken::new();
        let work = exactly_once(
            stage.as_ref(),
            &batch,
            &transaction,
            &outputs,
            &metrics,
            &abort,
        );
        tokio::pin!(work);
        let finished = tokio::select! {
            finished = &mut work => finished,
            _ = shutdown.cancelled() => {
                tracing::info!(stage = stage.name(), "shutting down: finishing the batch in hand");
                match tokio::time::timeout(drain, &mut work).await {
                    Ok(finished) => finished,
                    Err(_) => {
                        tracing::warn!(stage = stage.name(), "drain deadline passed; the open transaction is aborted, its records will be read again");
                        abort.cancel();
                        work.await
                    }
                }
            }
        };
        match finished {
            Ok(BatchEnd::Committed) | Ok(BatchEnd::Aborted) => {}
            Ok(BatchEnd::MembershipLost) => {
                let consumer = io.consumer.clone();
                let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
                let rejoined = tokio::task::spawn_blocking(move || {
                    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                    consumer.unsubscribe();
                    consumer.subscribe(&topics)
                })
                .await?;
                if let Err(error) = rejoined {
                    tracing::warn!(stage = stage.name(), %error, "cannot rejoin the group; retrying on the next poll");
                }
            }
            Err(error) => break Err(error),
        }
    };
    flush(&io.producer).await;
    stopped(stage.name(), &metrics);
    result
}

/// Reads up to `size` records, waiting at most `wait` after the first one. Records read
/// before a rebalance are dropped: their partitions now start again from the committed
/// offsets (or belong to another member), so they are read again where they belong.
async fn collect(
    consumer: &PulseConsumer,
    size: usize,
    wait: Duration,
    stage: &str,
) -> Vec<SourceRecord> {
    let mut batch = Vec::with_capacity(size);
    let mut failures = 0;
    let mut deadline = None;
    // The rebalance count when the batch's records were read.
    let mut epoch = consumer.context().rebalances();
    let drop_stale = |batch: &mut Vec<SourceRecord>, epoch: &mut u64| {
        let now = consumer.context().rebalances();
        if now != *epoch {
            if !batch.is_empty() {
                tracing::info!(
                    stage,
                    records = batch.len(),
                    "partitions moved while a batch was read; its records are read again \
                     from the committed offsets"
                );
                batch.clear();
            }
            *epoch = now;
        }
    };
    while batch.len() < size {
        let next = match deadline {
            None => consumer.recv().await,
            Some(at) => match tokio::time::timeout_at(at, consumer.recv()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        drop_stale(&mut batch, &mut epoch);
        match next {
            Ok(message) => {
                batch.push(source_record(&message));
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + wait);
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, "consume failed; retrying");
                if !batch.is_empty() {
                    break;
                }
                tokio::time::sleep(consume_pause(&error, failures)).await;
            }
        }
    }
    drop_stale(&mut batch, &mut epoch);
    batch
}

/// How a batch's transaction ended.
enum BatchEnd {
    Committed,
    /// Aborted at the drain deadline.
    Aborted,
    /// Aborted because the consumer is no longer a member of the group's generation.
    MembershipLost,
}

/// Processes `batch` and commits its outputs and offsets in one transaction, retrying
/// while that fails.
async fn exactly_once<S: Stage>(
    stage: &S,
    batch: &[SourceRecord],
    transaction: &Transaction,
    outputs: &Outputs,
    metrics: &StageMetrics,
    abort: &CancellationToken,
) -> Result<BatchEnd, RunError> {
    let started = Instant::now();
    let Some(outcomes) = process_until_done(stage, batch, metrics, abort).await else {
        return Ok(BatchEnd::Aborted);
    };
    metrics
        .process_seconds
        .observe(started.elapsed().as_secs_f64());
    let produced = outputs.records(stage, batch, outcomes, metrics)?;
    let mut records: Vec<Option<OutgoingRecord>> = produced.records.into_iter().map(Some).collect();
    let offsets = next_offsets(batch);
    let mut attempt = 0;
    loop {
        let failure = match transaction
            .run(&mut records, &offsets, metrics, abort)
            .await
        {
            Ok(emitted) => {
                metrics.committed_transactions.inc();
                metrics.commits.inc();
                metrics.emitted.inc_by(emitted);
                metrics
                    .delivery_seconds
                    .observe(started.elapsed().as_secs_f64());
                return Ok(BatchEnd::Committed);
            }
            Err(failure) => failure,
        };
        metrics.aborted_transactions.inc();
        match failure {
            Failure::Fenced(detail) => {
                return Err(RunError::Fenced {
                    stage: stage.name(),
                    transactional_id: transaction.transactional_id.clone(),
                    detail,
                })
            }
            Failure::Aborted => {
                transaction.abort().await?;
                return Ok(BatchEnd::Aborted);
            }
            Failure::Membership(error) => {
                tracing::warn!(stage = stage.name(), %error, "the group moved on while the batch was processed; it is read again");
                transaction.abort().await?;
                return Ok(BatchEnd::MembershipLost);
            }
            Failure::Retry(error) => {
                attempt += 1;
                metrics.retries.inc();
                tracing::warn!(stage = stage.name(), %error, attempt, records = batch.len(), "transaction failed; aborting and retrying it");
                if !transaction.abort().await? {
                    return Ok(BatchEnd::Aborted);
                }
                tokio::select! {
                    _ = abort.cancelled() => return Ok(BatchEnd::Aborted),
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                }
            }
        }
    }
}

/// Per partition, the offset after the batch's last record: what the transaction commits.
fn next_offsets(batch: &[SourceRecord]) -> Vec<((String, i32), i64)> {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for record in batch {
        let entry = next
            .entry((record.topic.clone(), record.partition))
            .or_insert(record.offset + 1);
        *entry = (*entry).max(record.offset + 1);
    }
    next.into_iter().collect()
}

/// Replaces a record refused for good by its fallback (`None` if it has none).
fn fall_back(slot: &mut Option<OutgoingRecord>, error: &KafkaError, metrics: &StageMetrics) {
    if let Some(record) = slot.take() {
        *slot = refused(record, error, metrics);
    }
}

/// Why a transaction did not commit.
pub(crate) enum Failure {
    /// Another producer with the same transactional id exists: this one must stop.
    Fenced(String),
    /// Abort and run again.
    Retry(KafkaError),
    /// The consumer's group generation is gone: abort, drop the batch, rejoin.
    Membership(KafkaError),
    /// The run is being aborted (drain deadline).
    Aborted,
}

fn classify(error: KafkaError) -> Failure {
    if let KafkaError::Transaction(detail) = &error {
        if detail.is_fatal() {
            return Failure::Fenced(detail.to_string());
        }
    }
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::Fenced,
        ) => Failure::Fenced(error.to_string()),
        Some(
            RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::FencedInstanceId,
        ) => Failure::Membership(error),
        _ => Failure::Retry(error),
    }
}

/// The transactional producer of one stage and the consumer whose offsets it commits
/// (none for a source, whose position travels as a record of the transaction).
pub(crate) struct Transaction {
    pub stage: &'static str,
    pub transactional_id: String,
    pub dlq_topic: String,
    pub producer: FutureProducer,
    pub consumer: Option<Arc<PulseConsumer>>,
    pub call_timeout: Duration,
}

impl Transaction {
    /// Initialises transactions (fencing any older instance with the same id and aborting
    /// what it left open), retrying while the broker cannot be reached. `false` when
    /// shut down first.
    pub async fn init(&self, shutdown: &CancellationToken) -> Result<bool, RunError> {
        let mut attempt = 0;
        loop {
            let producer = self.producer.clone();
            let timeout = self.call_timeout;
            let init =
                tokio::task::spawn_blocking(move || producer.init_transactions(timeout)).await?;
            let error = match init {
                Ok(()) => {
                    tracing::info!(stage = self.stage, transactional_id = %self.transactional_id.clone(), "transactions ready");
                    return Ok(true);
                }
                Err(error) => error,
            };
            let unsupported = matches!(
                error.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::UnsupportedVersion
                        | RDKafkaErrorCode::UnsupportedFeature
                        | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                        | RDKafkaErrorCode::ClusterAuthorizationFailed
                )
            );
            if unsupported {
                return Err(RunError::TransactionsUnsupported {
                    stage: self.stage,
                    detail: error.to_string(),
                });
            }
            if let Failure::Fenced(detail) = classify(error.clone()) {
                return Err(RunError::Fenced {
                    stage: self.stage,
                    transactional_id: self.transactional_id.clone(),
                    detail,
                });
            }
            attempt += 1;
            tracing::warn!(stage = self.stage, %error, attempt, "cannot initialise transactions; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(false),
                _ = tokio::time::sleep(backoff(attempt)) => {}
            }
        }
    }

    /// One transaction: `records` produced (a record refused for good is replaced by its
    /// fallback in `records`, then the transaction is retried), `offsets` sent, committed.
    /// Returns how many records reached an output topic other than the DLQ.
    pub async fn run(
        &self,
        records: &mut [Option<OutgoingRecord>],
        offsets: &[((String, i32), i64)],
        metrics: &StageMetrics,
        abort: &CancellationToken,
    ) -> Result<u64, Failure> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.begin_transaction())
            .await
            .map_err(|_| Failure::Retry(KafkaError::Canceled))?
            .map_err(classify)?;
        let mut deliveries = Vec::with_capacity(records.len());
        for (index, slot) in records.iter_mut().enumerate() {
            while let Some(record) = slot {
                match send(&self.producer, record) {
                    Ok(delivery) => {
                        deliveries.push((index, delivery));
                        break;
                    }
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                        tokio::select! {
                            _ = abort.cancelled() => return Err(Failure::Aborted),
                            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                        }
                    }
                    // Refused for good: its fallback instead, or nothing if it has none.
                    Err(error) if is_permanent(&error) => fall_back(slot, &error, metrics),
                    Err(error) => return Err(classify(error)),
                }
            }
        }
        let mut emitted = 0;
        let mut refused = None;
        for (index, delivery) in deliveries {
            let outcome = tokio::select! {
                outcome = delivery => outcome,
                _ = abort.cancelled() => return Err(Failure::Aborted),
            };
            match outcome {
                Ok(Ok(_)) => {
                    let to_output = records[index]
                        .as_ref()
                        .is_some_and(|r| r.topic != self.dlq_topic);
                    emitted += u64::from(to_output);
                }
                Ok(Err((error, _))) if is_permanent(&error) => {
                    fall_back(&mut records[index], &error, metrics);
                    refused.get_or_insert(error);
                }
                Ok(Err((error, _))) => return Err(classify(error)),
                Err(_) => return Err(Failure::Retry(KafkaError::Canceled)),
            }
        }
        if let Some(error) = refused {
            // The transaction cannot commit with a failed record in it: run it again with
            // the fallbacks.
            return Err(Failure::Retry(error));
        }
        if let Some(consumer) = &self.consumer {
            let tpl = offsets_list(offsets).map_err(Failure::Retry)?;
            let metadata = consumer
                .group_metadata()
                .ok_or(Failure::Membership(KafkaError::Canceled))?;
            let producer = self.producer.clone();
            let timeout = self.call_timeout;
            tokio::task::spawn_blocking(move || {
                producer.send_offsets_to_transaction(&tpl, &metadata, timeout)
            })
            .await
            .map_err(|_| Failure::Retry(KafkaError::Canceled))?
            .map_err(classify)?;
        }
        self.commit(abort).await?;
        Ok(emitted)
    }

    /// Commits the open transaction, calling again while the error says a retry may work.
    async fn commit(&self, abort: &CancellationToken) -> Result<(), Failure> {
        let mut attempt = 0;
        loop {
            let producer = self.producer.clone();
            let timeout = self.call_timeout;
            let committed =
                tokio::task::spawn_blocking(move || producer.commit_transaction(timeout))
                    .await
                    .map_err(|_| Failure::Retry(KafkaError::Canceled))?;
            match committed {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(detail))
                    if detail.is_retriable()
                        && !detail.txn_requires_abort()
                        && !detail.is_fatal() =>
                {
                    attempt += 1;
                    tracing::warn!(stage = self.stage, error = %detail, attempt, "transaction commit did not complete; calling it again");
                    tokio::select! {
                        _ = abort.cancelled() => return Err(Failure::Aborted),
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                    }
                }
                Err(error) => return Err(classify(error)),
            }
        }
    }

    /// Aborts the open transaction, retrying while the broker cannot be reached. `false`
    /// when this cannot be known (the run is over anyway).
    pub async fn abort(&self) -> Result<bool, RunError> {
        for attempt in 1..=10 {
            let producer = self.producer.clone();
            let timeout = self.call_timeout;
            let aborted =
                tokio::task::spawn_blocking(move || producer.abort_transaction(timeout)).await?;
            match aborted {
                Ok(()) => return Ok(true),
                Err(error) => {
                    if let Failure::Fenced(detail) = classify(error.clone()) {
                        return Err(RunError::Fenced {
                            stage: self.stage,
                            transactional_id: self.transactional_id.clone(),
                            detail,
                        });
                    }
                    tracing::warn!(stage = self.stage, %error, attempt, "cannot abort the transaction; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
        Ok(false)
    }
}
