//! What both stores count per time bucket, in one shape: posts, posts per language,
//! sentiment labels, score and emotion sums. Sums are integers in millionths, so totals are exact and do not depend on
//! the order in which posts are added; the speed layer and the batch layer agree to the unit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::post::{Enrichment, EntityKind, SentimentLabel};

/// The language code of a post whose language is not known (BCP 47's "undetermined").
pub const UNDETERMINED_LANGUAGE: &str = "und";

/// `value` in millionths, for exact integer sums.
pub fn micros(value: f32) -> i64 {
    (f64::from(value) * 1e6).round() as i64
}

/// The term under which an entity is counted: `kind:text`.
pub fn entity_member(kind: EntityKind, text: &str) -> String {
    format!("{}:{text}", kind.as_str())
}

/// Counters of one bucket (or of several, merged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub posts: u64,
    pub negative: u64,
    pub neutral: u64,
    pub positive: u64,
    /// Posts that had a sentiment.
    pub scored: u64,
    /// Sum of sentiment scores, in millionths.
    pub score_micros: i64,
    /// Sums of emotion probabilities, in millionths.
    pub emotion_micros: BTreeMap<String, i64>,
    /// Posts per language (`und` for posts without one).
    #[serde(default)]
    pub languages: BTreeMap<String, u64>,
}

impl Tally {
    /// Counts one post: its enrichment and its language (`None`: [`UNDETERMINED_LANGUAGE`]).
    pub fn add(&mut self, enrichment: &Enrichment, lang: Option<&str>) {
        self.posts += 1;
        *self
            .languages
            .entry(lang.unwrap_or(UNDETERMINED_LANGUAGE).to_string())
            .or_default() += 1;
        if let Some(sentiment) = &enrichment.sentiment {
            self.scored += 1;
            self.score_micros += micros(sentiment.score);
            match sentiment.label {
                SentimentLabel::Negative => self.negative += 1,
                SentimentLabel::Neutral => self.neutral += 1,
                SentimentLabel::Positive => self.positive += 1,
            }
        }
        for (emotion, probability) in &enrichment.emotions {
            *self.emotion_micros.entry(emotion.clone()).or_default() += micros(*probability);
        }
    }

    /// Adds another bucket's counters to these.
    pub fn merge(&mut self, other: &Tally) {
        self.posts += other.posts;
        self.negative += other.negative;
        self.neutral += other.neutral;
        self.positive += other.positive;
        self.scored += other.scored;
        self.score_micros += other.score_micros;
        for (emotion, sum) in &other.emotion_micros {
            *self.emotion_micros.entry(emotion.clone()).or_default() += sum;
        }
        for (lang, posts) in &other.languages {
            *self.languages.entry(lang.clone()).or_default() += posts;
        }
    }

    /// Mean sentiment score of the posts that had one.
    pub fn mean_score(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.score_micros as f64 / 1e6 / self.scored as f64)
    }

    /// Mean probability of each emotion over all posts.
    pub fn emotion_means(&self) -> BTreeMap<String, f64> {
        if self.posts == 0 {
            return BTreeMap::new();
        }
        self.emotion_micros
            .iter()
            .map(|(emotion, sum)| (emotion.clone(), *sum as f64 / 1e6 / self.posts as f64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::post::Sentiment;

    fn enrichment(label: SentimentLabel, score: f32, joy: f32) -> Enrichment {
        Enrichment {
            sentiment: Some(Sentiment {
                label,
                score,
                probs: BTreeMap::new(),
            }),
            emotions: [("joy".to_string(), joy)].into(),
            ..Enrichment::default()
        }
    }

    #[test]
    fn sums_are_exact_in_any_order() {
        let posts = [
            enrichment(SentimentLabel::Positive, 0.1, 0.3),
            enrichment(SentimentLabel::Negative, -0.7, 0.2),
            enrichment(SentimentLabel::Positive, 0.2, 0.1),
        ];
        let langs = [Some("en"), None, Some("en")];
        let mut forward = Tally::default();
        posts.iter().zip(langs).for_each(|(p, l)| forward.add(p, l));
        let mut backward = Tally::default();
        posts
            .iter()
            .zip(langs)
            .rev()
            .for_each(|(p, l)| backward.add(p, l));
        assert_eq!(forward, backward);
        assert_eq!(
            forward.languages,
            BTreeMap::from([("en".to_string(), 2), ("und".to_string(), 1)])
        );
        assert_eq!(forward.score_micros, -400_000);
        assert_eq!(forward.positive, 2);
        assert_eq!(forward.negative, 1);
        assert_eq!(forward.emotion_micros["joy"], 600_000);
        assert_eq!(forward.mean_score(), Some(-0.4 / 3.0));
    }

    #[test]
    fn merging_equals_adding() {
        let a = enrichment(SentimentLabel::Neutral, 0.0, 0.5);
        let b = enrichment(SentimentLabel::Positive, 0.9, 0.25);
        let mut whole = Tally::default();
        whole.add(&a, Some("es"));
        whole.add(&b, Some("en"));
        let (mut left, mut right) = (Tally::default(), Tally::default());
        left.add(&a, Some("es"));
        right.add(&b, Some("en"));
        left.merge(&right);
        assert_eq!(left, whole);
        let mut unscored = Tally::default();
        unscored.add(&Enrichment::default(), None);
        assert_eq!(unscored.mean_score(), None);
        assert_eq!(unscored.posts, 1);
    }
}
