//! Extractors whose rejections are [`ApiError`]s, so that a malformed query string or body
//! gets the same JSON error shape as everything else.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use crate::ApiError;

/// Query parameters deserialized into `T`; unknown or malformed ones are a 400.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Params(value))
            .map_err(|rejection| ApiError::bad_parameter(rejection.body_text()))
    }
}

/// The one path parameter of a route (`/posts/{id}`); a segment that is not valid
/// percent-encoded UTF-8 is a 400.
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(segment)| Segment(segment))
            .map_err(|rejection| ApiError::bad_parameter(rejection.body_text()))
    }
}

/// A JSON body deserialized into `T`: 413 when over the body limit, 415 without a JSON
/// content type, 400 when it is not the expected JSON.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(body_error(rejection)),
        }
    }
}

/// A JSON object body deserialized into the struct `T`, as [`Body`] does; any other JSON
/// (an array above all: serde reads a struct from an array of its fields in order) is 400.
pub struct ObjectBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ObjectBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Body(object) =
            Body::<serde_json::Map<String, serde_json::Value>>::from_request(request, state)
                .await?;
        serde_json::from_value(serde_json::Value::Object(object))
            .map(ObjectBody)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("Failed to deserialize the JSON body into the target type: {e}"),
                )
            })
    }
}

fn body_error(rejection: JsonRejection) -> ApiError {
    let detail = rejection.body_text();
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            detail,
        ),
        _ => ApiError::new(StatusCode::BAD_REQUEST, "bad_body", detail),
    }
}

/// A time parameter (RFC 3339, `YYYY-MM-DD`, `now`, `now-48h`).
pub fn time(name: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    pulse_core::time::parse_time(text).map_err(|e| ApiError::bad_parameter(format!("{name}: {e}")))
}
