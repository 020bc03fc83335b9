//! Pulse's query API: the HTTP face of the speed layer (live windows, channels), the batch
//! layer (stored posts, cursor paging), the enricher (ad-hoc analysis) and the producers'
//! publisher (authenticated ingest), plus the live dashboard's static files at `/`.
//!
//! Handlers are thin: they parse parameters into the stores' queries and map the stores'
//! errors onto statuses. Every error is JSON `{error, detail}`. What a history answer is,
//! the merge of both layers, is decided in [`serving`], apart from HTTP.

mod auth;
mod connections;
mod dashboard;
mod error;
mod limits;
mod metrics;
mod openapi;
mod params;
mod routes;
pub mod serving;
mod state;

use std::time::Duration;

use connections::{serve_connections, ConnectionLimits};

pub use error::{ApiError, ErrorBody};
pub use limits::InvalidOrigin;
pub use metrics::{openmetrics, ApiMetrics, Telemetry};
pub use routes::router;
pub use state::ApiState;

/// Why the API stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] InvalidOrigin),
    #[error("the api server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the API on `listener` until the state's shutdown token is cancelled, then stops
/// accepting, ends event streams and finishes the requests in flight. Connections are
/// bounded by `api.header_timeout_ms` and `api.max_connections`.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState) -> Result<(), ServeError> {
    let shutdown = state.shutdown.clone();
    let limits = ConnectionLimits {
        header_timeout: Duration::from_millis(state.config.header_timeout_ms.max(1)),
        max_connections: state.config.max_connections,
        // The parser's own limits sit well past the configured ones, so the middleware
        // answers those requests with JSON; past these, hyper answers an empty 431.
        max_head_bytes: (state.config.max_uri_bytes + state.config.max_header_bytes)
            .saturating_mul(limits::PARSER_HEADROOM)
            .max(8_192),
        max_headers: state
            .config
            .max_headers
            .saturating_mul(limits::PARSER_HEADROOM),
    };
    tokio::spawn(metrics::refresh_watermark(state.clone()));
    let app = router(state)?;
    serve_connections(listener, app, limits, shutdown).await?;
    Ok(())
}
