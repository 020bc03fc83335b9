//! The messages on the Kafka topics: a raw [`Post`] and the [`EnrichedPost`] built from it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A post as produced to `pulse.posts.raw` (DESIGN.md 3).
///
/// Fields the schema does not name are kept in `extra` and written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Post {
    /// Globally unique, source-prefixed id such as `reddit:t1_abc`.
    pub id: String,
    /// Where the post came from: `reddit`, `twitter`, `file`, `http`, `synthetic`.
    pub source: String,
    /// What is being followed: `reddit/r/rust`, `twitter/#rustlang`, a file name.
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub text: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Source-specific numbers such as a score or a comment count.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
    /// Unknown fields, kept so that no producer's data is lost on the way through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Sentiment labels, in the order the models emit them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SentimentLabel {
    Negative,
    Neutral,
    Positive,
}

impl SentimentLabel {
    /// Every label, in the models' order.
    pub const ALL: [SentimentLabel; 3] = [
        SentimentLabel::Negative,
        SentimentLabel::Neutral,
        SentimentLabel::Positive,
    ];

    /// The label's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            SentimentLabel::Negative => "negative",
            SentimentLabel::Neutral => "neutral",
            SentimentLabel::Positive => "positive",
        }
    }
}

impl std::str::FromStr for SentimentLabel {
    type Err = String;

    /// A label by its serialized name.
    fn from_str(name: &str) -> Result<Self, String> {
        SentimentLabel::ALL
            .into_iter()
            .find(|label| label.as_str() == name)
            .ok_or_else(|| {
                let names = SentimentLabel::ALL.map(SentimentLabel::as_str).join(", ");
                format!("unknown sentiment `{name}`, expected one of {names}")
            })
    }
}

/// Sentiment of one post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sentiment {
    pub label: SentimentLabel,
    /// `p(positive) - p(negative)`, in `[-1, 1]`.
    pub score: f32,
    pub probs: BTreeMap<SentimentLabel, f32>,
}

/// The kinds of named entity Pulse recognises (DESIGN.md 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Person,
    Organization,
    Location,
    Product,
    CreativeWork,
}

impl EntityKind {
    /// The kind's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Person => "person",
            EntityKind::Organization => "organization",
            EntityKind::Location => "location",
            EntityKind::Product => "product",
            EntityKind::CreativeWork => "creative_work",
        }
    }
}

/// A named entity as a span of the post's original text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub text: String,
    pub kind: EntityKind,
    /// Character (not byte) offsets into `Post::text`, end exclusive.
    pub start: usize,
    pub end: usize,
    pub score: f32,
}

/// A keyword or key phrase; a higher score means more relevant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keyword {
    pub term: String,
    pub score: f32,
}

/// What the enrich stage adds to a post.
///
/// Tasks a model directory does not provide stay empty (`sentiment: null`, no emotions, no
/// entities) rather than being filled with made-up values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Enrichment {
    pub sentiment: Option<Sentiment>,
    #[serde(default)]
    pub emotions: BTreeMap<String, f32>,
    #[serde(default)]
    pub entities: Vec<Entity>,
    #[serde(default)]
    pub keywords: Vec<Keyword>,
}

/// A post with its enrichment, as produced to `pulse.posts.enriched`.
///
/// Serialized flat: the post's fields next to the enrichment's, `model` and `enriched_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedPost {
    // Declared before `post`: on deserialization a flattened struct takes its own keys out,
    // so the post's catch-all `extra` map never sees them.
    #[serde(flatten)]
    pub enrichment: Enrichment,
    #[serde(flatten)]
    pub post: Post,
    /// `name@version` of what produced the enrichment.
    pub model: String,
    pub enriched_at: DateTime<Utc>,
}

/// Top-level keys of an [`EnrichedPost`] that are not post fields.
const ENRICHMENT_KEYS: [&str; 6] = [
    "sentiment",
    "emotions",
    "entities",
    "keywords",
    "model",
    "enriched_at",
];

impl EnrichedPost {
    /// Joins a post and its enrichment.
    ///
    /// Unknown post fields that would collide with enrichment keys are dropped, so the JSON
    /// never carries a key twice.
    pub fn new(
        mut post: Post,
        enrichment: Enrichment,
        model: String,
        enriched_at: DateTime<Utc>,
    ) -> Self {
        post.extra
            .retain(|key, _| !ENRICHMENT_KEYS.contains(&key.as_str()));
        Self {
            enrichment,
            post,
            model,
            enriched_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Post {
        serde_json::from_value(json!({
            "id": "reddit:t1_abc",
            "source": "reddit",
            "channel": "reddit/r/rust",
            "author": "ferris",
            "text": "Rust 2024 edition is out",
            "created_at": "2026-11-01T10:00:00+01:00",
            "meta": {"score": 12},
            "flair": "news",
            "sentiment": "user-supplied"
        }))
        .unwrap()
    }

    #[test]
    fn names_are_the_serialized_names() {
        for label in SentimentLabel::ALL {
            assert_eq!(serde_json::to_value(label).unwrap(), json!(label.as_str()));
            assert_eq!(label.as_str().parse(), Ok(label));
        }
        assert_eq!(
            "happy".parse::<SentimentLabel>(),
            Err("unknown sentiment `happy`, expected one of negative, neutral, positive".into())
        );
        for kind in [
            EntityKind::Person,
            EntityKind::Organization,
            EntityKind::Location,
            EntityKind::Product,
            EntityKind::CreativeWork,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
        }
    }

    #[test]
    fn unknown_fields_are_kept_and_times_normalised_to_utc() {
        let post = sample();
        assert_eq!(post.extra.get("flair"), Some(&json!("news")));
        assert_eq!(post.created_at.to_rfc3339(), "2026-11-01T09:00:00+00:00");
        let back = serde_json::to_value(&post).unwrap();
        assert_eq!(back["flair"], json!("news"));
        assert_eq!(back["meta"]["score"], json!(12));
    }

    #[test]
    fn enriched_post_round_trips_flat_without_duplicate_keys() {
        let enrichment = Enrichment {
            keywords: vec![Keyword {
                term: "rust".into(),
                score: 0.9,
            }],
            ..Enrichment::default()
        };
        let at = DateTime::parse_from_rfc3339("2026-11-01T09:00:01Z")
            .unwrap()
            .with_timezone(&Utc);
        let enriched = EnrichedPost::new(sample(), enrichment, "yake@1".into(), at);
        let text = serde_json::to_string(&enriched).unwrap();
        assert_eq!(text.matches("\"sentiment\"").count(), 1);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["id"], json!("reddit:t1_abc"));
        assert_eq!(value["sentiment"], Value::Null);
        assert_eq!(value["keywords"][0]["term"], json!("rust"));
        assert_eq!(value["flair"], json!("news"));
        let back: EnrichedPost = serde_json::from_str(&text).unwrap();
        assert_eq!(back, enriched);
        assert!(!back.post.extra.contains_key("keywords"));
    }
}
