//! `GET /api/v1/channels`: the channels the speed layer has seen, most recent first, with
//! their post count over the last 24 hours.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use pulse_core::Series;
use pulse_speed::minute_of;
use serde::Serialize;
use serde_json::{json, Value};

use crate::{ApiError, ApiState, ErrorBody};

/// Channels whose 24 h totals are read at once.
const CONCURRENT_READS: usize = 4;

#[derive(Serialize)]
struct Channel {
    channel: String,
    last_seen: Option<DateTime<Utc>>,
    posts_24h: u64,
}

/// Known channels, most recent first, with when each was last seen and its posts over the
/// last 24 hours.
#[utoipa::path(get, path = "/api/v1/channels", tag = "live", responses(
    (status = 200, description = "the channels", content_type = "application/json"),
    (status = 429, description = "over the client's rate", body = ErrorBody), (status = 503, description = "a store is down", body = ErrorBody)))]
pub async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let known = state.speed.channels().await?;
    let end = minute_of(Utc::now()) + 1;
    // Totals only (no terms, no series): 24 hour counters and the edge minutes per
    // channel, a few channels at a time, in the registry's order.
    let channels: Vec<Channel> = stream::iter(known)
        .map(|(channel, last_seen_ms)| {
            let speed = state.speed.clone();
            async move {
                let window = speed
                    .window_with(&channel, end - 1_440, end, 0, Series::None)
                    .await?;
                Ok::<_, ApiError>(Channel {
                    channel,
                    last_seen: DateTime::from_timestamp_millis(last_seen_ms),
                    posts_24h: window.totals.count,
                })
            }
        })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    Ok(Json(json!({ "channels": channels })))
}
