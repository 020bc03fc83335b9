//! A synthetic post generator for demos and load tests.
//!
//! Posts are labelled `source: synthetic` so they are never mistaken for real data. Texts
//! are built from templates mixing subjects, opinions of varied polarity, named things,
//! hashtags, mentions and links, so every enrichment has something to find. Seeded: the
//! same seed gives the same posts (except `created_at`, which is the generation time, or
//! spread over a past span to backfill history).

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Map;

use pulse_core::Post;

use crate::SourceItem;

const SUBJECTS: [&str; 12] = [
    "the new Rust release",
    "Tokio 2.0",
    "the Apple keynote",
    "Tesla's quarterly results",
    "the Champions League final",
    "Dune Part Two",
    "the Berlin marathon",
    "ChatGPT",
    "the Paris metro strike",
    "Nintendo Switch 2",
    "the heatwave in Madrid",
    "Taylor Swift's tour",
];
const POSITIVE: [&str; 8] = [
    "is absolutely brilliant",
    "made my day",
    "exceeded every expectation",
    "is a huge win",
    "looks fantastic",
    "is such a joy to use",
    "was incredible",
    "got me really excited",
];
const NEGATIVE: [&str; 8] = [
    "is a total disaster",
    "made me furious",
    "was deeply disappointing",
    "is frankly scary",
    "keeps breaking",
    "ruined my weekend",
    "is a waste of money",
    "left me so sad",
];
const NEUTRAL: [&str; 6] = [
    "was announced today",
    "is happening this week",
    "has new details out",
    "is trending right now",
    "was discussed at length",
    "will be covered tonight",
];
const TAILS: [&str; 8] = [
    "",
    " #breaking",
    " via @newsdesk",
    " https://example.org/story",
    " #opinion",
    " What do you all think?",
    " Thoughts?",
    " 🔥🔥",
];

/// Generates posts over a set of channels.
pub struct SyntheticSource {
    rng: StdRng,
    seed: u64,
    channels: Vec<String>,
    produced: u64,
    limit: Option<u64>,
    /// Start of the span the posts' `created_at` are spread over, up to when the source was
    /// built; `None`: each post is dated when generated.
    backfill: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl SyntheticSource {
    /// `limit` posts (endless when `None`) spread over `channels`.
    pub fn new(seed: u64, channels: Vec<String>, limit: Option<u64>) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            seed,
            channels: if channels.is_empty() {
                vec!["synthetic/demo".to_string()]
            } else {
                channels
            },
            produced: 0,
            limit,
            backfill: None,
        }
    }

    /// Dates the posts evenly from `since` to now, oldest first, instead of at generation
    /// time: a backfilled history for demos and tests. Without a limit, posts are dated
    /// when generated.
    pub fn backfill_since(mut self, since: DateTime<Utc>) -> Self {
        self.backfill = Some((since, Utc::now()));
        self
    }

    fn created_at(&self, sequence: u64) -> DateTime<Utc> {
        match (self.backfill, self.limit) {
            (Some((since, until)), Some(limit)) if limit > 0 && since < until => {
                let span = (until - since).num_milliseconds() as f64;
                let offset = span * sequence as f64 / limit as f64;
                since + chrono::Duration::milliseconds(offset as i64)
            }
            _ => Utc::now(),
        }
    }

    fn text(&mut self) -> String {
        let subject = SUBJECTS[self.rng.random_range(0..SUBJECTS.len())];
        let opinion = match self.rng.random_range(0..10) {
            0..=3 => POSITIVE[self.rng.random_range(0..POSITIVE.len())],
            4..=6 => NEGATIVE[self.rng.random_range(0..NEGATIVE.len())],
            _ => NEUTRAL[self.rng.random_range(0..NEUTRAL.len())],
        };
        let tail = TAILS[self.rng.random_range(0..TAILS.len())];
        let mut text = format!("{subject} {opinion}.{tail}");
        if let Some(first) = text.get(..1) {
            text = first.to_uppercase() + &text[1..];
        }
        text
    }
}

impl Iterator for SyntheticSource {
    type Item = SourceItem;

    fn next(&mut self) -> Option<SourceItem> {
        if self.limit.is_some_and(|limit| self.produced >= limit) {
            return None;
        }
        let sequence = self.produced;
        self.produced += 1;
        let channel = self.channels[self.rng.random_range(0..self.channels.len())].clone();
        let author = format!("user{}", self.rng.random_range(0..500));
        let text = self.text();
        let post = Post {
            id: format!("synthetic:{}-{sequence}", self.seed),
            source: "synthetic".into(),
            channel,
            author: Some(author),
            text,
            created_at: self.created_at(sequence),
            url: None,
            lang: Some("en".into()),
            parent_id: None,
            meta: Map::new(),
            extra: Map::new(),
        };
        Some(SourceItem::Post {
            post: Box::new(post),
            location: format!("synthetic#{sequence}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_posts_and_the_limit_holds() {
        let texts = |seed| {
            SyntheticSource::new(seed, vec!["a".into(), "b".into()], Some(50))
                .map(|item| match item {
                    SourceItem::Post { post, .. } => (post.id, post.channel, post.text),
                    other => panic!("generator made {other:?}"),
                })
                .collect::<Vec<_>>()
        };
        let first = texts(7);
        assert_eq!(first.len(), 50);
        assert_eq!(first, texts(7));
        assert_ne!(first, texts(8));
        assert!(first.iter().any(|(_, c, _)| c == "a") && first.iter().any(|(_, c, _)| c == "b"));
    }

    #[test]
    fn a_backfill_dates_posts_evenly_from_the_start_oldest_first() {
        let since = Utc::now() - chrono::Duration::hours(4);
        let times: Vec<DateTime<Utc>> = SyntheticSource::new(1, vec!["a".into()], Some(8))
            .backfill_since(since)
            .map(|item| match item {
                SourceItem::Post { post, .. } => post.created_at,
                other => panic!("generator made {other:?}"),
            })
            .collect();
        assert_eq!(times.len(), 8);
        assert_eq!(times[0], since);
        for (i, pair) in times.windows(2).enumerate() {
            let step = (pair[1] - pair[0]).num_milliseconds();
            assert!(
                (1_799_000..=1_801_000).contains(&step),
                "step {i}: {step} ms"
            );
        }
        assert!(times[7] < Utc::now() - chrono::Duration::minutes(29));
    }
}
