//! Historical reads: a channel's posts in a time range (newest first, filtered, cursor
//! paging), a post by id, and the posts mentioning a term. A range read walks the hour (or
//! day) partitions it spans from the newest, a few at a time concurrently, and orders rows
//! in the client.

use std::fmt;

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use pulse_core::bucket::from_millis;
use pulse_core::{entity_member, EnrichedPost, Granularity, SentimentLabel};

use crate::cursor::{newest_first, Cursor};
use crate::{BatchError, BatchStore};

/// Most posts one page may hold.
pub const MAX_PAGE: usize = 1_000;

/// What a term in `mentions` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TermKind {
    Keyword,
    /// An entity, as `kind:text`.
    Entity,
}

impl TermKind {
    /// The name stored in the `kind` columns.
    pub fn as_str(self) -> &'static str {
        match self {
            TermKind::Keyword => "keyword",
            TermKind::Entity => "entity",
        }
    }
}

impl fmt::Display for TermKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Posts of a channel in `[from, to)`.
#[derive(Debug, Clone)]
pub struct PostQuery {
    pub channel: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub sentiment: Option<SentimentLabel>,
    /// An entity's text, or `kind:text`; case-insensitive.
    pub entity: Option<String>,
    /// A keyword; case-insensitive.
    pub keyword: Option<String>,
    /// Posts per page, 1 to [`MAX_PAGE`].
    pub limit: usize,
    /// Continue after the page this cursor ended.
    pub cursor: Option<Cursor>,
}

/// Posts mentioning a term in `[from, to)`, over every channel.
#[derive(Debug, Clone)]
pub struct MentionQuery {
    pub kind: TermKind,
    /// The keyword, or the entity as `kind:text`; case-insensitive.
    pub term: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// One page of posts, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct PostPage {
    pub posts: Vec<EnrichedPost>,
    /// Present when more posts follow.
    pub next_cursor: Option<String>,
}

/// A row of an hour partition: created_at, id, sentiment, the post's JSON.
pub(crate) type HourRow = (DateTime<Utc>, String, Option<String>, String);

fn check_range(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
) -> Result<(i64, i64), BatchError> {
    if from >= to {
        return Err(BatchError::Query(format!(
            "the range is empty: from {from} is not before to {to}"
        )));
    }
    if limit == 0 || limit > MAX_PAGE {
        return Err(BatchError::Query(format!(
            "limit is 1 to {MAX_PAGE}, not {limit}"
        )));
    }
    Ok((from.timestamp_millis(), to.timestamp_millis()))
}

/// The partitions to read, newest first: those of `[from_ms, upper_ms]`.
fn buckets_newest_first(
    granularity: Granularity,
    from_ms: i64,
    upper_ms: i64,
) -> Vec<DateTime<Utc>> {
    let mut buckets = granularity.buckets(from_millis(from_ms), from_millis(upper_ms + 1));
    buckets.reverse();
    buckets
}

fn parse(id: &str, json: &str) -> Option<EnrichedPost> {
    match serde_json::from_str(json) {
        Ok(post) => Some(post),
        Err(error) => {
            tracing::warn!(id, %error, "stored post is not an enriched post; skipped");
            None
        }
    }
}

fn matches_filters(query: &PostQuery, post: &EnrichedPost) -> bool {
    let enrichment = &post.enrichment;
    let entity_ok = query.entity.as_deref().is_none_or(|wanted| {
        let wanted = wanted.to_lowercase();
        enrichment.entities.iter().any(|entity| {
            entity.text.to_lowercase() == wanted
                || entity_member(entity.kind, &entity.text).to_lowercase() == wanted
        })
    });
    let keyword_ok = query.keyword.as_deref().is_none_or(|wanted| {
        let wanted = wanted.to_lowercase();
        enrichment
            .keywords
            .iter()
            .any(|keyword| keyword.term.to_lowercase() == wanted)
    });
    entity_ok && keyword_ok
}

impl BatchStore {
    /// A page of a channel's posts, newest first, with the query's filters.
    pub async fn posts(&self, query: &PostQuery) -> Result<PostPage, BatchError> {
        let (from_ms, to_ms) = check_range(query.from, query.to, query.limit)?;
        let upper_ms = query
            .cursor
            .as_ref()
            .map_or(to_ms - 1, |cursor| cursor.created_ms.min(to_ms - 1));
        let mut page: Vec<(i64, String, EnrichedPost)> = Vec::new();
        if upper_ms >= from_ms {
            let hours = buckets_newest_first(Granularity::Hour, from_ms, upper_ms);
            let statement = &self.statements.select_hour;
            let channel = query.channel.as_str();
            let mut partitions = stream::iter(hours)
                .map(|hour| self.read_partition::<HourRow>(statement, (channel, hour)))
                .buffered(self.read_concurrency);
            let wanted_label = query.sentiment.map(SentimentLabel::as_str);
            while let Some(rows) = partitions.next().await {
                let mut matching: Vec<(i64, String, EnrichedPost)> = rows?
                    .into_iter()
                    .filter(|(created, id, sentiment, _)| {
                        let ms = created.timestamp_millis();
                        (from_ms..to_ms).contains(&ms)
                            && query.cursor.as_ref().is_none_or(|c| c.precedes(ms, id))
                            && wanted_label.is_none_or(|label| sentiment.as_deref() == Some(label))
                    })
                    .filter_map(|(created, id, _, json)| {
                        let post = parse(&id, &json)?;
                        matches_filters(query, &post)
                            .then(|| (created.timestamp_millis(), id, post))
                    })
                    .collect();
                matching.sort_by(|a, b| newest_first((a.0, &a.1), (b.0, &b.1)));
                page.extend(matching);
                if page.len() > query.limit {
                    break;
                }
            }
        }
        Ok(finish(page, query.limit))
    }

    /// The post with this id.
    pub async fn post(&self, id: &str) -> Result<Option<EnrichedPost>, BatchError> {
        let rows: Vec<(String,)> = self
            .read_partition(&self.statements.select_post, (id,))
            .await?;
        Ok(rows.into_iter().next().and_then(|(json,)| parse(id, &json)))
    }

    /// A page of the posts mentioning a term, newest first, over every channel.
    pub async fn mentioning(&self, query: &MentionQuery) -> Result<PostPage, BatchError> {
        let (from_ms, to_ms) = check_range(query.from, query.to, query.limit)?;
        let upper_ms = query
            .cursor
            .as_ref()
            .map_or(to_ms - 1, |cursor| cursor.created_ms.min(to_ms - 1));
        let term = query.term.to_lowercase();
        let mut hits: Vec<(i64, String)> = Vec::new();
        if upper_ms >= from_ms {
            let days = buckets_newest_first(Granularity::Day, from_ms, upper_ms);
            let statement = &self.statements.select_mentions;
            let kind = query.kind.as_str();
            let mut partitions = stream::iter(days)
                .map(|day| {
                    self.read_partition::<(DateTime<Utc>, String)>(
                        statement,
                        (kind, term.as_str(), day),
                    )
                })
                .buffered(self.read_concurrency);
            while let Some(rows) = partitions.next().await {
                let mut matching: Vec<(i64, String)> = rows?
                    .into_iter()
                    .map(|(created, id)| (created.timestamp_millis(), id))
                    .filter(|(ms, id)| {
                        (from_ms..to_ms).contains(ms)
                            && query.cursor.as_ref().is_none_or(|c| c.precedes(*ms, id))
                    })
                    .collect();
                matching.sort_by(|a, b| newest_first((a.0, &a.1), (b.0, &b.1)));
                hits.extend(matching);
                if hits.len() > query.limit {
                    break;
                }
            }
        }
        hits.truncate(query.limit + 1);
        let reads: Vec<_> = hits.iter().map(|(_, id)| self.post(id)).collect();
        let posts: Vec<Option<EnrichedPost>> = stream::iter(reads)
            .buffered(self.read_concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let page = hits
            .into_iter()
            .zip(posts)
            .filter_map(|((ms, id), post)| post.map(|post| (ms, id, post)))
            .collect();
        Ok(finish(page, query.limit))
    }
}

/// Cuts a newest-first list of at most `limit + 1` candidates to a page and its cursor.
fn finish(mut page: Vec<(i64, String, EnrichedPost)>, limit: usize) -> PostPage {
    let next_cursor = (page.len() > limit).then(|| {
        page.truncate(limit);
        page.last().map(|(ms, id, _)| {
            Cursor {
                created_ms: *ms,
                id: id.clone(),
            }
            .encode()
        })
    });
    PostPage {
        posts: page.into_iter().map(|(_, _, post)| post).collect(),
        next_cursor: next_cursor.flatten(),
    }
}
