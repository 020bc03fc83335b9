//! `GET /api/v1/live?channel=C&window=5m|1h|24h[&top=N][&series=minute|hour|none]`: a
//! channel's window ending now, from the speed layer.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use pulse_speed::{minute_of, Series, WindowStats};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::params::Params;
use crate::{ApiError, ApiState, ErrorBody};

/// How far back a live window reaches from now.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
pub enum Window {
    #[default]
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
}

impl Window {
    fn minutes(self) -> i64 {
        match self {
            Window::FiveMinutes => 5,
            Window::Hour => 60,
            Window::Day => 1_440,
        }
    }
}

/// The buckets of the window's series.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeriesParam {
    /// One entry per minute.
    #[default]
    Minute,
    /// One entry per clock hour (the first and last may be partial): a day in 24 reads.
    Hour,
    /// No series, totals and terms only.
    None,
}

impl From<SeriesParam> for Series {
    fn from(series: SeriesParam) -> Series {
        match series {
            SeriesParam::Minute => Series::Minute,
            SeriesParam::Hour => Series::Hour,
            SeriesParam::None => Series::None,
        }
    }
}

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
    series: SeriesParam,
}

/// A channel's live window from the speed layer: totals (count, sentiment labels, score
/// and emotion sums), mean score, emotion means, top keywords and entities, and a series
/// with one entry per minute (or per hour, or none).
#[utoipa::path(get, path = "/api/v1/live", tag = "live", params(LiveParams), responses(
    (status = 200, description = "the window", content_type = "application/json"),
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
            params.series.into(),
        )
        .await?;
    Ok(Json(stats))
}
