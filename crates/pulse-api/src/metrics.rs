//! Prometheus metrics of the API: requests by route template, method and status, and their
//! latency by route, recorded by a middleware; the batch watermark, which the alert on stale
//! rollups reads; and `/metrics`, the process's registry as OpenMetrics text.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ApiState;

type Labels = Vec<(String, String)>;

fn new_latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The API's metric families; cheap to clone.
#[derive(Clone)]
pub struct ApiMetrics {
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    watermark: Gauge<f64, AtomicU64>,
}

impl ApiMetrics {
    /// Registers `pulse_http_requests_total`, `pulse_http_request_seconds` and
    /// `pulse_batch_watermark_timestamp_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(new_latency_histogram),
            watermark: Gauge::default(),
        };
        registry.register(
            "pulse_http_requests",
            "API requests by route template, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "pulse_http_request_seconds",
            "API request latency by route template, until the response head (event streams: \
             until the stream opened)",
            metrics.latency.clone(),
        );
        registry.register(
            "pulse_batch_watermark_timestamp_seconds",
            "End of the exact batch rollups (Unix seconds), read from the batch layer every \
             10 s; 0 until a recompute has run",
            metrics.watermark.clone(),
        );
        metrics
    }

    /// Sets the batch watermark gauge to `seconds` since the Unix epoch.
    pub fn set_watermark(&self, seconds: f64) {
        self.watermark.set(seconds);
    }

    /// Counts one request to `route` (a template such as `/api/v1/posts/{id}`) and its
    /// latency.
    pub fn record(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.latency
            .get_or_create(&vec![("route".to_string(), route.to_string())])
            .observe(seconds);
        self.requests
            .get_or_create(&vec![
                ("route".to_string(), route.to_string()),
                ("method".to_string(), method.to_string()),
                ("status".to_string(), status.to_string()),
            ])
            .inc();
    }
}

/// What `/metrics` serves and the families the middleware records into.
#[derive(Clone)]
pub struct Telemetry {
    pub metrics: ApiMetrics,
    pub registry: Arc<Registry>,
}

/// How often the API reads the batch watermark for its gauge: far below the hour a
/// recompute covers, at the cost of one single-row read each time.
const WATERMARK_REFRESH: Duration = Duration::from_secs(10);

/// Keeps the watermark gauge current until the server shuts down. A failed read keeps the
/// last value: the alert on its age then fires if the batch layer stays unreachable.
pub(crate) async fn refresh_watermark(state: ApiState) {
    let Some(telemetry) = state.telemetry.clone() else {
        return;
    };
    let mut ticker = tokio::time::interval(WATERMARK_REFRESH);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match state.batch.watermark().await {
            Ok(Some(until)) => telemetry.metrics.set_watermark(until.timestamp() as f64),
            Ok(None) => telemetry.metrics.set_watermark(0.0),
            Err(error) => tracing::warn!(%error, "cannot read the batch watermark"),
        }
    }
}

/// Middleware: counts every request and times it, by the route it matched (so ids in paths
/// do not make new series).
pub async fn record(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(telemetry) = state.telemetry.clone() else {
        return next.run(request).await;
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    telemetry.metrics.record(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub async fn exposition(State(state): State<ApiState>) -> Response {
    match &state.telemetry {
        Some(telemetry) => openmetrics(&telemetry.registry),
        None => {
            crate::ApiError::not_found("metrics are not enabled on this server").into_response()
        }
    }
}

/// `registry` as an OpenMetrics text response (what every Pulse `/metrics` serves).
pub fn openmetrics(registry: &Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {error}"),
        )
            .into_response(),
    }
}
