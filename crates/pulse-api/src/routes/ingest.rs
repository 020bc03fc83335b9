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
    (status = 413, description = "too many posts, too large a body, or a post larger than a Kafka record may be (`record_too_large`, naming `kafka.max_record_bytes`); nothing was published", body = ErrorBody),
    (status = 422, description = "the broker refused some posts for good (`refused_by_broker`); they were dead-lettered, the others published", body = ErrorBody), (status = 429, description = "over the client's rate", body = ErrorBody), (status = 503, description = "a store is down", body = ErrorBody)))]
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

    // Checked before anything is sent, so that a refusal for good is the client's to fix
    // (a 413 naming the limit), never a 503 inviting the same request again.
    let limit = publisher.max_record_bytes;
    let oversized: Vec<String> = posts
        .iter()
        .enumerate()
        .filter_map(|(index, post)| {
            let bytes = publisher.oversized(post)?;
            Some(format!("post {index} ({}) is {bytes} bytes", post.id))
        })
        .collect();
    if !oversized.is_empty() {
        let count = oversized.len();
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "record_too_large",
            format!(
                "{count} of the posts are larger as a Kafka record than the limit of {limit} \
                 bytes (kafka.max_record_bytes), nothing was published: {}",
                oversized[..count.min(NAMED)].join("; ")
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
        // The publisher retries what can succeed: a post it gave up on was refused by the
        // broker for good, and sending it again would only dead-letter it again.
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused_by_broker",
            format!(
                "the broker refused {} of the {count} posts for good (each dead-lettered to {} \
                 with its reason); the other {accepted} were published; sending the refused \
                 posts again will not help",
                count as u64 - accepted,
                publisher.dlq_topic
            ),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))))
}
