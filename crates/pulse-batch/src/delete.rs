//! Removing posts deleted at their source (tombstones): every row the post was written to,
//! and a record of the deletion that reads answer with instead of the post. Idempotent, and
//! ordered so that a deletion interrupted halfway is finished by running it again: the row
//! by id, which tells where the other rows are, goes last.

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use pulse_core::{Granularity, Tombstone};

use crate::write::mention_terms;
use crate::{BatchError, BatchStore};

/// A post deleted at its source, as the store remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub deleted_at: DateTime<Utc>,
    /// What the source said happened.
    pub reason: String,
}

impl BatchStore {
    /// Deletes the posts of `tombstones` from every table and records their deletion.
    /// Returns how many of them were stored.
    pub async fn delete(&self, tombstones: &[&Tombstone]) -> Result<usize, BatchError> {
        let deletions: Vec<_> = tombstones.iter().map(|t| self.delete_one(t)).collect();
        let stored: Vec<bool> = stream::iter(deletions)
            .buffer_unordered(self.max_concurrency.max(1))
            .try_collect()
            .await?;
        Ok(stored.into_iter().filter(|s| *s).count())
    }

    async fn delete_one(&self, tombstone: &Tombstone) -> Result<bool, BatchError> {
        let statements = &self.statements;
        let id = tombstone.id.as_str();
        let stored = self.post(id).await?;
        // The stored post says where its rows are; the tombstone says so too, for a post
        // whose row by id is gone (a deletion run before) or was never written.
        let mut places = vec![(tombstone.channel.clone(), tombstone.created_at)];
        if let Some(post) = &stored {
            let place = (post.post.channel.clone(), post.post.created_at);
            if !places.contains(&place) {
                places.push(place);
            }
        }
        for (channel, created) in &places {
            let key = (
                channel.as_str(),
                Granularity::Hour.floor(*created),
                *created,
                id,
            );
            self.run("delete", &statements.delete_post_by_channel, key)
                .await?;
        }
        if let Some(post) = &stored {
            let created = post.post.created_at;
            let day = Granularity::Day.floor(created);
            let mentions: Vec<_> = mention_terms(post)
                .into_iter()
                .map(|(kind, term)| async move {
                    let key = (kind.as_str(), term, day, created, id);
                    self.run("delete", &statements.delete_mention, key).await
                })
                .collect();
            stream::iter(mentions)
                .buffer_unordered(self.max_concurrency.max(1))
                .try_collect::<()>()
                .await?;
        }
        let record = (
            id,
            tombstone.channel.as_str(),
            tombstone.created_at,
            tombstone.deleted_at,
            tombstone.reason.as_str(),
        );
        self.run("delete", &statements.insert_deletion, record)
            .await?;
        self.run("delete", &statements.delete_post_by_id, (id,))
            .await?;
        Ok(stored.is_some())
    }

    /// The deletion of post `id`, if it was deleted at its source.
    pub async fn deletion(&self, id: &str) -> Result<Option<Deletion>, BatchError> {
        let rows: Vec<(DateTime<Utc>, String)> = self
            .read_partition(&self.statements.select_deletion, (id,))
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .map(|(deleted_at, reason)| Deletion { deleted_at, reason }))
    }
}
