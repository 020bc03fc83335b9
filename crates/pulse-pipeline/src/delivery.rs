//! Producing a record and making sure it is delivered: a full local queue is waited out,
//! a failed delivery is produced again with backoff, until it succeeds or the run is aborted.
//! A record the broker will never take (too large, invalid) is not retried: what it says to
//! produce instead is produced (a dead letter; a dead letter's own fallback is its payload
//! cut to [`DEAD_LETTER_PAYLOAD_LIMIT`]), so one bad record never blocks a partition.

use std::time::Duration;

use pulse_core::DeadLetterKind;
use pulse_kafka::dlq::header;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::metrics::StageMetrics;

/// Most payload bytes a dead letter keeps when its whole payload was refused by the broker.
pub const DEAD_LETTER_PAYLOAD_LIMIT: usize = 64 * 1024;

/// A record to produce, owned so that it can be produced again after a failure.
#[derive(Debug, Clone)]
pub struct OutgoingRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Option<OwnedHeaders>,
    /// What to produce instead if the broker refuses this record for good.
    pub on_refusal: Option<Box<OutgoingRecord>>,
    /// The dead-letter kind to count when this record is produced as a fallback.
    pub counts_as: Option<DeadLetterKind>,
}

impl OutgoingRecord {
    /// A record with no fallback.
    pub fn new(topic: &str, key: Option<Vec<u8>>, payload: Vec<u8>) -> Self {
        Self {
            topic: topic.to_string(),
            key,
            payload,
            headers: None,
            on_refusal: None,
            counts_as: None,
        }
    }

    /// A dead letter (`headers` name stage, error and origin) whose fallback is the same
    /// letter with its payload cut to [`DEAD_LETTER_PAYLOAD_LIMIT`] bytes, marked as cut.
    pub fn dead_letter(
        topic: &str,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        headers: OwnedHeaders,
    ) -> Self {
        let size = payload.len();
        let cut = payload[..size.min(DEAD_LETTER_PAYLOAD_LIMIT)].to_vec();
        let cut_headers = headers
            .clone()
            .insert(Header {
                key: header::PAYLOAD_BYTES,
                value: Some(size.to_string().as_bytes()),
            })
            .insert(Header {
                key: header::PAYLOAD_TRUNCATED,
                value: Some("true".as_bytes()),
            });
        Self {
            topic: topic.to_string(),
            key: key.clone(),
            payload,
            headers: Some(headers),
            on_refusal: Some(Box::new(Self {
                topic: topic.to_string(),
                key,
                payload: cut,
                headers: Some(cut_headers),
                on_refusal: None,
                counts_as: None,
            })),
            counts_as: None,
        }
    }

    /// This record, counted as a dead letter of `kind` when it is produced as a fallback.
    pub fn counted_as(mut self, kind: DeadLetterKind) -> Self {
        self.counts_as = Some(kind);
        self
    }

    /// This record with `fallback` produced in its place if the broker refuses it.
    pub fn or_else(mut self, fallback: OutgoingRecord) -> Self {
        self.on_refusal = Some(Box::new(fallback));
        self
    }

    fn describe(&self) -> String {
        format!("{} bytes to {}", self.payload.len(), self.topic)
    }
}

/// Errors after which producing the same record again cannot succeed.
pub(crate) fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
        )
    )
}

/// How long to pause after the `failures`-th consume error in a row. librdkafka reports
/// broker connection trouble as consume errors while it reconnects by itself, and queues
/// them: after an outage the consumer reads a backlog of stale ones while the broker is
/// back. Those are passed over at once (librdkafka paces its reconnects); other errors
/// back off briefly.
pub(crate) fn consume_pause(error: &KafkaError, failures: u32) -> Duration {
    let transient = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NetworkException
        )
    );
    if transient {
        Duration::ZERO
    } else {
        backoff(failures).min(Duration::from_secs(1))
    }
}

/// Exponential backoff: 100 ms doubling up to 10 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(7))).min(Duration::from_secs(10))
}

/// A record handed to the producer: its delivery, and the record itself (to produce again,
/// or to fall back from).
pub(crate) struct Sent {
    pub delivery: DeliveryFuture,
    pub record: OutgoingRecord,
    /// Whether `record` is a fallback of the record first given.
    pub fell_back: bool,
}

/// What became of a record once confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// The record itself was acknowledged.
    AsIs,
    /// It was refused for good and its fallback was acknowledged instead.
    Fallback,
    /// It was refused for good and had no fallback (logged as an error, counted).
    GivenUp,
}

impl Sent {
    fn delivered(&self) -> Delivered {
        if self.fell_back {
            Delivered::Fallback
        } else {
            Delivered::AsIs
        }
    }
}

/// Hands `record` to the producer's queue, waiting while the queue is full. A record the
/// producer refuses for good is replaced by its fallback (logged and counted); one without
/// a fallback is given up (`Ok(None)`, logged as an error). `Err` when aborted first.
pub(crate) async fn enqueue(
    producer: &FutureProducer,
    mut record: OutgoingRecord,
    metrics: &StageMetrics,
    abort: &CancellationToken,
) -> Result<Option<Sent>, Aborted> {
    let mut attempt = 0;
    let mut fell_back = false;
    loop {
        let pause = match send(producer, &record) {
            Ok(delivery) => {
                return Ok(Some(Sent {
                    delivery,
                    record,
                    fell_back,
                }))
            }
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                Duration::from_millis(5)
            }
            Err(error) if is_permanent(&error) => match refused(record, &error, metrics) {
                Some(fallback) => {
                    record = fallback;
                    fell_back = true;
                    continue;
                }
                None => return Ok(None),
            },
            Err(error) => {
                tracing::warn!(%error, topic = %record.topic, "cannot produce record; retrying");
                metrics.retries.inc();
                attempt += 1;
                backoff(attempt)
            }
        };
        tokio::select! {
            _ = abort.cancelled() => return Err(Aborted),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// The run was aborted before a record could be handed over or confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Aborted;

/// Produces `record` once, without waiting.
pub(crate) fn send(
    producer: &FutureProducer,
    record: &OutgoingRecord,
) -> Result<DeliveryFuture, KafkaError> {
    let mut future_record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(&record.topic).payload(record.payload.as_slice());
    if let Some(key) = &record.key {
        future_record = future_record.key(key.as_slice());
    }
    if let Some(headers) = &record.headers {
        future_record = future_record.headers(headers.clone());
    }
    producer
        .send_result(future_record)
        .map_err(|(error, _)| error)
}

/// A record refused for good: its fallback, if it has one.
pub(crate) fn refused(
    record: OutgoingRecord,
    error: &KafkaError,
    metrics: &StageMetrics,
) -> Option<OutgoingRecord> {
    metrics.refused.inc();
    let description = record.describe();
    match record.on_refusal {
        Some(fallback) => {
            tracing::warn!(%error, refused = description, instead = fallback.describe(), "broker refuses record for good; producing its fallback");
            if let Some(kind) = fallback.counts_as {
                metrics.dead_letter(kind);
            }
            Some(*fallback)
        }
        None => {
            tracing::error!(%error, refused = description, headers = ?record.headers.as_ref().map(header_names), "broker refuses record for good and it has no fallback; given up");
            None
        }
    }
}

fn header_names(headers: &OwnedHeaders) -> Vec<String> {
    headers.iter().map(|h| h.key.to_string()).collect()
}

/// Waits until the record behind `sent` is acknowledged, producing it again after each
/// failure (its fallback after a permanent one). `Err` when aborted first.
pub(crate) async fn confirm(
    producer: &FutureProducer,
    mut sent: Sent,
    metrics: &StageMetrics,
    abort: &CancellationToken,
) -> Result<Delivered, Aborted> {
    let mut attempt = 0;
    loop {
        let error = tokio::select! {
            // A delivery that has completed wins over an abort that arrived meanwhile.
            biased;
            outcome = &mut sent.delivery => match outcome {
                Ok(Ok(_)) => return Ok(sent.delivered()),
                Ok(Err((error, _))) => error,
                // The producer went away: nothing more can be delivered.
                Err(_) => return Err(Aborted),
            },
            _ = abort.cancelled() => return Err(Aborted),
        };
        let fell_back = sent.fell_back;
        let mut record = sent.record;
        if is_permanent(&error) {
            match refused(record, &error, metrics) {
                Some(fallback) => record = fallback,
                None => return Ok(Delivered::GivenUp),
            }
        } else {
            tracing::warn!(%error, topic = %record.topic, "delivery failed; producing again");
            metrics.retries.inc();
            attempt += 1;
            tokio::select! {
                _ = abort.cancelled() => return Err(Aborted),
                _ = tokio::time::sleep(backoff(attempt)) => {}
            }
        }
        match enqueue(producer, record, metrics, abort).await? {
            Some(mut next) => {
                next.fell_back |= fell_back || is_permanent(&error);
                sent = next;
            }
            None => return Ok(Delivered::GivenUp),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_falls_back_to_a_cut_copy_that_says_so() {
        let headers = OwnedHeaders::new().insert(Header {
            key: header::STAGE,
            value: Some("enrich".as_bytes()),
        });
        let letter = OutgoingRecord::dead_letter("dlq", None, vec![b'x'; 200_000], headers);
        assert_eq!(letter.payload.len(), 200_000);
        let cut = letter.on_refusal.expect("fallback");
        assert_eq!(cut.payload.len(), DEAD_LETTER_PAYLOAD_LIMIT);
        assert!(cut.on_refusal.is_none());
        let map = pulse_kafka::dlq::headers_as_map(cut.headers.as_ref().expect("headers"));
        assert_eq!(map[header::STAGE], "enrich");
        assert_eq!(map[header::PAYLOAD_BYTES], "200000");
        assert_eq!(map[header::PAYLOAD_TRUNCATED], "true");
    }

    #[test]
    fn stale_connection_errors_are_passed_over_at_once() {
        let down = KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(consume_pause(&down, 30), Duration::ZERO);
        let other = KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert_eq!(consume_pause(&other, 1), Duration::from_millis(200));
        assert_eq!(consume_pause(&other, 30), Duration::from_secs(1));
    }

    #[test]
    fn size_and_validity_refusals_are_permanent() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(is_permanent(&too_large));
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert!(!is_permanent(&down));
        let full = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
        assert!(!is_permanent(&full));
    }
}
