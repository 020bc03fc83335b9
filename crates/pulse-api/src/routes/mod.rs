//! The routes of the API, one module per resource.

pub(crate) mod admin;
pub(crate) mod analyze;
pub(crate) mod channels;
pub(crate) mod health;
pub(crate) mod history;
pub(crate) mod ingest;
pub(crate) mod live;
pub(crate) mod posts;
pub(crate) mod stream;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

use crate::limits::{self, InvalidOrigin};
use crate::{ApiError, ApiState};

/// The API's router: `/healthz`, `/readyz`, `/metrics`, the dashboard at `/` and the
/// resources under `/api/v1`
/// (rate-limited per client; probes are not), with the body limit and CORS policy of
/// `[api]`; every request is counted and timed.
pub fn router(state: ApiState) -> Result<Router, InvalidOrigin> {
    let body_limit = state.config.max_body_bytes;
    let cors = limits::cors(&state.config.cors_origins)?;
    let v1 = Router::new()
        .route("/channels", get(channels::list))
        .route("/live", get(live::window))
        .route("/history", get(history::buckets))
        .route("/posts", get(posts::list).post(ingest::posts))
        .route("/posts/{id}", get(posts::one))
        .route("/stream", get(stream::posts))
        .route("/analyze", post(analyze::texts))
        .route("/openapi.json", get(crate::openapi::document))
        .route("/admin/recompute", post(admin::recompute))
        .route("/admin/replay", post(admin::replay))
        .route("/admin/jobs/{id}", get(admin::job))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::limit_time,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::limit_rate,
        ));
    let mut app = Router::new()
        .route("/healthz", get(health::alive))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(crate::metrics::exposition))
        .nest("/api/v1", v1)
        .merge(crate::dashboard::routes(&state.config.dashboard_dir))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::limit_request_head,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::record,
        ))
        .layer(DefaultBodyLimit::max(body_limit));
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    Ok(app.with_state(state))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not served on {}", uri.path()),
    )
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}
