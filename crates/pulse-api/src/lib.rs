//! Pulse's query API: the HTTP face of the speed layer (live windows, channels), the batch
//! layer (stored posts, cursor paging), the enricher (ad-hoc analysis) and the producers'
//! publisher (authenticated ingest).
//!
//! Handlers are thin: they parse parameters into the stores' queries and map the stores'
//! errors onto statuses. Every error is JSON `{error, detail}`. Serving (the listener and
//! graceful shutdown) is the binary's; this crate builds the [`axum::Router`].

mod auth;
mod error;
mod params;
mod routes;
mod state;

pub use error::ApiError;
pub use routes::router;
pub use state::ApiState;
