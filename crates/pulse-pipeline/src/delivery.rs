//! Producing a record and making sure it is delivered: a full local queue is waited out,
//! a failed delivery is produced again with backoff, until it succeeds or the run is aborted.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::metrics::StageMetrics;

/// A record to produce, owned so that it can be produced again after a failure.
#[derive(Debug, Clone)]
pub struct OutgoingRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Option<OwnedHeaders>,
}

impl OutgoingRecord {
    fn from_failed(message: OwnedMessage) -> Self {
        Self {
            topic: message.topic().to_string(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers: message.headers().cloned(),
        }
    }
}

/// Exponential backoff: 100 ms doubling up to 10 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(7))).min(Duration::from_secs(10))
}

/// Hands `record` to the producer's queue, waiting while the queue is full. `None` when
/// aborted first.
pub(crate) async fn enqueue(
    producer: &FutureProducer,
    record: &OutgoingRecord,
    metrics: &StageMetrics,
    abort: &CancellationToken,
) -> Option<DeliveryFuture> {
    let mut attempt = 0;
    loop {
        let mut future_record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&record.topic).payload(record.payload.as_slice());
        if let Some(key) = &record.key {
            future_record = future_record.key(key.as_slice());
        }
        if let Some(headers) = &record.headers {
            future_record = future_record.headers(headers.clone());
        }
        let pause = match producer.send_result(future_record) {
            Ok(delivery) => return Some(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Duration::from_millis(5)
            }
            Err((error, _)) => {
                tracing::warn!(%error, topic = %record.topic, "cannot produce record; retrying");
                metrics.retries.inc();
                attempt += 1;
                backoff(attempt)
            }
        };
        tokio::select! {
            _ = abort.cancelled() => return None,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Waits until the record behind `delivery` is acknowledged, producing it again after each
/// failure. `false` when aborted first.
pub(crate) async fn confirm(
    producer: &FutureProducer,
    mut delivery: DeliveryFuture,
    metrics: &StageMetrics,
    abort: &CancellationToken,
) -> bool {
    let mut attempt = 0;
    loop {
        let failed = tokio::select! {
            // A delivery that has completed wins over an abort that arrived meanwhile.
            biased;
            outcome = &mut delivery => match outcome {
                Ok(Ok(_)) => return true,
                Ok(Err((error, message))) => {
                    tracing::warn!(%error, topic = message.topic(), "delivery failed; producing again");
                    OutgoingRecord::from_failed(message)
                }
                // The producer went away: nothing more can be delivered.
                Err(_) => return false,
            },
            _ = abort.cancelled() => return false,
        };
        metrics.retries.inc();
        attempt += 1;
        tokio::select! {
            _ = abort.cancelled() => return false,
            _ = tokio::time::sleep(backoff(attempt)) => {}
        }
        match enqueue(producer, &failed, metrics, abort).await {
            Some(next) => delivery = next,
            None => return false,
        }
    }
}
