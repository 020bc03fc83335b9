//! Posts built field by field: a test names the fields it is about and takes sensible
//! values for the rest, instead of spelling out every field of [`Post`] and [`Enrichment`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pulse_core::{
    EnrichedPost, Enrichment, Entity, EntityKind, Keyword, Post, Sentiment, SentimentLabel,
};

/// The model name enriched test posts carry.
pub const TEST_MODEL: &str = "test@1";

/// Starts a post of `channel` with `id`, created at `created_at`: source `synthetic`, text
/// `text`, no author or language, no enrichment, enriched by [`TEST_MODEL`] when created.
pub fn post(
    id: impl Into<String>,
    channel: impl Into<String>,
    created_at: DateTime<Utc>,
) -> PostBuilder {
    PostBuilder {
        post: Post {
            id: id.into(),
            source: "synthetic".into(),
            channel: channel.into(),
            author: None,
            text: "text".into(),
            created_at,
            url: None,
            lang: None,
            parent_id: None,
            meta: Default::default(),
            extra: Default::default(),
        },
        enrichment: Enrichment::default(),
        model: TEST_MODEL.into(),
        enriched_at: created_at,
    }
}

/// A post under construction; finish it with [`PostBuilder::build`] (the post),
/// [`PostBuilder::enriched`] (the post with its enrichment) or [`PostBuilder::record`]
/// (the enriched post as a record of the enriched topic).
#[derive(Debug, Clone)]
#[must_use]
pub struct PostBuilder {
    post: Post,
    enrichment: Enrichment,
    model: String,
    enriched_at: DateTime<Utc>,
}

impl PostBuilder {
    /// Where the post came from (`reddit`, `file`, ...).
    pub fn source(mut self, source: &str) -> Self {
        self.post.source = source.into();
        self
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.post.text = text.into();
        self
    }

    pub fn author(mut self, author: impl Into<String>) -> Self {
        self.post.author = Some(author.into());
        self
    }

    /// The language as the enrich stage records it; `None` is a post stored before it did.
    pub fn lang(mut self, lang: Option<&str>) -> Self {
        self.post.lang = lang.map(str::to_string);
        self
    }

    /// A sentiment `label` with `score`, without class probabilities.
    pub fn sentiment(self, label: SentimentLabel, score: f32) -> Self {
        self.sentiment_of(Some(Sentiment {
            label,
            score,
            probs: BTreeMap::new(),
        }))
    }

    /// The whole sentiment, or none (a post no sentiment model read).
    pub fn sentiment_of(mut self, sentiment: Option<Sentiment>) -> Self {
        self.enrichment.sentiment = sentiment;
        self
    }

    /// One emotion's score (added to those already set).
    pub fn emotion(mut self, emotion: &str, score: f32) -> Self {
        self.enrichment.emotions.insert(emotion.into(), score);
        self
    }

    /// A keyword of score 0.5 (after those already set).
    pub fn keyword(mut self, term: impl Into<String>) -> Self {
        self.enrichment.keywords.push(Keyword {
            term: term.into(),
            score: 0.5,
        });
        self
    }

    /// A named entity spanning the start of the text, of score 0.9 (after those already
    /// set).
    pub fn entity(mut self, text: &str, kind: EntityKind) -> Self {
        self.enrichment.entities.push(Entity {
            text: text.into(),
            kind,
            start: 0,
            end: text.chars().count(),
            score: 0.9,
        });
        self
    }

    /// Several emotions' scores (added to those already set).
    pub fn emotions<'a>(self, emotions: impl IntoIterator<Item = (&'a str, f32)>) -> Self {
        emotions
            .into_iter()
            .fold(self, |post, (emotion, score)| post.emotion(emotion, score))
    }

    /// Several keywords of score 0.5 (after those already set).
    pub fn keywords<T: Into<String>>(self, terms: impl IntoIterator<Item = T>) -> Self {
        terms.into_iter().fold(self, PostBuilder::keyword)
    }

    /// Several named entities, as [`PostBuilder::entity`] makes them.
    pub fn entities<'a>(self, entities: impl IntoIterator<Item = (&'a str, EntityKind)>) -> Self {
        entities
            .into_iter()
            .fold(self, |post, (text, kind)| post.entity(text, kind))
    }

    /// The whole enrichment, replacing what was set.
    pub fn enrichment(mut self, enrichment: Enrichment) -> Self {
        self.enrichment = enrichment;
        self
    }

    pub fn model(mut self, model: &str) -> Self {
        self.model = model.into();
        self
    }

    pub fn enriched_at(mut self, enriched_at: DateTime<Utc>) -> Self {
        self.enriched_at = enriched_at;
        self
    }

    /// The post alone, as a source would publish it.
    pub fn build(self) -> Post {
        self.post
    }

    pub fn enriched(self) -> EnrichedPost {
        EnrichedPost::new(self.post, self.enrichment, self.model, self.enriched_at)
    }

    /// The enriched post as the enriched topic holds it: keyed by post id, JSON value.
    pub fn record(self) -> (String, Vec<u8>) {
        let enriched = self.enriched();
        let value = serde_json::to_vec(&enriched).unwrap_or_default();
        (enriched.post.id, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_post_has_what_was_set_and_the_documented_defaults() {
        let at: DateTime<Utc> = "2026-11-30T22:00:00Z".parse().unwrap_or_default();
        let (key, value) = post("test:1", "reddit/r/rust", at)
            .text("Ferris in Berlin")
            .lang(Some("en"))
            .sentiment(SentimentLabel::Positive, 0.75)
            .emotion("joy", 0.5)
            .keyword("ferris")
            .entity("Berlin", EntityKind::Location)
            .record();
        assert_eq!(key, "test:1");
        let json: serde_json::Value = serde_json::from_slice(&value).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "test:1", "source": "synthetic", "channel": "reddit/r/rust",
                "text": "Ferris in Berlin", "created_at": "2026-11-30T22:00:00Z", "lang": "en",
                "sentiment": {"label": "positive", "score": 0.75, "probs": {}},
                "emotions": {"joy": 0.5},
                "entities": [{"text": "Berlin", "kind": "location", "start": 0, "end": 6, "score": 0.9}],
                "keywords": [{"term": "ferris", "score": 0.5}],
                "model": "test@1", "enriched_at": "2026-11-30T22:00:00Z",
            })
        );
    }

    #[test]
    fn the_plural_setters_add_as_the_singular_ones_do() {
        let at = Utc::now();
        let plural = post("test:2", "x/#rust", at)
            .emotions([("joy", 0.5), ("anger", 0.25)])
            .keywords(["ferris", "crab"])
            .entities([
                ("Ferris", EntityKind::Person),
                ("Berlin", EntityKind::Location),
            ])
            .enriched();
        let singular = post("test:2", "x/#rust", at)
            .emotion("joy", 0.5)
            .emotion("anger", 0.25)
            .keyword("ferris")
            .keyword("crab")
            .entity("Ferris", EntityKind::Person)
            .entity("Berlin", EntityKind::Location)
            .enriched();
        assert_eq!(
            serde_json::to_value(&plural).ok(),
            serde_json::to_value(&singular).ok()
        );
        assert_eq!(plural.enrichment.keywords.len(), 2);
        assert_eq!(plural.enrichment.entities.len(), 2);
    }
}
