//! Historical reads: a channel's posts in a time range (newest first, filtered, cursor
//! paging), a post by id, and the posts mentioning a term.
//!
//! A range read walks the hour (or day) partitions it spans from the newest. In each it
//! asks the server for the rows of the range only (a range predicate on the clustering
//! column), newest first (the clustering order), and no more rows than the page still
//! needs; a page that ends inside a partition ends with the driver's paging state, which
//! the cursor carries, so the next page resumes on the server exactly there. Partitions
//! are read a few at a time concurrently while they come back empty.

use std::fmt;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use futures::{stream, StreamExt};
use pulse_core::{entity_member, EnrichedPost, Granularity, SentimentLabel, UNDETERMINED_LANGUAGE};
use scylla::deserialize::row::DeserializeRow;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;

use crate::cursor::{fingerprint, Cursor};
use crate::{cql, BatchError, BatchStore};

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
    /// A language code (`en`, `und` for posts whose language is not known).
    pub lang: Option<String>,
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
    /// Present while the range is not read to its end (the last page may be empty).
    pub next_cursor: Option<String>,
}

/// A row of an hour partition: created_at, id, sentiment, the post's JSON.
pub(crate) type HourRow = (DateTime<Utc>, String, Option<String>, String);

/// A row of a mentions partition: created_at, post id.
type MentionRow = (DateTime<Utc>, String);

fn check_range(from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Result<(), BatchError> {
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
    Ok(())
}

/// The partitions a read walks, newest first: those of `[from, to)`, starting at the
/// cursor's partition when there is one.
fn partitions(
    granularity: Granularity,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cursor: Option<&Cursor>,
) -> Result<Vec<DateTime<Utc>>, BatchError> {
    let mut buckets = granularity.buckets(from, to);
    buckets.reverse();
    if let Some(cursor) = cursor {
        let Some(at) = buckets
            .iter()
            .position(|b| b.timestamp_millis() == cursor.partition_ms)
        else {
            return Err(BatchError::Query(
                "the cursor is not one this api issued".to_string(),
            ));
        };
        buckets.drain(..at);
    }
    Ok(buckets)
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
    let lang_ok = query
        .lang
        .as_deref()
        .is_none_or(|wanted| post.post.lang.as_deref().unwrap_or(UNDETERMINED_LANGUAGE) == wanted);
    entity_ok && keyword_ok && lang_ok
}

impl PostQuery {
    fn fingerprint(&self) -> u64 {
        fingerprint(&[
            "posts",
            &self.channel,
            self.sentiment.map_or("", SentimentLabel::as_str),
            &self.entity.as_deref().unwrap_or_default().to_lowercase(),
            &self.keyword.as_deref().unwrap_or_default().to_lowercase(),
            self.lang.as_deref().unwrap_or_default(),
        ])
    }
}

impl MentionQuery {
    fn fingerprint(&self) -> u64 {
        fingerprint(&["mentions", self.kind.as_str(), &self.term.to_lowercase()])
    }
}

/// The range a read covers: the query's, or the one its cursor fixed at the first page.
fn effective_range(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cursor: Option<&Cursor>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    match cursor {
        Some(cursor) => (
            DateTime::from_timestamp_millis(cursor.from_ms).unwrap_or(from),
            DateTime::from_timestamp_millis(cursor.to_ms).unwrap_or(to),
        ),
        None => (from, to),
    }
}

/// What a range read walks: its range (the cursor's while paging), the partitions of that
/// range from the cursor's on, newest first, and the driver's paging state in the first.
struct RangePlan {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    partitions: Vec<DateTime<Utc>>,
    paging_state: Option<Vec<u8>>,
}

/// One page of one partition, as the server returned it, and where it resumes.
struct PartitionPage<R> {
    rows: Vec<R>,
    next: Option<Vec<u8>>,
}

/// Where a walk stopped: the cursor's partition and paging state, or `None` at the end.
type Continuation = Option<(DateTime<Utc>, Option<Vec<u8>>)>;

impl BatchStore {
    /// Rows the server returned to range reads since this store was made (a measure of
    /// what a read costs: a range predicate keeps it to the rows of the range).
    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::Relaxed)
    }

    /// Checks a range read before anything is read (range, limit, cursor, at most
    /// `batch.max_range_days`) and plans it.
    fn plan(
        &self,
        granularity: Granularity,
        (from, to): (DateTime<Utc>, DateTime<Utc>),
        limit: usize,
        fingerprint: u64,
        cursor: Option<&Cursor>,
    ) -> Result<RangePlan, BatchError> {
        check_range(from, to, limit)?;
        if let Some(cursor) = cursor {
            cursor.check(fingerprint)?;
        }
        let (from, to) = effective_range(from, to, cursor);
        let days = Granularity::Day.count(from, to);
        if days > u64::from(self.max_range_days) {
            return Err(BatchError::Query(format!(
                "the range spans {days} days; at most {} per query (batch.max_range_days)",
                self.max_range_days
            )));
        }
        Ok(RangePlan {
            from,
            to,
            partitions: partitions(granularity, from, to, cursor)?,
            paging_state: cursor.and_then(|c| c.paging_state.clone()),
        })
    }

    /// At most `page_size` rows of one partition, newest first, from `state` on.
    async fn fetch_page<R, V>(
        &self,
        statement: &PreparedStatement,
        values: V,
        state: Option<Vec<u8>>,
        page_size: usize,
    ) -> Result<PartitionPage<R>, BatchError>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
        V: SerializeRow,
    {
        let mut statement = statement.clone();
        statement.set_page_size(i32::try_from(page_size.clamp(1, MAX_PAGE)).unwrap_or(1));
        let state = state.map_or_else(PagingState::start, PagingState::new_from_raw_bytes);
        let (result, next) = self
            .session
            .execute_single_page(&statement, values, state)
            .await
            .map_err(|e| cql("read", e))?;
        let rows: Vec<R> = result
            .into_rows_result()
            .map_err(|e| cql("read", e))?
            .rows::<R>()
            .map_err(|e| cql("read", e))?
            .collect::<Result<_, _>>()
            .map_err(|e| cql("read", e))?;
        self.rows_read
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        let next = match next {
            PagingStateResponse::HasMorePages { state } => {
                state.as_bytes_slice().map(|bytes| bytes.to_vec())
            }
            PagingStateResponse::NoMorePages => None,
        };
        Ok(PartitionPage { rows, next })
    }

    /// Walks `partitions` (newest first) with `statement`, whose values for a partition
    /// `values` gives, handing rows to `take` (which says whether a row counts towards the
    /// page) until `limit` rows counted or the partitions are exhausted. The first
    /// partition starts at `state`. Returns where a next page would start.
    async fn walk<R, V>(
        &self,
        statement: &PreparedStatement,
        partitions: &[DateTime<Utc>],
        mut state: Option<Vec<u8>>,
        limit: usize,
        values: impl Fn(DateTime<Utc>) -> V,
        mut take: impl FnMut(R) -> bool,
    ) -> Result<Continuation, BatchError>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
        V: SerializeRow,
    {
        let mut taken = 0;
        let mut index = 0;
        while index < partitions.len() {
            // The next few partitions at once, each asked for what the page still needs.
            let window = &partitions[index..(index + self.read_concurrency).min(partitions.len())];
            let starts: Vec<Option<Vec<u8>>> = window
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { state.take() } else { None })
                .collect();
            let need = limit - taken;
            let pages = join_all(window.iter().zip(&starts).map(|(&partition, start)| {
                self.fetch_page::<R, V>(statement, values(partition), start.clone(), need)
            }))
            .await;
            for ((i, page), start) in pages.into_iter().enumerate().zip(starts) {
                let partition = window[i];
                let mut page = page?;
                let mut start = start;
                loop {
                    let need = limit - taken;
                    if page.rows.len() > need {
                        // Read ahead while the page needed more: read again what it needs
                        // now, so the paging state ends at the last row used.
                        page = self
                            .fetch_page(statement, values(partition), start.clone(), need)
                            .await?;
                    }
                    for row in page.rows {
                        taken += usize::from(take(row));
                    }
                    if taken == limit {
                        let after = index + i + 1;
                        return Ok(match page.next {
                            Some(next) => Some((partition, Some(next))),
                            None => partitions.get(after).map(|&older| (older, None)),
                        });
                    }
                    let Some(next) = page.next else { break };
                    start = Some(next.clone());
                    page = self
                        .fetch_page(statement, values(partition), Some(next), limit - taken)
                        .await?;
                }
            }
            index += window.len();
        }
        Ok(None)
    }

    /// A page of a channel's posts, newest first, with the query's filters.
    pub async fn posts(&self, query: &PostQuery) -> Result<PostPage, BatchError> {
        let fingerprint = query.fingerprint();
        let RangePlan {
            from,
            to,
            partitions: hours,
            paging_state,
        } = self.plan(
            Granularity::Hour,
            (query.from, query.to),
            query.limit,
            fingerprint,
            query.cursor.as_ref(),
        )?;
        let wanted_label = query.sentiment.map(SentimentLabel::as_str);
        let channel = query.channel.as_str();
        let mut posts = Vec::new();
        let continuation = self
            .walk(
                &self.statements.select_hour_range,
                &hours,
                paging_state,
                query.limit,
                |hour| (channel, hour, from, to),
                |(_, id, sentiment, json): HourRow| {
                    if wanted_label.is_some_and(|label| sentiment.as_deref() != Some(label)) {
                        return false;
                    }
                    match parse(&id, &json) {
                        Some(post) if matches_filters(query, &post) => {
                            posts.push(post);
                            true
                        }
                        _ => false,
                    }
                },
            )
            .await?;
        Ok(PostPage {
            posts,
            next_cursor: encode(fingerprint, (from, to), continuation),
        })
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
        let fingerprint = query.fingerprint();
        let RangePlan {
            from,
            to,
            partitions: days,
            paging_state,
        } = self.plan(
            Granularity::Day,
            (query.from, query.to),
            query.limit,
            fingerprint,
            query.cursor.as_ref(),
        )?;
        let term = query.term.to_lowercase();
        let kind = query.kind.as_str();
        let mut ids = Vec::new();
        let continuation = self
            .walk(
                &self.statements.select_mentions_range,
                &days,
                paging_state,
                query.limit,
                |day| (kind, term.as_str(), day, from, to),
                |(_, id): MentionRow| {
                    ids.push(id);
                    true
                },
            )
            .await?;
        let reads: Vec<_> = ids.iter().map(|id| self.post(id)).collect();
        let posts: Vec<Option<EnrichedPost>> = stream::iter(reads)
            .buffered(self.read_concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(PostPage {
            posts: posts.into_iter().flatten().collect(),
            next_cursor: encode(fingerprint, (from, to), continuation),
        })
    }
}

fn encode(
    query: u64,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    continuation: Continuation,
) -> Option<String> {
    continuation.map(|(partition, paging_state)| {
        Cursor {
            query,
            from_ms: from.timestamp_millis(),
            to_ms: to.timestamp_millis(),
            partition_ms: partition.timestamp_millis(),
            paging_state,
        }
        .encode()
    })
}
