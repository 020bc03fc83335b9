//! `GET /api/v1/live?channel=C&window=5m|1h|24h[&top=N]`: a channel's window ending now,
//! from the speed layer.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use pulse_speed::{minute_of, WindowStats};
use serde::Deserialize;

use crate::params::Params;
use crate::{ApiError, ApiState};

#[derive(Debug, Clone, Copy, Default, Deserialize)]
enum Window {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    channel: String,
    #[serde(default)]
    window: Window,
    top: Option<usize>,
}

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
        .window(&params.channel, end - params.window.minutes(), end, top)
        .await?;
    Ok(Json(stats))
}
