//! `GET /api/v1/posts` (a channel's stored posts in a range, newest first, filtered, cursor
//! paged; without a channel, the posts of every channel mentioning a keyword or entity) and
//! `GET /api/v1/posts/{id}`, from the batch layer.

use axum::extract::State;
use axum::Json;
use pulse_batch::{Cursor, MentionQuery, PostQuery, TermKind};
use pulse_core::{EnrichedPost, SentimentLabel};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use crate::params::{time, Params, Segment};
use crate::{ApiError, ApiState, ErrorBody};

const DEFAULT_LIMIT: usize = 50;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PostsParams {
    /// The channel; without it, `keyword` or `entity` (as `kind:text`) searches every
    /// channel.
    channel: Option<String>,
    /// Start: RFC 3339, `YYYY-MM-DD`, `now` or `now-48h`.
    from: String,
    /// End, exclusive (default `now`).
    to: Option<String>,
    /// Only posts with this label: `negative`, `neutral` or `positive`.
    #[param(value_type = Option<String>)]
    sentiment: Option<SentimentLabel>,
    /// Only posts with this entity (its text, or `kind:text`; any case).
    entity: Option<String>,
    /// Only posts with this keyword (any case).
    keyword: Option<String>,
    /// Only posts in this language: an ISO 639-1 code such as `en` (639-3 for languages
    /// without one), or `und` for posts whose language is not known.
    lang: Option<String>,
    /// Posts per page, 1 to 1000 (default 50).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A channel's stored posts in a range, newest first, with `next_cursor` while more follow;
/// without a channel, the posts of every channel mentioning a keyword or an entity.
#[utoipa::path(get, path = "/api/v1/posts", tag = "posts", params(PostsParams), responses(
    (status = 200, description = "a page of posts", content_type = "application/json"),
    (status = 400, description = "a parameter is missing, malformed or out of range", body = ErrorBody), (status = 429, description = "over the client's rate", body = ErrorBody), (status = 503, description = "a store is down", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Params(params): Params<PostsParams>,
) -> Result<Json<Value>, ApiError> {
    let from = time("from", &params.from)?;
    let to = time("to", params.to.as_deref().unwrap_or("now"))?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    let cursor = params.cursor.as_deref().map(Cursor::decode).transpose()?;
    let lang = params.lang.as_deref().map(language).transpose()?;
    let page = match params.channel {
        Some(channel) => {
            let query = PostQuery {
                channel,
                from,
                to,
                sentiment: params.sentiment,
                entity: params.entity,
                keyword: params.keyword,
                lang,
                limit,
                cursor,
            };
            state.batch.posts(&query).await?
        }
        None => {
            if lang.is_some() {
                return Err(ApiError::bad_parameter(
                    "lang filters the posts of a channel: give channel",
                ));
            }
            let (kind, term) = mentioned(params.keyword, params.entity, params.sentiment)?;
            let query = MentionQuery {
                kind,
                term,
                from,
                to,
                limit,
                cursor,
            };
            state.batch.mentioning(&query).await?
        }
    };
    Ok(Json(
        json!({ "posts": page.posts, "next_cursor": page.next_cursor }),
    ))
}

/// A language filter as Pulse records languages: two or three lower-case letters.
pub(crate) fn language(code: &str) -> Result<String, ApiError> {
    if (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(code.to_string())
    } else {
        Err(ApiError::bad_parameter(format!(
            "lang is a language code such as en, pt or und, not {code:?}"
        )))
    }
}

/// The term a search over every channel looks for: one keyword or one `kind:text` entity.
fn mentioned(
    keyword: Option<String>,
    entity: Option<String>,
    sentiment: Option<SentimentLabel>,
) -> Result<(TermKind, String), ApiError> {
    if sentiment.is_some() {
        return Err(ApiError::bad_parameter(
            "sentiment filters the posts of a channel: give channel",
        ));
    }
    match (keyword, entity) {
        (Some(keyword), None) => Ok((TermKind::Keyword, keyword)),
        (None, Some(entity)) if entity.contains(':') => Ok((TermKind::Entity, entity)),
        (None, Some(entity)) => Err(ApiError::bad_parameter(format!(
            "an entity searched over every channel is kind:text, e.g. person:{entity}"
        ))),
        _ => Err(ApiError::bad_parameter(
            "give channel, or one of keyword and entity to search every channel",
        )),
    }
}

/// One stored post.
#[utoipa::path(get, path = "/api/v1/posts/{id}", tag = "posts",
    params(("id" = String, Path, description = "the post's id")), responses(
    (status = 200, description = "the enriched post", content_type = "application/json"),
    (status = 404, description = "no such post", body = ErrorBody),
    (status = 410, description = "the post was deleted at its source (`error: gone`; `detail` says when and why); it is no longer served", body = ErrorBody),
    (status = 429, description = "over the client's rate", body = ErrorBody), (status = 503, description = "a store is down", body = ErrorBody)))]
pub async fn one(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<Json<EnrichedPost>, ApiError> {
    if let Some(post) = state.batch.post(&id).await? {
        return Ok(Json(post));
    }
    match state.batch.deletion(&id).await? {
        Some(deletion) => Err(ApiError::gone(format!(
            "post {id:?} was deleted at its source ({}) and is no longer served; seen at {}",
            deletion.reason,
            deletion.deleted_at.to_rfc3339()
        ))),
        None => Err(ApiError::not_found(format!("no post with id {id:?}"))),
    }
}
