//! Runs a live source into Kafka, exactly once: each call's events (posts, updates and
//! tombstones to the raw topic, records that are not posts to the DLQ) and the checkpoint
//! that covers them are one transaction, the checkpoint keyed by source instance on the
//! compacted checkpoints topic. At start the last committed checkpoint is read back
//! (after `init_transactions` has aborted whatever a killed predecessor left open), so a
//! restart resumes exactly where the log says: nothing is skipped and, for readers of
//! committed data, nothing is published twice.

use std::sync::atomic::Ordering;
use std::time::Duration;

use pulse_core::config::KafkaConfig;
use pulse_ingest::live::{checkpoint_key, LiveSource, SourceError};
use pulse_kafka::replay::{ReplayRange, ReplayReader, ReplayStart};
use tokio_util::sync::CancellationToken;

use crate::delivery::{backoff, OutgoingRecord};
use crate::publish::{Destination, PublishTally, Publisher};
use crate::runner::RunError;
use crate::transactional::{Failure, Transaction};

/// Why a source run ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("source {key}: another process runs this source instance (its transactional id {transactional_id} was taken over: {detail})")]
    Fenced {
        key: String,
        transactional_id: String,
        detail: String,
    },
    #[error("source {key}: the broker cannot run transactions: {detail}")]
    TransactionsUnsupported { key: String, detail: String },
    #[error("source {key}: {error}")]
    Run { key: String, error: RunError },
}

/// Where a live source's records go and how its transactions run.
pub struct LiveRun {
    /// Posts and dead letters; its producer must be transactional, with
    /// `transactional_id`.
    pub publisher: Publisher,
    pub transactional_id: String,
    pub checkpoints_topic: String,
    /// To read the checkpoint back at start.
    pub kafka: KafkaConfig,
    pub call_timeout: Duration,
    /// How long the transaction in hand may take to finish after a stop.
    pub drain: Duration,
    /// How often the source's status line is logged.
    pub status_every: Duration,
    /// A position that moved without events is committed at most this often.
    pub checkpoint_every: Duration,
}

/// The transactional id of a source instance, stable across restarts so that a restart
/// fences (and aborts what was left open by) the process it replaces.
pub fn transactional_id(prefix: &str, kind: &str, instance: &str) -> String {
    format!("{prefix}-source-{kind}-{instance}")
}

impl LiveRun {
    /// Runs `source` until `stop`; the transaction in hand when it comes is finished (for
    /// up to the drain deadline) or aborted. A source error that retrying cannot mend ends
    /// the run.
    pub async fn run<S: LiveSource>(
        &self,
        source: &mut S,
        tally: &PublishTally,
        stop: &CancellationToken,
    ) -> Result<(), LiveError> {
        let key = checkpoint_key(source.kind(), source.instance());
        let transaction = Transaction {
            stage: "ingest",
            transactional_id: self.transactional_id.clone(),
            dlq_topic: self.publisher.dlq_topic.clone(),
            producer: self.publisher.producer.clone(),
            consumer: None,
            call_timeout: self.call_timeout,
        };
        let ready = transaction
            .init(stop)
            .await
            .map_err(|error| self.run_error(&key, error))?;
        if !ready {
            return Ok(());
        }
        let Some(mut committed) = self.read_checkpoint(&key, stop).await else {
            return Ok(());
        };
        source.restore(committed.as_deref())?;
        tracing::info!(source = %key, resumed = committed.is_some(), "source started");
        let mut status_at = tokio::time::Instant::now() + self.status_every;
        let mut last_commit = tokio::time::Instant::now();
        while !stop.is_cancelled() {
            if tokio::time::Instant::now() >= status_at {
                tracing::info!(source = %key, status = %source.status(), "source status");
                status_at = tokio::time::Instant::now() + self.status_every;
            }
            let items = source.next_events(stop).await?;
            // Nothing to publish, but the position can have moved (events that matched no
            // channel): committed now and then, so that a restart does not read them all
            // again. The checkpoint is serialized only when it may be committed.
            if items.is_empty() && last_commit.elapsed() < self.checkpoint_every {
                continue;
            }
            let checkpoint = source.checkpoint()?;
            if items.is_empty() && committed.as_deref() == Some(checkpoint.as_slice()) {
                last_commit = tokio::time::Instant::now();
                continue;
            }
            // A checkpoint the broker refuses would leave the source unable to commit
            // anything: say so rather than retry for ever.
            if checkpoint.len() > self.publisher.max_record_bytes {
                return Err(SourceError::Checkpoint(format!(
                    "{key}: the checkpoint is {} bytes, over kafka.max_record_bytes ({}); \
                     lower the source's seen_capacity (or recheck_max, tracked_capacity)",
                    checkpoint.len(),
                    self.publisher.max_record_bytes
                ))
                .into());
            }
            let mut records: Vec<Option<OutgoingRecord>> = Vec::with_capacity(items.len() + 1);
            let mut raw = 0;
            for item in items {
                let (destination, record) = self.publisher.outgoing(item);
                raw += u64::from(matches!(destination, Destination::Raw));
                records.push(Some(record));
            }
            records.push(Some(OutgoingRecord::new(
                &self.checkpoints_topic,
                Some(key.clone().into_bytes()),
                checkpoint.clone(),
            )));
            let dead_letters = records.len() as u64 - 1 - raw;
            match self.commit(&transaction, &mut records, stop).await {
                Ok(true) => {
                    committed = Some(checkpoint);
                    last_commit = tokio::time::Instant::now();
                    tally.posts.fetch_add(raw, Ordering::Relaxed);
                    tally
                        .dead_letters
                        .fetch_add(dead_letters, Ordering::Relaxed);
                    self.publisher.metrics.emitted.inc_by(raw);
                }
                Ok(false) => {
                    // Aborted at the drain deadline: the events will be served again.
                    source.restore(committed.as_deref())?;
                }
                Err(error) => return Err(self.run_error(&key, error)),
            }
        }
        tracing::info!(source = %key, status = %source.status(), "source stopped");
        Ok(())
    }

    /// Commits one transaction of `records`, retrying what can be retried; `false` if it
    /// was aborted because a stop outlasted the drain deadline.
    async fn commit(
        &self,
        transaction: &Transaction,
        records: &mut [Option<OutgoingRecord>],
        stop: &CancellationToken,
    ) -> Result<bool, RunError> {
        // After a stop, the drain deadline aborts the transaction through `abort`, which
        // every wait of the transaction watches.
        let abort = CancellationToken::new();
        let deadline = tokio::spawn({
            let (stop, abort, drain) = (stop.clone(), abort.clone(), self.drain);
            async move {
                stop.cancelled().await;
                tokio::time::sleep(drain).await;
                abort.cancel();
            }
        });
        let committed = self.commit_until(transaction, records, &abort).await;
        deadline.abort();
        committed
    }

    async fn commit_until(
        &self,
        transaction: &Transaction,
        records: &mut [Option<OutgoingRecord>],
        abort: &CancellationToken,
    ) -> Result<bool, RunError> {
        let metrics = &self.publisher.metrics;
        let mut attempt = 0;
        loop {
            let outcome = transaction.run(records, &[], metrics, abort).await;
            let failure = match outcome {
                Ok(_) => {
                    metrics.committed_transactions.inc();
                    return Ok(true);
                }
                Err(failure) => failure,
            };
            metrics.aborted_transactions.inc();
            match failure {
                Failure::Fenced(detail) => {
                    return Err(RunError::Fenced {
                        stage: "ingest",
                        transactional_id: transaction.transactional_id.clone(),
                        detail,
                    })
                }
                Failure::Aborted => {
                    transaction.abort().await?;
                    return Ok(false);
                }
                Failure::Retry(error) | Failure::Membership(error) => {
                    attempt += 1;
                    metrics.retries.inc();
                    tracing::warn!(%error, attempt, records = records.len(), "source transaction failed; aborting and retrying it");
                    if !transaction.abort().await? {
                        return Ok(false);
                    }
                    tokio::select! {
                        _ = abort.cancelled() => return Ok(false),
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                    }
                }
            }
        }
    }

    /// The last committed checkpoint of `key`, read from the start of the checkpoints
    /// topic to its end; retried while Kafka cannot be read. `None` if stopped first.
    async fn read_checkpoint(
        &self,
        key: &str,
        stop: &CancellationToken,
    ) -> Option<Option<Vec<u8>>> {
        let mut attempt = 0;
        loop {
            let read = tokio::select! {
                _ = stop.cancelled() => return None,
                read = last_value(&self.kafka, &self.checkpoints_topic, key) => read,
            };
            match read {
                Ok(value) => return Some(value),
                Err(error) => {
                    attempt += 1;
                    tracing::warn!(source = %key, %error, attempt, "cannot read the checkpoint; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                    }
                }
            }
        }
    }

    fn run_error(&self, key: &str, error: RunError) -> LiveError {
        match error {
            RunError::Fenced {
                transactional_id,
                detail,
                ..
            } => LiveError::Fenced {
                key: key.to_string(),
                transactional_id,
                detail,
            },
            RunError::TransactionsUnsupported { detail, .. } => {
                LiveError::TransactionsUnsupported {
                    key: key.to_string(),
                    detail,
                }
            }
            error => LiveError::Run {
                key: key.to_string(),
                error,
            },
        }
    }
}

/// The value of the last committed record keyed `key` in `topic`.
async fn last_value(
    kafka: &KafkaConfig,
    topic: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, pulse_kafka::replay::ReplayError> {
    let mut reader = ReplayReader::open(
        kafka,
        ReplayRange {
            topic: topic.to_string(),
            start: ReplayStart::Offset(0),
            end: None,
        },
    )
    .await?;
    let mut last = None;
    while let Some(records) = reader.next_batch(1_000, Duration::from_millis(50)).await? {
        for record in records {
            if record.key.as_deref() == Some(key.as_bytes()) {
                last = record.payload;
            }
        }
    }
    Ok(last)
}
