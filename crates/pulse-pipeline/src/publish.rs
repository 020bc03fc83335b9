//! The producer side: drives the items of a source into the raw topic, keyed by post id,
//! with a bounded number of records awaiting acknowledgement; posts that fail validation and
//! lines that are not posts go to the DLQ with their reason and location.

use std::sync::atomic::{AtomicU64, Ordering};

use futures::stream::{FuturesUnordered, StreamExt};
use pulse_core::validate::{check_post, check_tombstone};
use pulse_core::{DeadLetterKind, Post, PostLimits};
use pulse_ingest::SourceItem;
use pulse_kafka::{DeadLetter, Origin};
use rdkafka::producer::FutureProducer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::delivery::{confirm, enqueue, Aborted, Delivered, OutgoingRecord};
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
    /// Largest record the producer sends (`kafka.max_record_bytes`); larger posts are
    /// dead-lettered (cut short) without being sent.
    pub max_record_bytes: usize,
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

/// Where a published record goes.
pub(crate) enum Destination {
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
                    let sent = match enqueue(&self.producer, record, &self.metrics, stop).await {
                        Ok(Some(sent)) => sent,
                        // Refused for good with no fallback: logged and counted there.
                        Ok(None) => continue,
                        Err(Aborted) => {
                            stopped = true;
                            unconfirmed += 1;
                            break;
                        }
                    };
                    let give_up = &give_up;
                    in_flight.push(async move {
                        (destination, confirm(&self.producer, sent, &self.metrics, give_up).await)
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

    /// The size of `post` as a record of the raw topic when it is more than
    /// `kafka.max_record_bytes`: such a post is refused for good, however often it is sent.
    pub fn oversized(&self, post: &Post) -> Option<usize> {
        let bytes = serde_json::to_vec(post).map_or(0, |record| record.len());
        (bytes > self.max_record_bytes).then_some(bytes)
    }

    /// Counts a confirmed record; `false` when it was not confirmed.
    fn count(
        &self,
        (destination, delivered): (Destination, Result<Delivered, Aborted>),
        tally: &PublishTally,
    ) -> bool {
        match (destination, delivered) {
            (Destination::Raw, Ok(Delivered::AsIs)) => {
                tally.posts.fetch_add(1, Ordering::Relaxed);
                self.metrics.emitted.inc();
            }
            // A post refused by the broker went to the DLQ instead; a dead letter cut short
            // is still one.
            (_, Ok(Delivered::Fallback)) | (Destination::Dlq, Ok(Delivered::AsIs)) => {
                tally.dead_letters.fetch_add(1, Ordering::Relaxed);
            }
            (_, Ok(Delivered::GivenUp)) => {}
            (_, Err(Aborted)) => return false,
        }
        true
    }

    /// The record an item becomes: a post or a tombstone for the raw topic (keyed by post
    /// id, with its dead letter as fallback), or a dead letter.
    pub(crate) fn outgoing(&self, item: SourceItem) -> (Destination, OutgoingRecord) {
        match item {
            SourceItem::Tombstone {
                tombstone,
                location,
            } => {
                let payload = serde_json::to_vec(&tombstone).unwrap_or_default();
                let key = Some(tombstone.id.clone().into_bytes());
                match check_tombstone(&tombstone, &self.limits) {
                    Ok(()) => {
                        let record =
                            OutgoingRecord::new(&self.raw_topic, key.clone(), payload.clone());
                        let (_, instead) = self.dead_letter(
                            location,
                            DeadLetterKind::RefusedByBroker,
                            "the broker refused the tombstone as a record".into(),
                            key,
                            payload,
                        );
                        (Destination::Raw, record.or_else(instead))
                    }
                    Err(rejection) => {
                        tracing::warn!(%location, reason = %rejection, "tombstone rejected");
                        self.dead_letter(
                            location,
                            rejection.kind(),
                            rejection.to_string(),
                            key,
                            payload,
                        )
                    }
                }
            }
            SourceItem::Post { post, location } => {
                let payload = serde_json::to_vec(&post).unwrap_or_default();
                match check_post(&post, &self.limits) {
                    Ok(()) if payload.len() > self.max_record_bytes => {
                        let error = format!(
                            "the post is {} bytes as a record, more than kafka.max_record_bytes ({})",
                            payload.len(),
                            self.max_record_bytes
                        );
                        tracing::warn!(%location, reason = %error, "post rejected");
                        let key = Some(post.id.into_bytes());
                        self.dead_letter(
                            location,
                            DeadLetterKind::RecordTooLarge,
                            error,
                            key,
                            payload,
                        )
                    }
                    Ok(()) => {
                        let key = Some(post.id.clone().into_bytes());
                        let record =
                            OutgoingRecord::new(&self.raw_topic, key.clone(), payload.clone());
                        let (_, instead) = self.dead_letter(
                            location,
                            DeadLetterKind::RefusedByBroker,
                            "the broker refused the post as a record (too large or invalid for the raw topic)".into(),
                            key,
                            payload,
                        );
                        (Destination::Raw, record.or_else(instead))
                    }
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
                self.dead_letter(location, kind, error, None, raw)
            }
        }
    }

    fn dead_letter(
        &self,
        location: String,
        kind: DeadLetterKind,
        error: String,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
    ) -> (Destination, OutgoingRecord) {
        if kind != DeadLetterKind::RefusedByBroker {
            self.metrics.dead_letter(kind);
        }
        let letter = DeadLetter {
            stage: "ingest".to_string(),
            error_kind: kind,
            error,
            origin: Origin::Location(location),
        };
        (
            Destination::Dlq,
            OutgoingRecord::dead_letter(&self.dlq_topic, key, payload, letter.headers()),
        )
    }
}
