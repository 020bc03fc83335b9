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

/// After a stop, how long records already sent may take to be confirmed.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(15);

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
    /// acknowledged. `stop` (Ctrl-C) ends the reading of items; records already sent are
    /// still confirmed, for up to [`DRAIN`].
    pub async fn publish(
        &self,
        mut items: mpsc::Receiver<SourceItem>,
        tally: &PublishTally,
        stop: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let give_up = CancellationToken::new();
        let mut in_flight = FuturesUnordered::new();
        let mut unconfirmed = 0;
        let mut stopped = false;
        let capacity = self.max_in_flight.max(1);
        loop {
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    unconfirmed += usize::from(!self.count(done, tally));
                }
                _ = stop.cancelled() => {
                    stopped = true;
                    break;
                }
                item = items.recv(), if in_flight.len() < capacity => {
                    let Some(item) = item else { break };
                    let (destination, record) = self.outgoing(item);
                    let Some(delivery) = enqueue(&self.producer, &record, &self.metrics, stop).await else {
                        stopped = true;
                        unconfirmed += 1;
                        break;
                    };
                    let give_up = &give_up;
                    in_flight.push(async move {
                        (destination, confirm(&self.producer, delivery, &self.metrics, give_up).await)
                    });
                }
            }
        }
        let confirm_all = async {
            let mut failed = 0;
            while let Some(done) = in_flight.next().await {
                failed += usize::from(!self.count(done, tally));
            }
            failed
        };
        if !stopped {
            confirm_all.await;
            return Ok(());
        }
        match tokio::time::timeout(DRAIN, confirm_all).await {
            Ok(failed) => unconfirmed += failed,
            Err(_) => {
                give_up.cancel();
                while let Some(done) = in_flight.next().await {
                    unconfirmed += usize::from(!self.count(done, tally));
                }
            }
        }
        Err(Interrupted { unconfirmed })
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
