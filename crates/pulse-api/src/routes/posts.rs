//! `GET /api/v1/posts` (a channel's stored posts in a range, newest first, filtered, cursor
//! paged) and `GET /api/v1/posts/{id}`, from the batch layer.

use axum::extract::{Path, State};
use axum::Json;
use pulse_batch::{Cursor, PostQuery};
use pulse_core::{EnrichedPost, SentimentLabel};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::params::{time, Params};
use crate::{ApiError, ApiState};

const DEFAULT_LIMIT: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostsParams {
    channel: String,
    from: String,
    to: Option<String>,
    sentiment: Option<SentimentLabel>,
    entity: Option<String>,
    keyword: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub async fn list(
    State(state): State<ApiState>,
    Params(params): Params<PostsParams>,
) -> Result<Json<Value>, ApiError> {
    let query = PostQuery {
        channel: params.channel,
        from: time("from", &params.from)?,
        to: time("to", params.to.as_deref().unwrap_or("now"))?,
        sentiment: params.sentiment,
        entity: params.entity,
        keyword: params.keyword,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT),
        cursor: params.cursor.as_deref().map(Cursor::decode).transpose()?,
    };
    let page = state.batch.posts(&query).await?;
    Ok(Json(
        json!({ "posts": page.posts, "next_cursor": page.next_cursor }),
    ))
}

pub async fn one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<EnrichedPost>, ApiError> {
    state
        .batch
        .post(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no post with id {id:?}")))
}
