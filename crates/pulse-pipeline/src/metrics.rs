//! Prometheus metrics of the stage loop and the producers, registered once per process and
//! labelled by stage.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use pulse_core::DeadLetterKind;
use pulse_kafka::ConsumerLag;

type Labels = Vec<(String, String)>;

fn new_histogram_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

fn new_histogram_batch() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

/// Every metric family of the pipeline.
#[derive(Clone)]
pub struct PipelineMetrics {
    consumed: Family<Labels, Counter>,
    emitted: Family<Labels, Counter>,
    dead_lettered: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    commits: Family<Labels, Counter>,
    transactions: Family<Labels, Counter>,
    batch_size: Family<Labels, Histogram, fn() -> Histogram>,
    process_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    delivery_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Consumer lag per topic/partition, fed by librdkafka statistics.
    pub lag: ConsumerLag,
}

impl PipelineMetrics {
    /// Registers the families under `pulse_` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            consumed: Family::default(),
            emitted: Family::default(),
            dead_lettered: Family::default(),
            retries: Family::default(),
            refused: Family::default(),
            commits: Family::default(),
            transactions: Family::default(),
            batch_size: Family::new_with_constructor(new_histogram_batch),
            process_seconds: Family::new_with_constructor(new_histogram_seconds),
            delivery_seconds: Family::new_with_constructor(new_histogram_seconds),
            lag: ConsumerLag::default(),
        };
        let pulse = registry.sub_registry_with_prefix("pulse");
        pulse.register(
            "records_consumed",
            "Records consumed by a stage",
            metrics.consumed.clone(),
        );
        pulse.register(
            "records_produced",
            "Records produced to an output topic",
            metrics.emitted.clone(),
        );
        pulse.register(
            "records_dead_lettered",
            "Records sent to the DLQ, by reason",
            metrics.dead_lettered.clone(),
        );
        pulse.register(
            "retries",
            "Batches or deliveries retried after a failure",
            metrics.retries.clone(),
        );
        pulse.register(
            "records_refused",
            "Records the broker refused for good (too large, invalid); their fallback (a dead \
             letter, or a dead letter cut short) was produced instead",
            metrics.refused.clone(),
        );
        pulse.register("offset_commits", "Offset commits", metrics.commits.clone());
        pulse.register(
            "transactions",
            "Kafka transactions of a stage, by outcome (committed, aborted)",
            metrics.transactions.clone(),
        );
        pulse.register(
            "batch_size",
            "Records per processed batch",
            metrics.batch_size.clone(),
        );
        pulse.register(
            "process_seconds",
            "Time a stage takes to process one batch",
            metrics.process_seconds.clone(),
        );
        pulse.register(
            "delivery_seconds",
            "Time from producing a batch to its acknowledgement",
            metrics.delivery_seconds.clone(),
        );
        pulse.register(
            "consumer_lag",
            "Records behind the partition's high watermark",
            metrics.lag.clone(),
        );
        metrics
    }

    /// The metrics of one stage (or producer), resolved once.
    pub fn for_stage(&self, stage: &str) -> StageMetrics {
        let labels = vec![("stage".to_string(), stage.to_string())];
        // One family's lookups one after the other: `get_or_create` holds the family's lock
        // while its result lives, and a second lookup that inserts would wait for it.
        let committed_transactions = self
            .transactions
            .get_or_create(&transaction_labels(stage, "committed"))
            .clone();
        let aborted_transactions = self
            .transactions
            .get_or_create(&transaction_labels(stage, "aborted"))
            .clone();
        StageMetrics {
            stage: stage.to_string(),
            consumed: self.consumed.get_or_create(&labels).clone(),
            emitted: self.emitted.get_or_create(&labels).clone(),
            retries: self.retries.get_or_create(&labels).clone(),
            refused: self.refused.get_or_create(&labels).clone(),
            commits: self.commits.get_or_create(&labels).clone(),
            committed_transactions,
            aborted_transactions,
            batch_size: self.batch_size.get_or_create(&labels).clone(),
            process_seconds: self.process_seconds.get_or_create(&labels).clone(),
            delivery_seconds: self.delivery_seconds.get_or_create(&labels).clone(),
            dead_lettered: self.dead_lettered.clone(),
            dead_letters: Counter::default(),
        }
    }
}

fn transaction_labels(stage: &str, outcome: &str) -> Labels {
    vec![
        ("stage".to_string(), stage.to_string()),
        ("outcome".to_string(), outcome.to_string()),
    ]
}

/// Handles on one stage's metrics.
#[derive(Clone)]
pub struct StageMetrics {
    stage: String,
    pub consumed: Counter,
    pub emitted: Counter,
    pub retries: Counter,
    /// Records the broker refused for good.
    pub refused: Counter,
    pub commits: Counter,
    pub committed_transactions: Counter,
    pub aborted_transactions: Counter,
    pub batch_size: Histogram,
    pub process_seconds: Histogram,
    pub delivery_seconds: Histogram,
    dead_lettered: Family<Labels, Counter>,
    /// Dead letters of this stage over all reasons (for status lines; Prometheus gets
    /// them by reason).
    pub dead_letters: Counter,
}

impl StageMetrics {
    /// The stage these metrics belong to.
    pub fn name(&self) -> &str {
        &self.stage
    }

    /// Counts one dead letter of `kind`.
    pub fn dead_letter(&self, kind: DeadLetterKind) {
        self.dead_letters.inc();
        self.dead_lettered
            .get_or_create(&vec![
                ("stage".to_string(), self.stage.clone()),
                ("reason".to_string(), kind.as_str().to_string()),
            ])
            .inc();
    }
}
