//! The serving layer's merge of the batch and speed layers into one history, as plain
//! functions over typed values. [`Layers::reading`] decides where each bucket's figures
//! are read; [`merge`] builds the answer from what was read. The history handler only
//! parses the request and reads the stores these name, so the merge is tested here without
//! HTTP or stores.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pulse_core::{Granularity, Tally, TermCount};
use pulse_speed::minute_of;
use serde::Serialize;
use utoipa::ToSchema;

/// Which layer a bucket's figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Exact rollups, recomputed up to the watermark.
    Batch,
    /// The speed layer's minute counters.
    Speed,
    /// After the watermark and older than the speed layer keeps: nobody has figures yet
    /// (run `pulse batch recompute`).
    None,
}

/// Posts per sentiment label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Labels {
    /// Posts labelled negative.
    pub negative: u64,
    /// Posts labelled neutral.
    pub neutral: u64,
    /// Posts labelled positive.
    pub positive: u64,
}

/// One bucket of a channel's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HistoryBucket {
    /// Start of the bucket (UTC); it ends where the next one starts.
    pub start: DateTime<Utc>,
    pub source: Source,
    /// Whether the figures cover the whole bucket: false where part of it is older than the
    /// speed layer keeps, and for a bucket still running or not begun.
    pub complete: bool,
    /// Posts in the bucket.
    pub posts: u64,
    pub labels: Labels,
    /// Mean sentiment score of the posts that had one; null when none had.
    #[schema(required = true)]
    pub mean_score: Option<f64>,
    /// Mean probability of each emotion over the bucket's posts; empty without posts.
    pub emotion_means: BTreeMap<String, f64>,
    /// Posts per language code (`und`: not known).
    pub languages: BTreeMap<String, u64>,
    /// Top keywords, most posts first (as many as `top` asked for).
    pub keywords: Vec<TermCount>,
    /// Top entities as `kind:text`, most posts first.
    pub entities: Vec<TermCount>,
}

/// `GET /api/v1/history`'s answer: a channel's buckets over a range, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct History {
    /// The channel asked for.
    pub channel: String,
    pub granularity: Granularity,
    /// End of the batch layer's exact rollups: buckets ending at or before it come from
    /// the batch layer. Null before the first recompute.
    #[schema(required = true)]
    pub watermark: Option<DateTime<Utc>>,
    /// One bucket per hour or day of the range, oldest first, empty ones included.
    pub buckets: Vec<HistoryBucket>,
}

/// What the serving layer knows of both layers when it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    /// The batch layer's watermark, if it has recomputed anything.
    pub watermark: Option<DateTime<Utc>>,
    /// The time of the answer.
    pub now: DateTime<Utc>,
    /// The oldest time the speed layer still has minutes for.
    pub speed_horizon: DateTime<Utc>,
}

/// Where one bucket's figures are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The bucket's rollup: it ends at or before the watermark.
    Batch,
    /// The speed layer's minutes `[first_minute, end_minute)`; `complete` when they cover
    /// the whole bucket.
    Speed {
        first_minute: i64,
        end_minute: i64,
        complete: bool,
    },
    /// Nothing to read: a bucket not begun (the speed layer will count it) or one past both
    /// layers' reach.
    Nothing(Source),
}

/// Figures one layer gave for one bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerBucket {
    pub tally: Tally,
    pub keywords: Vec<TermCount>,
    pub entities: Vec<TermCount>,
}

impl Layers {
    /// Where the bucket of `granularity` starting at `start` is read. A bucket the
    /// watermark falls inside is not yet exact, so the speed layer answers it.
    pub fn reading(&self, granularity: Granularity, start: DateTime<Utc>) -> Reading {
        let end = granularity.next(start);
        if self.watermark.is_some_and(|watermark| end <= watermark) {
            Reading::Batch
        } else if end > self.speed_horizon && start <= self.now {
            // Bucket ends are whole minutes; the current bucket runs to the current minute.
            let end_minute = if end <= self.now {
                minute_of(end)
            } else {
                minute_of(self.now) + 1
            };
            Reading::Speed {
                first_minute: minute_of(start.max(self.speed_horizon)),
                end_minute,
                complete: start >= self.speed_horizon,
            }
        } else if start > self.now {
            Reading::Nothing(Source::Speed)
        } else {
            Reading::Nothing(Source::None)
        }
    }
}

/// The history of `channel` over the buckets starting at `starts`: each from the layer
/// `layers` names for it. `batch` holds the rollups read (a bucket the batch layer answers
/// without a rollup had no posts), `speed` the speed layer's windows, both by bucket start.
pub fn merge(
    channel: &str,
    granularity: Granularity,
    starts: &[DateTime<Utc>],
    layers: &Layers,
    mut batch: BTreeMap<DateTime<Utc>, LayerBucket>,
    mut speed: BTreeMap<DateTime<Utc>, LayerBucket>,
) -> History {
    let buckets = starts
        .iter()
        .map(|&start| {
            let (source, complete, figures) = match layers.reading(granularity, start) {
                Reading::Batch => (Source::Batch, true, batch.remove(&start)),
                Reading::Speed { complete, .. } => (Source::Speed, complete, speed.remove(&start)),
                Reading::Nothing(source) => (source, false, None),
            };
            bucket(start, source, complete, figures.unwrap_or_default())
        })
        .collect();
    History {
        channel: channel.to_string(),
        granularity,
        watermark: layers.watermark,
        buckets,
    }
}

fn bucket(
    start: DateTime<Utc>,
    source: Source,
    complete: bool,
    figures: LayerBucket,
) -> HistoryBucket {
    let tally = figures.tally;
    HistoryBucket {
        start,
        source,
        complete,
        posts: tally.posts,
        labels: Labels {
            negative: tally.negative,
            neutral: tally.neutral,
            positive: tally.positive,
        },
        mean_score: tally.mean_score(),
        emotion_means: tally.emotion_means(),
        languages: tally.languages,
        keywords: figures.keywords,
        entities: figures.entities,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, hour, minute, 0).unwrap()
    }

    /// A speed reading from the minute of `first` to `end_minute`.
    fn speed(first: DateTime<Utc>, end_minute: i64, complete: bool) -> Reading {
        Reading::Speed {
            first_minute: minute_of(first),
            end_minute,
            complete,
        }
    }

    fn figures(posts: u64, positive: u64, score_micros: i64, joy_micros: i64) -> LayerBucket {
        LayerBucket {
            tally: Tally {
                posts,
                positive,
                neutral: posts - positive,
                scored: posts,
                score_micros,
                emotion_micros: [("joy".to_string(), joy_micros)].into(),
                languages: [("en".to_string(), posts)].into(),
                ..Tally::default()
            },
            keywords: vec![TermCount {
                term: "rust".into(),
                count: posts,
            }],
            entities: Vec::new(),
        }
    }

    #[test]
    fn a_bucket_the_watermark_falls_inside_comes_from_the_speed_layer() {
        let layers = Layers {
            watermark: Some(at(2, 12, 30)),
            now: at(2, 13, 20),
            speed_horizon: at(1, 13, 20),
        };
        let hour = Granularity::Hour;
        assert_eq!(layers.reading(hour, at(2, 11, 0)), Reading::Batch);
        assert_eq!(
            layers.reading(hour, at(2, 12, 0)),
            speed(at(2, 12, 0), minute_of(at(2, 13, 0)), true)
        );
        // The running hour is read up to and including the current minute.
        assert_eq!(
            layers.reading(hour, at(2, 13, 0)),
            speed(at(2, 13, 0), minute_of(at(2, 13, 20)) + 1, true)
        );
        assert_eq!(
            layers.reading(hour, at(2, 14, 0)),
            Reading::Nothing(Source::Speed)
        );
        // A day the watermark is inside is not exact either, whatever its exact hours.
        assert_eq!(
            layers.reading(Granularity::Day, at(2, 0, 0)),
            speed(at(2, 0, 0), minute_of(at(2, 13, 20)) + 1, true)
        );
        assert_eq!(
            layers.reading(Granularity::Day, at(1, 0, 0)),
            Reading::Batch
        );

        // The merge takes each bucket from its own layer, even where the other has figures.
        let starts = [at(2, 11, 0), at(2, 12, 0)];
        let batch = BTreeMap::from([
            (at(2, 11, 0), figures(4, 1, 2_000_000, 400_000)),
            (at(2, 12, 0), figures(9, 9, 0, 0)),
        ]);
        let speed = BTreeMap::from([
            (at(2, 11, 0), figures(7, 7, 0, 0)),
            (at(2, 12, 0), figures(2, 2, 1_500_000, 1_000_000)),
        ]);
        let history = merge("reddit/rust", hour, &starts, &layers, batch, speed);
        assert_eq!(history.watermark, Some(at(2, 12, 30)));
        let [first, second] = &history.buckets[..] else {
            panic!("two buckets: {history:?}");
        };
        assert_eq!(
            (first.source, first.complete, first.posts),
            (Source::Batch, true, 4)
        );
        assert_eq!(
            first.labels,
            Labels {
                negative: 0,
                neutral: 3,
                positive: 1
            }
        );
        assert_eq!(first.mean_score, Some(0.5));
        assert_eq!(
            first.emotion_means,
            BTreeMap::from([("joy".to_string(), 0.1)])
        );
        assert_eq!(
            first.keywords,
            vec![TermCount {
                term: "rust".into(),
                count: 4
            }]
        );
        assert_eq!(
            (second.source, second.complete, second.posts),
            (Source::Speed, true, 2)
        );
        assert_eq!(second.mean_score, Some(0.75));
        assert_eq!(
            second.emotion_means,
            BTreeMap::from([("joy".to_string(), 0.5)])
        );
    }

    #[test]
    fn buckets_at_the_speed_layers_retention_edge() {
        let now = at(2, 12, 10);
        let layers = Layers {
            watermark: None,
            now,
            speed_horizon: now - Duration::hours(2),
        };
        let hour = Granularity::Hour;
        // 10:00-11:00 straddles the horizon at 10:10: read from it, and incomplete.
        assert_eq!(
            layers.reading(hour, at(2, 10, 0)),
            speed(at(2, 10, 10), minute_of(at(2, 11, 0)), false)
        );
        assert_eq!(
            layers.reading(hour, at(2, 9, 0)),
            Reading::Nothing(Source::None)
        );

        // A bucket ending exactly at the horizon has no minute left; one starting there is whole.
        let layers = Layers {
            speed_horizon: at(2, 10, 0),
            ..layers
        };
        assert_eq!(
            layers.reading(hour, at(2, 9, 0)),
            Reading::Nothing(Source::None)
        );
        assert!(matches!(
            layers.reading(hour, at(2, 10, 0)),
            Reading::Speed { complete: true, .. }
        ));

        let starts = [at(2, 9, 0), at(2, 10, 0)];
        let speed = BTreeMap::from([(at(2, 10, 0), figures(3, 0, -1_500_000, 0))]);
        let history = merge("x/home", hour, &starts, &layers, BTreeMap::new(), speed);
        let sources: Vec<(Source, bool, u64)> = history
            .buckets
            .iter()
            .map(|b| (b.source, b.complete, b.posts))
            .collect();
        assert_eq!(
            sources,
            vec![(Source::None, false, 0), (Source::Speed, true, 3)]
        );
        assert_eq!(history.buckets[1].mean_score, Some(-0.5));
    }

    #[test]
    fn empty_layers_give_zero_buckets_with_no_means() {
        let now = at(2, 12, 0);
        let layers = Layers {
            watermark: Some(at(2, 10, 0)),
            now,
            speed_horizon: now - Duration::hours(1),
        };
        let starts = Granularity::Hour.buckets(at(2, 9, 0), at(2, 14, 0));
        let history = merge(
            "bluesky/firehose",
            Granularity::Hour,
            &starts,
            &layers,
            BTreeMap::new(),
            BTreeMap::new(),
        );
        let sources: Vec<(DateTime<Utc>, Source, bool)> = history
            .buckets
            .iter()
            .map(|b| (b.start, b.source, b.complete))
            .collect();
        assert_eq!(
            sources,
            vec![
                // Recomputed without a rollup: exactly no posts.
                (at(2, 9, 0), Source::Batch, true),
                (at(2, 10, 0), Source::None, false),
                (at(2, 11, 0), Source::Speed, true),
                (at(2, 12, 0), Source::Speed, true),
                (at(2, 13, 0), Source::Speed, false),
            ]
        );
        for bucket in &history.buckets {
            assert_eq!(bucket.posts, 0);
            assert_eq!(bucket.labels, Labels::default());
            assert_eq!(bucket.mean_score, None);
            assert!(bucket.emotion_means.is_empty() && bucket.languages.is_empty());
            assert!(bucket.keywords.is_empty() && bucket.entities.is_empty());
        }
        let json = serde_json::to_value(&history).unwrap();
        assert_eq!(json["granularity"], "hour");
        assert_eq!(json["watermark"], "2026-03-02T10:00:00Z");
        assert_eq!(
            json["buckets"][0],
            serde_json::json!({
                "start": "2026-03-02T09:00:00Z", "source": "batch", "complete": true, "posts": 0,
                "labels": {"negative": 0, "neutral": 0, "positive": 0}, "mean_score": null,
                "emotion_means": {}, "languages": {}, "keywords": [], "entities": [],
            })
        );
    }
}
