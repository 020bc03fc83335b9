//! Writing enriched posts: the post by channel and hour, by id, its mentions, and the
//! day/month registry recompute reads. Every row is an upsert by its full key, so writing a
//! post again changes nothing; a batch returns only when every row is written.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use pulse_core::bucket::month_of;
use pulse_core::{entity_member, EnrichedPost, Granularity};

use crate::read::TermKind;
use crate::{BatchError, BatchStore};

/// The partition key of `history_months`: one small partition.
pub(crate) const MONTHS_SCOPE: &str = "all";

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub posts: usize,
    /// Rows upserted, over every table.
    pub rows: usize,
}

enum Row<'a> {
    ByChannel {
        post: &'a EnrichedPost,
        json: &'a str,
    },
    ById {
        post: &'a EnrichedPost,
        json: &'a str,
    },
    Mention {
        kind: TermKind,
        term: String,
        post: &'a EnrichedPost,
    },
    ChannelDay {
        day: DateTime<Utc>,
        channel: &'a str,
    },
    Month(DateTime<Utc>),
}

/// The terms a post is found under in `mentions`: distinct, lower-cased.
pub(crate) fn mention_terms(post: &EnrichedPost) -> BTreeSet<(TermKind, String)> {
    let enrichment = &post.enrichment;
    let keywords = enrichment
        .keywords
        .iter()
        .map(|keyword| (TermKind::Keyword, keyword.term.to_lowercase()));
    let entities = enrichment.entities.iter().map(|entity| {
        (
            TermKind::Entity,
            entity_member(entity.kind, &entity.text).to_lowercase(),
        )
    });
    keywords.chain(entities).collect()
}

/// Longest key part the store takes: CQL keys (and each clustering value) are at most
/// 65,535 bytes, less the framing of a composite key.
const MAX_KEY_PART_BYTES: usize = u16::MAX as usize - 64;

impl BatchStore {
    /// Why the store would refuse `post` for good (a channel, id or mention term over the
    /// key size limit), checked before any of its rows is written so that a refused post
    /// leaves nothing behind.
    pub fn refuses(post: &EnrichedPost) -> Option<BatchError> {
        let too_long = |what: &str, value: &str| {
            (value.len() > MAX_KEY_PART_BYTES).then(|| BatchError::Refused {
                action: "write",
                detail: format!(
                    "the {what} has {} bytes; a key part holds at most {MAX_KEY_PART_BYTES}",
                    value.len()
                ),
            })
        };
        too_long("channel", &post.post.channel)
            .or_else(|| too_long("id", &post.post.id))
            .or_else(|| {
                mention_terms(post)
                    .iter()
                    .find_map(|(kind, term)| too_long(&format!("{} mention", kind.as_str()), term))
            })
    }

    /// Writes posts (each with the JSON it arrived as, which is what reads return) with at
    /// most `batch.max_concurrency` rows in flight. Fails as a whole if any row fails;
    /// writing the same posts again is harmless.
    pub async fn write(&self, posts: &[(&EnrichedPost, &str)]) -> Result<WriteReport, BatchError> {
        let mut rows = Vec::with_capacity(posts.len() * 8);
        let mut days = BTreeSet::new();
        let mut months = BTreeSet::new();
        for &(post, json) in posts {
            rows.push(Row::ByChannel { post, json });
            rows.push(Row::ById { post, json });
            for (kind, term) in mention_terms(post) {
                rows.push(Row::Mention { kind, term, post });
            }
            let created = post.post.created_at;
            days.insert((Granularity::Day.floor(created), post.post.channel.as_str()));
            months.insert(month_of(created));
        }
        rows.extend(
            days.into_iter()
                .map(|(day, channel)| Row::ChannelDay { day, channel }),
        );
        rows.extend(months.into_iter().map(Row::Month));
        let count = rows.len();
        // Futures made up front (they are lazy): a closure over borrowed rows inside the
        // stream would not be provably Send.
        let writes: Vec<_> = rows.into_iter().map(|row| self.write_row(row)).collect();
        stream::iter(writes)
            .buffer_unordered(self.max_concurrency)
            .try_collect::<()>()
            .await?;
        Ok(WriteReport {
            posts: posts.len(),
            rows: count,
        })
    }

    async fn write_row(&self, row: Row<'_>) -> Result<(), BatchError> {
        let statements = &self.statements;
        match row {
            Row::ByChannel { post, json } => {
                let created = post.post.created_at;
                let sentiment = post.enrichment.sentiment.as_ref();
                let values = (
                    post.post.channel.as_str(),
                    Granularity::Hour.floor(created),
                    created,
                    post.post.id.as_str(),
                    sentiment.map(|s| s.label.as_str()),
                    sentiment.map(|s| s.score),
                    json,
                );
                self.run("write", &statements.insert_post_by_channel, values)
                    .await
            }
            Row::ById { post, json } => {
                let values = (
                    post.post.id.as_str(),
                    post.post.channel.as_str(),
                    post.post.created_at,
                    json,
                );
                self.run("write", &statements.insert_post_by_id, values)
                    .await
            }
            Row::Mention { kind, term, post } => {
                let created = post.post.created_at;
                let values = (
                    kind.as_str(),
                    term,
                    Granularity::Day.floor(created),
                    created,
                    post.post.id.as_str(),
                    post.post.channel.as_str(),
                );
                self.run("write", &statements.insert_mention, values).await
            }
            Row::ChannelDay { day, channel } => {
                let values = (month_of(day), day, channel);
                self.run("write", &statements.insert_channel_day, values)
                    .await
            }
            Row::Month(month) => {
                self.run("write", &statements.insert_month, (MONTHS_SCOPE, month))
                    .await
            }
        }
    }
}
