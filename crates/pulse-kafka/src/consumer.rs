//! A consumer whose group membership keeps Pulse's offset bookkeeping right: on revocation
//! it commits what is handled of the revoked partitions and forgets them (so it never
//! commits a stale offset for a partition another member now owns); every rebalance is
//! counted, so a transactional stage knows when the records it holds may be re-read;
//! librdkafka's statistics feed a consumer-lag gauge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use pulse_core::config::KafkaConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::client::consumer_config;
use crate::offsets::{OffsetTracker, TopicPartition};

/// Consumer lag per topic and partition, as reported by librdkafka.
pub type ConsumerLag = Family<Vec<(String, String)>, Gauge>;

/// The consumer type every Pulse stage uses.
pub type PulseConsumer = StreamConsumer<PulseConsumerContext>;

/// Shared state between the consumer's callbacks and the stage loop.
pub struct PulseConsumerContext {
    tracker: Arc<Mutex<OffsetTracker>>,
    lag: ConsumerLag,
    rebalances: AtomicU64,
}

impl PulseConsumerContext {
    /// The offset bookkeeping of this consumer.
    pub fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        // A panic while holding this lock cannot leave the tracker half-updated in a way
        // that matters (each method is one map update), so a poisoned lock is recovered.
        self.tracker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many rebalances (revocations and assignments) this consumer has seen. Records
    /// fetched before a rebalance may be fetched again after it (an assignment starts at
    /// the committed offset), or belong to another member by then.
    pub fn rebalances(&self) -> u64 {
        self.rebalances.load(Ordering::SeqCst)
    }
}

impl ClientContext for PulseConsumerContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in statistics.topics {
            for (partition, partition_stats) in stats.partitions {
                // Partition -1 is librdkafka's internal "unassigned" bucket; lag -1 is unknown.
                if partition >= 0 && partition_stats.consumer_lag >= 0 {
                    self.lag
                        .get_or_create(&vec![
                            ("topic".to_string(), topic.clone()),
                            ("partition".to_string(), partition.to_string()),
                        ])
                        .set(partition_stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for PulseConsumerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let committable: Vec<(TopicPartition, i64)> = {
            let mut tracker = self.tracker();
            revoked
                .elements()
                .iter()
                .filter_map(|e| {
                    tracker
                        .revoke(e.topic(), e.partition())
                        .map(|offset| ((e.topic().to_string(), e.partition()), offset))
                })
                .collect()
        };
        tracing::info!(partitions = revoked.count(), "partitions revoked");
        if committable.is_empty() {
            return;
        }
        match offsets_list(&committable).and_then(|tpl| consumer.commit(&tpl, CommitMode::Sync)) {
            Ok(()) => tracing::info!(
                partitions = committable.len(),
                "committed handled offsets of revoked partitions"
            ),
            Err(error) => {
                tracing::warn!(%error, "cannot commit offsets of revoked partitions; the next owner re-reads them")
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        match rebalance {
            Rebalance::Assign(assigned) => {
                let partitions: Vec<String> = assigned
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}", e.topic(), e.partition()))
                    .collect();
                tracing::info!(partitions = %partitions.join(","), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

/// Builds a consumer in `group` subscribed to `topics`.
pub fn subscribe(
    config: &KafkaConfig,
    group: &str,
    topics: &[&str],
    lag: ConsumerLag,
) -> KafkaResult<Arc<PulseConsumer>> {
    let context = PulseConsumerContext {
        tracker: Arc::new(Mutex::new(OffsetTracker::default())),
        lag,
        rebalances: AtomicU64::new(0),
    };
    let consumer: PulseConsumer = consumer_config(config, group).create_with_context(context)?;
    consumer.subscribe(topics)?;
    Ok(Arc::new(consumer))
}

/// Commits every partition whose committable offset moved; returns how many were committed.
pub fn commit_handled(consumer: &PulseConsumer, mode: CommitMode) -> KafkaResult<usize> {
    let committable = consumer.context().tracker().take_committable();
    if committable.is_empty() {
        return Ok(0);
    }
    let tpl = offsets_list(&committable)?;
    match consumer.commit(&tpl, mode) {
        Ok(()) => Ok(committable.len()),
        // Nothing assigned any more (e.g. during a rebalance): nothing of ours to commit.
        Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => Ok(0),
        Err(error) => {
            // Hand the offsets back so the next attempt commits them.
            let mut tracker = consumer.context().tracker();
            tracker.uncommit(&committable);
            Err(error)
        }
    }
}

/// The offsets as a list for commits (or a transaction's `send_offsets_to_transaction`).
pub fn offsets_list(offsets: &[(TopicPartition, i64)]) -> KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, partition), offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    Ok(tpl)
}
