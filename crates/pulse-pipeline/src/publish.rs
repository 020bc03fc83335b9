//! The producer side: drives the items of a source into the raw topic, keyed by post id,
//! with a bounded number of records awaiting acknowledgement; posts that fail validation and
//! lines that are not posts go to the DLQ with their reason and location.

use std::sync::atomic::{AtomicU64, Ordering};

use futures::stream::{FuturesUnordered, StreamExt};
use pulse_core::validate::check_post;
use pulse_core::PostLimits;
use pulse_ingest::SourceItem;
use pulse_kafka::{DeadLetter, Origin};
use rdkafka::producer::FutureProducer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::delivery::{confirm, enqueue, OutgoingRecord};
use crate::metrics::StageMetrics;

/// Counts of a publishing run, readable while it runs (for progress).
#[derive(Debug, Default)]
pub struct PublishTally {
    /// Posts acknowledged by the broker on the raw topic.
    pub posts: AtomicU64,
    /// Records acknowledged on the DLQ.
    pub dead_letters: AtomicU64,
}

/// Where published records go.
pub struct Publisher {
    pub producer: FutureProducer,
    pub raw_topic: String,
    pub dlq_topic: String,
    pub limits: PostLimits,
    /// Records awaiting acknowledgement at once.
    pub max_in_flight: usize,
    pub metrics: StageMetrics,
}

/// Publishing stopped before every item was acknowledged.
#[derive(Debug, thiserror::Error)]
#[error(
    "publishing was interrupted: {unconfirmed} records sent were not confirmed and the rest \
     of the input was not published; publishing the same input again is safe (same ids)"
)]
pub struct Interrupted {
    /// Records handed to the producer whose delivery was not confirmed.
    pub unconfirmed: usize,
}

enum Destination {
    Raw,
    Dlq,
}

impl Publisher {
    /// Publishes every item received until the channel closes; returns once all are
    /// acknowledged. `abort` stops early (Ctrl-C).
    pub async fn publish(
        &self,
        mut items: mpsc::Receiver<SourceItem>,
        tally: &PublishTally,
        abort: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let mut in_flight = FuturesUnordered::new();
        let mut interrupted = false;
        let mut unconfirmed = 0;
        loop {
            let item = tokio::select! {
                _ = abort.cancelled() => { interrupted = true; break; }
                item = items.recv() => item,
            };
            let Some(item) = item else { break };
            let (destination, record) = self.outgoing(item);
            let Some(delivery) = enqueue(&self.producer, &record, &self.metrics, abort).await
            else {
                interrupted = true;
                unconfirmed += 1;
                break;
            };
            in_flight.push(async move {
                (
                    destination,
                    confirm(&self.producer, delivery, &self.metrics, abort).await,
                )
            });
            while in_flight.len() >= self.max_in_flight.max(1) {
                if let Some(done) = in_flight.next().await {
                    if !self.count(done, tally) {
                        interrupted = true;
                        unconfirmed += 1;
                    }
                }
            }
        }
        while let Some(done) = in_flight.next().await {
            if !self.count(done, tally) {
                interrupted = true;
                unconfirmed += 1;
            }
        }
        if interrupted {
            return Err(Interrupted { unconfirmed });
        }
        Ok(())
    }

    fn count(&self, (destination, delivered): (Destination, bool), tally: &PublishTally) -> bool {
        if delivered {
            match destination {
                Destination::Raw => {
                    tally.posts.fetch_add(1, Ordering::Relaxed);
                    self.metrics.emitted.inc();
                }
                Destination::Dlq => {
                    tally.dead_letters.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        delivered
    }

    fn outgoing(&self, item: SourceItem) -> (Destination, OutgoingRecord) {
        match item {
            SourceItem::Post { post, location } => {
                let payload = serde_json::to_vec(&post).unwrap_or_default();
                match check_post(&post, &self.limits) {
                    Ok(()) => (
                        Destination::Raw,
                        OutgoingRecord {
                            topic: self.raw_topic.clone(),
                            key: Some(post.id.into_bytes()),
                            payload,
                            headers: None,
                        },
                    ),
                    Err(rejection) => {
                        tracing::warn!(%location, reason = %rejection, "post rejected");
                        self.dead_letter(
                            location,
                            rejection.kind(),
                            rejection.to_string(),
                            Some(post.id.into_bytes()),
                            payload,
                        )
                    }
                }
            }
            SourceItem::Malformed {
                location,
                kind,
                error,
                raw,
            } => {
                tracing::warn!(%location, reason = %error, "malformed record");
                self.dead_letter(location, &kind, error, None, raw)
            }
        }
    }

    fn dead_letter(
        &self,
        location: String,
        kind: &str,
        error: String,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
    ) -> (Destination, OutgoingRecord) {
        self.metrics.dead_letter(kind);
        let letter = DeadLetter {
            stage: "ingest".to_string(),
            error_kind: kind.to_string(),
            error,
            origin: Origin::Location(location),
        };
        (
            Destination::Dlq,
            OutgoingRecord {
                topic: self.dlq_topic.clone(),
                key,
                payload,
                headers: Some(letter.headers()),
            },
        )
    }
}
