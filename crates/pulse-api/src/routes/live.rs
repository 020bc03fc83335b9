//! `GET /api/v1/live?channel=C&window=5m|1h|24h[&top=N][&series=minute|hour|none]`: a
//! channel's window ending now, from the speed layer.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use pulse_core::{Series, Window};
use pulse_speed::{minute_of, WindowStats};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::params::Params;
use crate::{ApiError, ApiState, ErrorBody};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    /// The channel, e.g. `reddit/rust`.
    channel: String,
    /// `5m` (default), `1h` or `24h`, ending now.
    #[serde(default)]
    #[param(inline)]
    window: Window,
    /// Top keywords and entities to return (default 10, at most `api.max_top`).
    top: Option<usize>,
    /// `minute` (default), `hour` or `none`: the buckets of `series`.
    #[serde(default)]
    #[param(inline)]
    series: Series,
}

/// A channel's live window from the speed layer: totals (count, sentiment labels, score
/// and emotion sums), mean score, emotion means, top keywords and entities, and a series
/// with one entry per minute (or per hour, or none).
#[utoipa::path(get, path = "/api/v1/live", tag = "live", params(LiveParams), responses(
    (status = 200, description = "the window", body = WindowStats),
    (status = 400, description = "a parameter is missing, malformed or out of range", body = ErrorBody), (status = 429, description = "over the client's rate", body = ErrorBody), (status = 503, description = "a store is down", body = ErrorBody)))]
pub async fn window(
    State(state): State<ApiState>,
    Params(params): Params<LiveParams>,
) -> Result<Json<WindowStats>, ApiError> {
    let top = params.top.unwrap_or(10);
    if top > state.config.max_top {
        return Err(ApiError::bad_parameter(format!(
            "top is at most {}, not {top}",
            state.config.max_top
        )));
    }
    // The current minute is included: a live view shows posts as they arrive.
    let end = minute_of(Utc::now()) + 1;
    let stats = state
        .speed
        .window_with(
            &params.channel,
            end - params.window.minutes(),
            end,
            top,
            params.series,
        )
        .await?;
    Ok(Json(stats))
}
