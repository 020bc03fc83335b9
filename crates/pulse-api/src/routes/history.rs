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
use pulse_core::{Granularity, Series};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::params::{time, Params};
use crate::serving::{merge, History, LayerBucket, Layers, Reading};
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

/// A channel's buckets over a range: batch rollups up to the watermark, speed-layer minutes
/// after it, each bucket labelled by its `source` (`batch`, `speed` or `none`).
#[utoipa::path(get, path = "/api/v1/history", tag = "history", params(HistoryParams), responses(
    (status = 200, description = "the buckets and the watermark", body = History),
    (status = 400, description = "a parameter is missing, malformed or out of range", body = ErrorBody), (status = 429, description = "over the client's rate", body = ErrorBody), (status = 503, description = "a store is down", body = ErrorBody)))]
pub async fn buckets(
    State(state): State<ApiState>,
    Params(params): Params<HistoryParams>,
) -> Result<Json<History>, ApiError> {
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
    let layers = Layers {
        watermark: state.batch.watermark().await?,
        now,
        speed_horizon: now - Duration::seconds(state.speed.retention_secs() as i64),
    };
    let readings: Vec<(DateTime<Utc>, Reading)> = starts
        .iter()
        .map(|&start| (start, layers.reading(granularity, start)))
        .collect();

    let batch_starts: Vec<DateTime<Utc>> = readings
        .iter()
        .filter(|(_, reading)| *reading == Reading::Batch)
        .map(|(start, _)| *start)
        .collect();
    let mut batch: BTreeMap<DateTime<Utc>, LayerBucket> = BTreeMap::new();
    if let (Some(&first), Some(&last)) = (batch_starts.first(), batch_starts.last()) {
        for rollup in state
            .batch
            .rollups(&params.channel, granularity, first, granularity.next(last))
            .await?
        {
            let figures = LayerBucket {
                tally: rollup.tally,
                ..LayerBucket::default()
            };
            batch.insert(rollup.bucket, figures);
        }
    }
    if top > 0 {
        batch_terms(&state, &params.channel, granularity, top, &mut batch).await?;
    }

    let mut speed: BTreeMap<DateTime<Utc>, LayerBucket> = BTreeMap::new();
    for (start, reading) in readings {
        if let Reading::Speed {
            first_minute,
            end_minute,
            ..
        } = reading
        {
            let window = state
                .speed
                .window_with(&params.channel, first_minute, end_minute, top, Series::None)
                .await?;
            let figures = LayerBucket {
                tally: window.totals.tally(),
                keywords: window.keywords,
                entities: window.entities,
            };
            speed.insert(start, figures);
        }
    }

    Ok(Json(merge(
        &params.channel,
        granularity,
        &starts,
        &layers,
        batch,
        speed,
    )))
}

/// Reads the top `top` keywords and entities of each batch bucket that had posts.
async fn batch_terms(
    state: &ApiState,
    channel: &str,
    granularity: Granularity,
    top: usize,
    batch: &mut BTreeMap<DateTime<Utc>, LayerBucket>,
) -> Result<(), ApiError> {
    let store = &state.batch;
    let wanted: Vec<DateTime<Utc>> = batch
        .iter()
        .filter(|(_, figures)| figures.tally.posts > 0)
        .map(|(start, _)| *start)
        .collect();
    let reads = wanted.into_iter().map(|start| async move {
        let (keywords, entities) = futures::try_join!(
            store.top_terms(channel, granularity, start, TermKind::Keyword),
            store.top_terms(channel, granularity, start, TermKind::Entity),
        )?;
        Ok::<_, pulse_batch::BatchError>((start, keywords, entities))
    });
    let found: Vec<_> = futures::stream::iter(reads)
        .buffer_unordered(TERM_READS)
        .try_collect()
        .await?;
    for (start, mut keywords, mut entities) in found {
        keywords.truncate(top);
        entities.truncate(top);
        if let Some(figures) = batch.get_mut(&start) {
            figures.keywords = keywords;
            figures.entities = entities;
        }
    }
    Ok(())
}
