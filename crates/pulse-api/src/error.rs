//! API errors: a status, a stable machine-readable `error` code and a human `detail`,
//! always sent as JSON.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pulse_batch::BatchError;
use pulse_nlp::NlpError;
use pulse_speed::SpeedError;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable code: `bad_parameter`, `bad_body`, `invalid_posts`, `unauthorized`,
    /// `not_found`, `gone`, `conflict`, `payload_too_large`, `unsupported_media_type`,
    /// `rate_limited`, `unavailable`, `analysis_failed`, `internal`.
    pub error: String,
    /// What was wrong, for people.
    pub detail: String,
}

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable code, e.g. `bad_parameter`, `not_found`, `unavailable`.
    pub code: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    /// 400: a parameter is missing, malformed or out of range.
    pub fn bad_parameter(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_parameter", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 410: the thing existed and was removed for good (a post deleted at its source).
    pub fn gone(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "gone", detail)
    }

    /// 503: a store cannot answer now; worth retrying.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, detail = %self.detail, "request failed");
        }
        let body = Json(ErrorBody {
            error: self.code.to_string(),
            detail: self.detail,
        });
        (self.status, body).into_response()
    }
}

impl From<SpeedError> for ApiError {
    fn from(error: SpeedError) -> Self {
        match error {
            SpeedError::Window(detail) => ApiError::bad_parameter(detail),
            SpeedError::Redis(e) => ApiError::unavailable(format!("speed layer: {e}")),
            SpeedError::Answer(e) => ApiError::unavailable(format!("speed layer: {e}")),
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(error: BatchError) -> Self {
        match error {
            BatchError::Query(detail) => ApiError::bad_parameter(detail),
            other => ApiError::unavailable(format!("batch layer: {other}")),
        }
    }
}

impl From<NlpError> for ApiError {
    fn from(error: NlpError) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "analysis_failed",
            error.to_string(),
        )
    }
}
