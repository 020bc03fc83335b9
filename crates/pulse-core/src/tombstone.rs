//! A deletion at the source: the record that follows a post through the topics when its
//! author or the platform removed it, so that every store stops serving the post.
//!
//! On the raw and enriched topics a tombstone is a JSON object keyed by the post id, like
//! the post it deletes, and told apart by `"kind": "tombstone"`; it carries the channel and
//! creation time so that stores keyed by them can find the post's rows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::post::Post;

/// The value of `kind` that marks a tombstone.
pub const TOMBSTONE_KIND: &str = "tombstone";

/// A post deleted or removed at its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    /// Always [`TOMBSTONE_KIND`].
    pub kind: TombstoneKind,
    /// The id of the deleted post.
    pub id: String,
    pub source: String,
    pub channel: String,
    /// When the deleted post was created.
    pub created_at: DateTime<Utc>,
    /// When the deletion was seen.
    pub deleted_at: DateTime<Utc>,
    /// What the source says happened (`deleted by its author`, `removed by moderators`).
    pub reason: String,
}

/// The `kind` field of a tombstone; serialized as `"tombstone"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TombstoneKind {
    Tombstone,
}

impl Tombstone {
    /// The tombstone of `post`, deleted at `deleted_at` for `reason`.
    pub fn of(post: &Post, deleted_at: DateTime<Utc>, reason: impl Into<String>) -> Self {
        Self {
            kind: TombstoneKind::Tombstone,
            id: post.id.clone(),
            source: post.source.clone(),
            channel: post.channel.clone(),
            created_at: post.created_at,
            deleted_at,
            reason: reason.into(),
        }
    }

    /// Whether a decoded JSON record claims to be a tombstone (`"kind": "tombstone"`).
    pub fn is_claimed_by(value: &Value) -> bool {
        value.get("kind").and_then(Value::as_str) == Some(TOMBSTONE_KIND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_is_told_apart_from_posts() {
        let post: Post = serde_json::from_value(json!({
            "id": "reddit:t3_a", "source": "reddit", "channel": "reddit/r/rust",
            "text": "hello", "created_at": "2026-11-01T10:00:00Z"
        }))
        .unwrap();
        let deleted_at = "2026-11-01T12:00:00Z".parse().unwrap();
        let tombstone = Tombstone::of(&post, deleted_at, "deleted by its author");
        let value = serde_json::to_value(&tombstone).unwrap();
        assert_eq!(value["kind"], "tombstone");
        assert_eq!(value["created_at"], "2026-11-01T10:00:00Z");
        assert!(Tombstone::is_claimed_by(&value));
        assert!(!Tombstone::is_claimed_by(
            &serde_json::to_value(&post).unwrap()
        ));
        assert_eq!(
            serde_json::from_value::<Tombstone>(value).unwrap(),
            tombstone
        );
    }
}
