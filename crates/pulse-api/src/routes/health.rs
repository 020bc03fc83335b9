//! Liveness (the process answers) and readiness (both stores answer).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::{ApiError, ApiState, ErrorBody};

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn alive() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when Redis and the CQL cluster both answer a read, 503 naming what does not.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "both stores answer"),
    (status = 503, description = "a store is down", body = ErrorBody)))]
pub async fn ready(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let (speed, batch) = tokio::join!(state.speed.channels(), state.batch.watermark());
    let mut down = Vec::new();
    if let Err(e) = speed {
        down.push(format!("speed layer (redis): {e}"));
    }
    if let Err(e) = batch {
        down.push(format!("batch layer (cql): {e}"));
    }
    if !down.is_empty() {
        return Err(ApiError::unavailable(down.join("; ")));
    }
    Ok(Json(
        json!({ "status": "ready", "redis": "ok", "cql": "ok" }),
    ))
}
