//! `GET /api/v1/history?channel=C&from=T[&to=T][&granularity=hour|day][&top=N]`: a
//! channel's buckets over a range, the serving layer's merge of both layers. Buckets that
//! end at or before the batch watermark come from the batch layer's exact rollups; later
//! ones from the speed layer's minutes (`complete` is false where part of a bucket is older
//! than the speed layer keeps). Each bucket says which layer it came from.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use pulse_batch::TermKind;
use pulse_core::bucket::Granularity;
use pulse_core::Tally;
use pulse_speed::{minute_of, Series};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use crate::params::{time, Params};
use crate::{ApiError, ApiState, ErrorBody};

/// Most buckets one request may ask for (about 83 days of hours).
const MAX_BUCKETS: usize = 2_000;
/// Batch buckets whose top terms are read at once.
const TERM_READS: usize = 8;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// The channel.
    channel: String,
    /// Start: RFC 3339, `YYYY-MM-DD`, `now` or `now-48h`.
    from: String,
    /// End, exclusive (default `now`).
    to: Option<String>,
    /// `hour` (default) or `day`.
    granularity: Option<String>,
    /// Top keywords and entities per bucket (default 0).
    top: Option<usize>,
}

/// Which layer a bucket's figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Source {
    /// Exact rollups, recomputed up to the watermark.
    Batch,
    /// The speed layer's minute counters.
    Speed,
    /// After the watermark and older than the speed layer keeps: nobody has figures yet
    /// (run `pulse batch recompute`).
    None,
}

#[derive(Debug, Serialize)]
struct Term {
    term: String,
    count: u64,
}

#[derive(Debug, Serialize)]
struct Bucket {
    start: DateTime<Utc>,
    source: Source,
    /// Whether the figures cover the whole bucket.
    complete: bool,
    posts: u64,
    labels: BTreeMap<&'static str, u64>,
    mean_score: Option<f64>,
    emotion_means: BTreeMap<String, f64>,
    /// Posts per language code (`und`: not known).
    languages: BTreeMap<String, u64>,
    keywords: Vec<Term>,
    entities: Vec<Term>,
}

impl Bucket {
    fn new(start: DateTime<Utc>, source: Source, complete: bool, tally: &Tally) -> Self {
        let mean = |sum: i64, n: u64| sum as f64 / 1e6 / n as f64;
        Bucket {
            start,
            source,
            complete,
            posts: tally.posts,
            labels: BTreeMap::from([
                ("negative", tally.negative),
                ("neutral", tally.neutral),
                ("positive", tally.positive),
            ]),
            mean_score: (tally.scored > 0).then(|| mean(tally.score_micros, tally.scored)),
            emotion_means: tally
                .emotion_micros
                .iter()
                .filter(|_| tally.posts > 0)
                .map(|(emotion, sum)| (emotion.clone(), mean(*sum, tally.posts)))
                .collect(),
            languages: tally.languages.clone(),
            keywords: Vec::new(),
            entities: Vec::new(),
        }
    }
}

/// A channel's buckets over a range: batch rollups up to the watermark, speed-layer minutes
/// after it, each bucket labelled by its `source` (`batch`, `speed` or `none`).
#[utoipa::path(get, path = "/api/v1/history", tag = "history", params(HistoryParams), responses(
    (status = 200, description = "the buckets and the watermark", content_type = "application/json"),
    (status = 400, description = "a parameter is missing, malformed or out of range", body = ErrorBody), (status = 429, description = "over the client's rate", body = ErrorBody), (status = 503, description = "a store is down", body = ErrorBody)))]
pub async fn buckets(
    State(state): State<ApiState>,
    Params(params): Params<HistoryParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = Utc::now();
    let from = time("from", &params.from)?;
    let to = time("to", params.to.as_deref().unwrap_or("now"))?;
    if from >= to {
        return Err(ApiError::bad_parameter(format!(
            "the range is empty: from {from} is not before to {to}"
        )));
    }
    let granularity: Granularity = params
        .granularity
        .as_deref()
        .unwrap_or("hour")
        .parse()
        .map_err(|e| ApiError::bad_parameter(format!("{e}")))?;
    let top = params.top.unwrap_or(0);
    if top > state.config.max_top {
        return Err(ApiError::bad_parameter(format!(
            "top is at most {}, not {top}",
            state.config.max_top
        )));
    }
    // Counted before they are listed: a range of ten thousand years is refused at once.
    let count = granularity.count(from, to);
    if count > MAX_BUCKETS as u64 {
        return Err(ApiError::bad_parameter(format!(
            "{count} {granularity} buckets asked for; at most {MAX_BUCKETS} per request"
        )));
    }
    let starts = granularity.buckets(from, to);

    let watermark = state.batch.watermark().await?;
    let speed_horizon = now - Duration::seconds(state.speed.retention_secs() as i64);
    let exact = |start: DateTime<Utc>| watermark.is_some_and(|w| granularity.next(start) <= w);
    let batch_starts: Vec<DateTime<Utc>> = starts.iter().copied().filter(|&s| exact(s)).collect();

    let mut stored: BTreeMap<DateTime<Utc>, Tally> = BTreeMap::new();
    if let (Some(&first), Some(&last)) = (batch_starts.first(), batch_starts.last()) {
        for rollup in state
            .batch
            .rollups(&params.channel, granularity, first, granularity.next(last))
            .await?
        {
            stored.insert(rollup.bucket, rollup.tally);
        }
    }

    let mut buckets = Vec::with_capacity(starts.len());
    for start in starts {
        let end = granularity.next(start);
        if exact(start) {
            // A recomputed bucket without a rollup had no posts.
            let tally = stored.remove(&start).unwrap_or_default();
            buckets.push(Bucket::new(start, Source::Batch, true, &tally));
        } else if end > speed_horizon && start <= now {
            let first_minute = minute_of(start.max(speed_horizon));
            // Bucket ends are whole minutes; the current bucket runs to the current minute.
            let end_minute = if end <= now {
                minute_of(end)
            } else {
                minute_of(now) + 1
            };
            let window = state
                .speed
                .window_with(&params.channel, first_minute, end_minute, top, Series::None)
                .await?;
            let complete = start >= speed_horizon;
            let mut bucket = Bucket::new(start, Source::Speed, complete, &window.totals.tally());
            bucket.keywords = terms(window.keywords);
            bucket.entities = terms(window.entities);
            buckets.push(bucket);
        } else {
            // Not begun yet (the speed layer will count it), or past both layers' reach.
            let source = if start > now {
                Source::Speed
            } else {
                Source::None
            };
            buckets.push(Bucket::new(start, source, false, &Tally::default()));
        }
    }

    if top > 0 {
        let channel = params.channel.as_str();
        let batch = &state.batch;
        // Owned (index, start) pairs: futures borrowing the bucket list would not be Send.
        let wanted: Vec<(usize, DateTime<Utc>)> = buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| b.source == Source::Batch && b.posts > 0)
            .map(|(index, b)| (index, b.start))
            .collect();
        let reads = wanted.into_iter().map(|(index, start)| async move {
            let (keywords, entities) = futures::try_join!(
                batch.top_terms(channel, granularity, start, TermKind::Keyword),
                batch.top_terms(channel, granularity, start, TermKind::Entity),
            )?;
            Ok::<_, pulse_batch::BatchError>((index, keywords, entities))
        });
        let found: Vec<_> = futures::stream::iter(reads)
            .buffer_unordered(TERM_READS)
            .try_collect()
            .await?;
        for (index, keywords, entities) in found {
            let cut = |terms: Vec<pulse_batch::TermCount>| -> Vec<Term> {
                terms
                    .into_iter()
                    .take(top)
                    .map(|t| Term {
                        term: t.term,
                        count: t.posts,
                    })
                    .collect()
            };
            buckets[index].keywords = cut(keywords);
            buckets[index].entities = cut(entities);
        }
    }

    Ok(Json(serde_json::json!({
        "channel": params.channel,
        "granularity": granularity.as_str(),
        "watermark": watermark,
        "buckets": buckets,
    })))
}

fn terms(counts: Vec<pulse_speed::TermCount>) -> Vec<Term> {
    counts
        .into_iter()
        .map(|t| Term {
            term: t.term,
            count: t.count,
        })
        .collect()
}
