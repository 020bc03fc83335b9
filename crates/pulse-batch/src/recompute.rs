//! `pulse batch recompute`: exact hour and day rollups and top terms rebuilt from the stored
//! posts, written as idempotent upserts, then the batch watermark advanced. Also the reads of
//! what it wrote (rollups, top terms, the watermark).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use chrono::{DateTime, Datelike, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use pulse_core::bucket::{from_millis, months};
use pulse_core::{entity_member, Enrichment, Granularity, Tally, TermCount};

use crate::read::{HourRow, TermKind};
use crate::write::MONTHS_SCOPE;
use crate::{BatchError, BatchStore};

/// The watermark row of the rollups.
pub const ROLLUPS_VIEW: &str = "rollups";

/// How long after an hour ends before a recompute without an explicit end treats it as
/// complete: posts still on their way through enrichment belong to it.
pub const RECOMPUTE_SETTLE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The end of a recompute given no end, at `now`: the start of the last hour that ended
/// over [`RECOMPUTE_SETTLE`] ago, so the watermark never passes an hour still receiving posts. The
/// CLI and the admin API both use it.
pub fn settled_end(now: DateTime<Utc>) -> DateTime<Utc> {
    Granularity::Hour.floor(now - RECOMPUTE_SETTLE)
}

/// Days recomputed at once (each reads its hours `batch.read_concurrency` at a time).
const DAYS_AT_ONCE: usize = 2;

#[cfg(test)]
mod settled_end_tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn a_default_recompute_stops_before_hours_still_receiving_posts() {
        // Two minutes into 07:00, hour 06:00 may still get posts: it is left out.
        assert_eq!(
            settled_end(at("2026-12-03T07:02:00Z")),
            at("2026-12-03T06:00:00Z")
        );
        assert_eq!(
            settled_end(at("2026-12-03T07:05:00Z")),
            at("2026-12-03T07:00:00Z")
        );
        assert_eq!(
            settled_end(at("2026-12-03T00:04:59Z")),
            at("2026-12-02T23:00:00Z")
        );
    }
}

/// The counters of one bucket of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollup {
    pub bucket: DateTime<Utc>,
    pub tally: Tally,
    pub computed_at: DateTime<Utc>,
}

/// How far a recompute is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RecomputeProgress {
    /// (channel, day) pairs to recompute, and done.
    pub days_total: usize,
    pub days_done: usize,
    /// Posts read so far.
    pub posts: u64,
}

/// What a recompute did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecomputeReport {
    /// The range recomputed: whole days from the start of `from`'s day, up to `to`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// (channel, day) pairs with posts.
    pub channel_days: usize,
    /// Hour buckets with posts.
    pub hours: usize,
    pub posts: u64,
    pub watermark_before: Option<DateTime<Utc>>,
    /// The watermark now; unchanged if the range left a gap after the old one.
    pub watermark: Option<DateTime<Utc>>,
}

type TermCounts = BTreeMap<(TermKind, String), u64>;

/// What recompute reads of a stored post: its enrichment and its language.
#[derive(serde::Deserialize)]
struct StoredPost {
    #[serde(flatten)]
    enrichment: Enrichment,
    #[serde(default)]
    lang: Option<String>,
}

/// Counts of one bucket: the tally and every term.
#[derive(Default)]
struct BucketCounts {
    tally: Tally,
    terms: TermCounts,
}

impl BucketCounts {
    fn add(&mut self, post: &StoredPost) {
        let enrichment = &post.enrichment;
        self.tally.add(enrichment, post.lang.as_deref());
        // As in the speed layer: a post counts once per distinct term.
        let keywords: BTreeSet<&str> = enrichment
            .keywords
            .iter()
            .map(|k| k.term.as_str())
            .collect();
        for term in keywords {
            *self
                .terms
                .entry((TermKind::Keyword, term.to_string()))
                .or_default() += 1;
        }
        let entities: BTreeSet<String> = enrichment
            .entities
            .iter()
            .map(|e| entity_member(e.kind, &e.text))
            .collect();
        for member in entities {
            *self.terms.entry((TermKind::Entity, member)).or_default() += 1;
        }
    }

    fn merge(&mut self, other: &BucketCounts) {
        self.tally.merge(&other.tally);
        for (term, count) in &other.terms {
            *self.terms.entry(term.clone()).or_default() += count;
        }
    }

    /// The `k` most frequent terms of each kind, by count then term.
    fn top(&self, k: usize) -> Vec<(TermKind, &str, u64)> {
        let mut top = Vec::new();
        for kind in [TermKind::Keyword, TermKind::Entity] {
            let mut terms: Vec<(TermKind, &str, u64)> = self
                .terms
                .iter()
                .filter(|((term_kind, _), _)| *term_kind == kind)
                .map(|((_, term), count)| (kind, term.as_str(), *count))
                .collect();
            terms.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.1.cmp(b.1)));
            terms.truncate(k);
            top.extend(terms);
        }
        top
    }
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl BatchStore {
    /// Up to when the rollups are exact, if a recompute ever finished.
    pub async fn watermark(&self) -> Result<Option<DateTime<Utc>>, BatchError> {
        let rows: Vec<(Option<DateTime<Utc>>,)> = self
            .read_partition(&self.statements.select_watermark, (ROLLUPS_VIEW,))
            .await?;
        Ok(rows.into_iter().next().and_then(|(until,)| until))
    }

    /// Recomputes the rollups of every channel from the start of `from`'s day (default: the
    /// watermark, or the first month with posts) up to `to` (floored to the hour), then
    /// advances the watermark to `to` if no gap is left after the old one.
    pub async fn recompute(
        &self,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
        progress: &(dyn Fn(RecomputeProgress) + Sync),
    ) -> Result<RecomputeReport, BatchError> {
        let to = Granularity::Hour.floor(to);
        let watermark_before = self.watermark().await?;
        let first_month = self.first_month().await?;
        let mut report = RecomputeReport {
            from: to,
            to,
            channel_days: 0,
            hours: 0,
            posts: 0,
            watermark_before,
            watermark: watermark_before,
        };
        let Some(from) = from.or(watermark_before).or(first_month) else {
            return Ok(report);
        };
        let start = Granularity::Day.floor(from);
        report.from = start;
        if start >= to {
            return Ok(report);
        }
        let channel_days = self.channel_days(start, to).await?;
        let total = channel_days.len();
        let done = AtomicUsize::new(0);
        let posts = AtomicU64::new(0);
        let hours = AtomicUsize::new(0);
        progress(RecomputeProgress {
            days_total: total,
            days_done: 0,
            posts: 0,
        });
        // Futures are made up front throughout: a closure over borrowed items inside a
        // stream adapter would not be provably Send.
        let days: Vec<_> = channel_days
            .iter()
            .map(|(day, channel)| async {
                let (day_posts, day_hours) = self.recompute_day(channel, *day, to).await?;
                hours.fetch_add(day_hours, Ordering::Relaxed);
                let posts = posts.fetch_add(day_posts, Ordering::Relaxed) + day_posts;
                let days_done = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(RecomputeProgress {
                    days_total: total,
                    days_done,
                    posts,
                });
                Ok::<_, BatchError>(())
            })
            .collect();
        stream::iter(days)
            .buffer_unordered(DAYS_AT_ONCE)
            .try_collect::<()>()
            .await?;
        report.channel_days = total;
        report.hours = hours.into_inner();
        report.posts = posts.into_inner();
        // Exact up to `to` only if nothing between the old watermark (or the first post)
        // and `start` was left out.
        let contiguous = match watermark_before {
            Some(watermark) => start <= watermark,
            None => first_month.is_none_or(|first| start <= first),
        };
        if contiguous && watermark_before.is_none_or(|watermark| to > watermark) {
            self.run(
                "watermark update",
                &self.statements.insert_watermark,
                (ROLLUPS_VIEW, to, Utc::now()),
            )
            .await?;
            report.watermark = Some(to);
        } else if !contiguous {
            tracing::warn!(
                from = %start,
                watermark = ?watermark_before,
                "range starts after the watermark: rollups written, watermark not advanced"
            );
        }
        Ok(report)
    }

    /// The first month with posts, if any.
    async fn first_month(&self) -> Result<Option<DateTime<Utc>>, BatchError> {
        let rows: Vec<(DateTime<Utc>,)> = self
            .read_partition(&self.statements.select_months, (MONTHS_SCOPE,))
            .await?;
        Ok(rows.into_iter().map(|(month,)| month).min())
    }

    /// Every (day, channel) with posts in `[start, to)`, oldest first.
    async fn channel_days(
        &self,
        start: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, String)>, BatchError> {
        let statement = &self.statements.select_channel_days;
        let partitions: Vec<Vec<(DateTime<Utc>, String)>> = stream::iter(months(start, to))
            .map(|month| self.read_partition(statement, (month,)))
            .buffered(self.read_concurrency)
            .try_collect()
            .await?;
        let mut days: Vec<(DateTime<Utc>, String)> = partitions
            .into_iter()
            .flatten()
            .filter(|(day, _)| *day >= start && *day < to)
            .collect();
        days.sort();
        days.dedup();
        Ok(days)
    }

    /// Recomputes the hours of one channel's day before `to`, and the day; returns the posts
    /// read and the hours that had any.
    async fn recompute_day(
        &self,
        channel: &str,
        day: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(u64, usize), BatchError> {
        let end = Granularity::Day.next(day).min(to);
        let statement = &self.statements.select_hour;
        let hours: Vec<(DateTime<Utc>, BucketCounts)> =
            stream::iter(Granularity::Hour.buckets(day, end))
                .map(|hour| async move {
                    let rows: Vec<HourRow> =
                        self.read_partition(statement, (channel, hour)).await?;
                    let mut counts = BucketCounts::default();
                    for (_, _, _, json) in rows {
                        match serde_json::from_str::<StoredPost>(&json) {
                            Ok(post) => counts.add(&post),
                            Err(error) => tracing::warn!(
                                channel,
                                %hour,
                                %error,
                                "stored post has no readable enrichment; not counted"
                            ),
                        }
                    }
                    Ok::<_, BatchError>((hour, counts))
                })
                .buffered(self.read_concurrency)
                .try_collect()
                .await?;
        let mut whole_day = BucketCounts::default();
        let mut busy_hours = 0;
        for (hour, counts) in &hours {
            if counts.tally.posts == 0 {
                continue;
            }
            busy_hours += 1;
            whole_day.merge(counts);
            self.write_bucket(channel, Granularity::Hour, *hour, counts)
                .await?;
        }
        if whole_day.tally.posts > 0 {
            self.write_bucket(channel, Granularity::Day, day, &whole_day)
                .await?;
        }
        Ok((whole_day.tally.posts, busy_hours))
    }

    /// Upserts a bucket's rollup and top terms, deleting terms that left the top.
    async fn write_bucket(
        &self,
        channel: &str,
        granularity: Granularity,
        bucket: DateTime<Utc>,
        counts: &BucketCounts,
    ) -> Result<(), BatchError> {
        let statements = &self.statements;
        let tally = &counts.tally;
        self.run(
            "rollup write",
            &statements.insert_rollup,
            (
                channel,
                granularity.as_str(),
                bucket.year(),
                bucket,
                i64_of(tally.posts),
                i64_of(tally.negative),
                i64_of(tally.neutral),
                i64_of(tally.positive),
                i64_of(tally.scored),
                tally.score_micros,
                &tally.emotion_micros,
                tally
                    .languages
                    .iter()
                    .map(|(lang, posts)| (lang.as_str(), i64_of(*posts)))
                    .collect::<BTreeMap<&str, i64>>(),
                Utc::now(),
            ),
        )
        .await?;
        let top = counts.top(self.top_terms);
        let kept: BTreeSet<(&str, &str)> = top
            .iter()
            .map(|(kind, term, _)| (kind.as_str(), *term))
            .collect();
        let stored: Vec<(String, String, i64)> = self
            .read_partition(
                &statements.select_terms,
                (channel, granularity.as_str(), bucket),
            )
            .await?;
        let stale: Vec<(String, String)> = stored
            .into_iter()
            .filter(|(kind, term, _)| !kept.contains(&(kind.as_str(), term.as_str())))
            .map(|(kind, term, _)| (kind, term))
            .collect();
        let deletes: Vec<_> = stale
            .iter()
            .map(|(kind, term)| {
                self.run(
                    "rollup write",
                    &statements.delete_term,
                    (channel, granularity.as_str(), bucket, kind, term),
                )
            })
            .collect();
        let deletes = stream::iter(deletes)
            .buffer_unordered(self.max_concurrency)
            .try_collect::<()>();
        let inserts: Vec<_> = top
            .iter()
            .map(|(kind, term, count)| {
                self.run(
                    "rollup write",
                    &statements.insert_term,
                    (
                        channel,
                        granularity.as_str(),
                        bucket,
                        kind.as_str(),
                        *term,
                        i64_of(*count),
                    ),
                )
            })
            .collect();
        let inserts = stream::iter(inserts)
            .buffer_unordered(self.max_concurrency)
            .try_collect::<()>();
        futures::try_join!(deletes, inserts)?;
        Ok(())
    }

    /// The rollups of a channel's buckets in `[from, to)`, oldest first; buckets without
    /// posts (or not recomputed yet) are absent.
    pub async fn rollups(
        &self,
        channel: &str,
        granularity: Granularity,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Rollup>, BatchError> {
        if from >= to {
            return Err(BatchError::Query(format!(
                "the range is empty: from {from} is not before to {to}"
            )));
        }
        let last = from_millis(to.timestamp_millis() - 1);
        let statement = &self.statements.select_rollups;
        type RollupRow = (
            DateTime<Utc>,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            Option<BTreeMap<String, i64>>,
            Option<BTreeMap<String, i64>>,
            DateTime<Utc>,
        );
        let years: Vec<Vec<RollupRow>> = stream::iter(from.year()..=last.year())
            .map(|year| self.read_partition(statement, (channel, granularity.as_str(), year)))
            .buffered(self.read_concurrency)
            .try_collect()
            .await?;
        let mut rollups: Vec<Rollup> = years
            .into_iter()
            .flatten()
            .filter(|row| row.0 >= from && row.0 < to)
            .map(
                |(
                    bucket,
                    posts,
                    negative,
                    neutral,
                    positive,
                    scored,
                    score_micros,
                    emotions,
                    languages,
                    computed_at,
                )| {
                    Rollup {
                        bucket,
                        tally: Tally {
                            posts: u64_of(posts),
                            negative: u64_of(negative),
                            neutral: u64_of(neutral),
                            positive: u64_of(positive),
                            scored: u64_of(scored),
                            score_micros,
                            emotion_micros: emotions.unwrap_or_default(),
                            languages: languages
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(lang, posts)| (lang, u64_of(posts)))
                                .collect(),
                        },
                        computed_at,
                    }
                },
            )
            .collect();
        rollups.sort_by_key(|rollup| rollup.bucket);
        Ok(rollups)
    }

    /// The stored top terms of a bucket, by count then term.
    pub async fn top_terms(
        &self,
        channel: &str,
        granularity: Granularity,
        bucket: DateTime<Utc>,
        kind: TermKind,
    ) -> Result<Vec<TermCount>, BatchError> {
        let rows: Vec<(String, String, i64)> = self
            .read_partition(
                &self.statements.select_terms,
                (channel, granularity.as_str(), bucket),
            )
            .await?;
        let mut terms: Vec<TermCount> = rows
            .into_iter()
            .filter(|(row_kind, _, _)| row_kind == kind.as_str())
            .map(|(_, term, posts)| TermCount {
                term,
                count: u64_of(posts),
            })
            .collect();
        TermCount::rank(&mut terms);
        Ok(terms)
    }
}
