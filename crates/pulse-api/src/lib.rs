//! Pulse's query API: the HTTP face of the speed layer (live windows, channels), the batch
//! layer (stored posts, cursor paging), the enricher (ad-hoc analysis) and the producers'
//! publisher (authenticated ingest), plus the live dashboard's static files at `/`.
//!
//! Handlers are thin: they parse parameters into the stores' queries and map the stores'
//! errors onto statuses. Every error is JSON `{error, detail}`.

mod auth;
mod dashboard;
mod error;
mod limits;
mod metrics;
mod openapi;
mod params;
mod routes;
mod state;

use std::net::SocketAddr;

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
/// accepting, ends event streams and finishes the requests in flight.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState) -> Result<(), ServeError> {
    let shutdown = state.shutdown.clone();
    let app = router(state)?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await?;
    Ok(())
}
