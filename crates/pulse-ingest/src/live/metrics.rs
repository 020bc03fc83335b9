//! Prometheus metrics of a live source instance: requests by status, events by kind, the
//! rate-limit budget left and how far behind real time the newest post is.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The metrics of one source instance, labelled by kind and instance.
#[derive(Clone, Default)]
pub struct SourceMetrics {
    labels: Labels,
    requests: Family<Labels, Counter>,
    events: Family<Labels, Counter>,
    skipped: Family<Labels, Counter>,
    rate_limit_remaining: Family<Labels, Gauge>,
    lag_seconds: Family<Labels, Gauge>,
}

impl SourceMetrics {
    /// Registers the families under `pulse_source_` in `registry`.
    pub fn register(registry: &mut Registry, kind: &str, instance: &str) -> Self {
        let metrics = Self::unregistered(kind, instance);
        let source = registry.sub_registry_with_prefix("pulse_source");
        source.register(
            "requests",
            "Requests made to a source's API, by HTTP status (or `network`)",
            metrics.requests.clone(),
        );
        source.register(
            "events",
            "Events a source handed out: post, update, tombstone, malformed",
            metrics.events.clone(),
        );
        source.register(
            "skipped",
            "Items of a source's API that were skipped, by reason",
            metrics.skipped.clone(),
        );
        source.register(
            "rate_limit_remaining",
            "Requests the API says are left in its current rate-limit window",
            metrics.rate_limit_remaining.clone(),
        );
        source.register(
            "lag_seconds",
            "Seconds between now and the creation of the newest post handed out",
            metrics.lag_seconds.clone(),
        );
        metrics
    }

    /// Metrics that are counted but not exported (tests, one-off runs).
    pub fn unregistered(kind: &str, instance: &str) -> Self {
        Self {
            labels: vec![
                ("source".into(), kind.into()),
                ("instance".into(), instance.into()),
            ],
            ..Self::default()
        }
    }

    fn with(&self, key: &str, value: &str) -> Labels {
        let mut labels = self.labels.clone();
        labels.push((key.into(), value.into()));
        labels
    }

    /// A request answered with `status` (`200`, `429`, `network`...).
    pub fn request(&self, status: &str) {
        self.requests
            .get_or_create(&self.with("status", status))
            .inc();
    }

    /// Requests answered with `status` so far.
    pub fn requests(&self, status: &str) -> u64 {
        self.requests
            .get_or_create(&self.with("status", status))
            .get()
    }

    /// An event of `kind` handed out.
    pub fn event(&self, kind: &str) {
        self.events.get_or_create(&self.with("event", kind)).inc();
    }

    /// Events of `kind` handed out so far.
    pub fn events(&self, kind: &str) -> u64 {
        self.events.get_or_create(&self.with("event", kind)).get()
    }

    /// An item skipped for `reason`.
    pub fn skip(&self, reason: &str) {
        self.skipped
            .get_or_create(&self.with("reason", reason))
            .inc();
    }

    /// Items skipped for `reason` so far.
    pub fn skipped(&self, reason: &str) -> u64 {
        self.skipped
            .get_or_create(&self.with("reason", reason))
            .get()
    }

    pub fn set_rate_limit_remaining(&self, remaining: f64) {
        self.rate_limit_remaining
            .get_or_create(&self.labels)
            .set(remaining.max(0.0) as i64);
    }

    pub fn set_lag_seconds(&self, lag: i64) {
        self.lag_seconds.get_or_create(&self.labels).set(lag.max(0));
    }
}
