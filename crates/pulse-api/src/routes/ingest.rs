//! `POST /api/v1/posts` (bearer token): a JSON array of posts into the raw topic, through
//! the producers' own publisher (same validation, keys and DLQ rules as `pulse ingest`).
//! Every post is checked first; if any is not a post, none is published and the answer is
//! a 400 naming them. Answers 202 with the count once the broker has acknowledged all.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use pulse_core::validate::post_from_value;
use pulse_ingest::SourceItem;
use pulse_pipeline::publish::PublishTally;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::auth::Authorized;
use crate::params::Body;
use crate::{ApiError, ApiState, ErrorBody};

/// Rejected posts named in one error.
const NAMED: usize = 10;

/// Publishes posts to the raw topic (bearer token); all are validated first.
#[utoipa::path(post, path = "/api/v1/posts", tag = "posts",
    request_body(content = Vec<Object>, description = "posts: id, source, channel, text, created_at, ..."),
    security(("bearer" = [])), responses(
    (status = 202, description = "`{\"accepted\": n}` once Kafka acknowledged every post", content_type = "application/json"),
    (status = 400, description = "some posts are not valid; nothing was published", body = ErrorBody),
    (status = 401, description = "missing or wrong token", body = ErrorBody),
    (status = 413, description = "too many posts or too large a body", body = ErrorBody), (status = 429, description = "over the client's rate", body = ErrorBody), (status = 503, description = "a store is down", body = ErrorBody)))]
pub async fn posts(
    State(state): State<ApiState>,
    _: Authorized,
    Body(values): Body<Vec<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let most = state.config.max_ingest_posts;
    if values.len() > most {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("at most {most} posts per request, not {}", values.len()),
        ));
    }
    let publisher = &state.publisher;
    let mut posts = Vec::with_capacity(values.len());
    let mut rejected = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        match post_from_value(value, &publisher.limits) {
            Ok(post) => posts.push(post),
            Err(rejection) => rejected.push(format!("post {index}: {rejection}")),
        }
    }
    if !rejected.is_empty() {
        let count = rejected.len();
        rejected.truncate(NAMED);
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_posts",
            format!(
                "{count} of the posts are not valid, nothing was published: {}",
                rejected.join("; ")
            ),
        ));
    }

    let count = posts.len();
    let (items, received) = mpsc::channel(count.max(1));
    for (index, post) in posts.into_iter().enumerate() {
        let item = SourceItem::Post {
            post: Box::new(post),
            location: format!("http request, post {index}"),
        };
        // The channel holds every post: this cannot wait or fail.
        if items.try_send(item).is_err() {
            return Err(ApiError::unavailable("the publishing queue is closed"));
        }
    }
    drop(items);
    let tally = PublishTally::default();
    publisher
        .publish(received, &tally, &state.shutdown)
        .await
        .map_err(|e| ApiError::unavailable(format!("kafka: {e}")))?;
    let accepted = tally.posts.load(std::sync::atomic::Ordering::Relaxed);
    if accepted != count as u64 {
        return Err(ApiError::unavailable(format!(
            "kafka acknowledged {accepted} of {count} posts; sending the same posts again is \
             safe (same ids)"
        )));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))))
}
