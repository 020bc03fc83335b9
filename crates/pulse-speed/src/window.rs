//! Reading windows: buckets folded at read time (minute counters, or hour counters for
//! the whole hours of the window when no per-minute series is asked for), top terms
//! merged from hour sets for the whole hours of the window and minute sets for its edges.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use pulse_core::{Series, Tally, TermCount};
use redis::{AsyncCommands, Script};
use serde::Serialize;

use crate::{FeedEntry, SpeedError, SpeedLayer};

/// Merges term sets into a scratch key and returns every member scoring at least the k-th
/// score (so ties at the cut are all there to be ordered by the caller).
/// KEYS: scratch, sets...; ARGV: k.
static TOP_TERMS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if #KEYS < 2 then return {} end
redis.call('ZUNIONSTORE', KEYS[1], #KEYS - 1, unpack(KEYS, 2))
local k = tonumber(ARGV[1])
local kth = redis.call('ZREVRANGE', KEYS[1], k - 1, k - 1, 'WITHSCORES')
local result
if #kth == 0 then
  result = redis.call('ZREVRANGE', KEYS[1], 0, -1, 'WITHSCORES')
else
  result = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', kth[2], 'WITHSCORES')
end
redis.call('DEL', KEYS[1])
return result
",
    )
});

/// Counters of one minute, or summed over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MinuteStats {
    /// Minutes since the Unix epoch (the first minute, for a window's totals).
    pub minute: i64,
    /// Posts counted.
    pub count: u64,
    /// Posts per sentiment label (`negative`, `neutral`, `positive`).
    pub labels: BTreeMap<String, u64>,
    /// Posts that had a sentiment.
    pub scored: u64,
    /// Sum of sentiment scores, in millionths.
    pub score_micros: i64,
    /// Sums of emotion probabilities, in millionths.
    pub emotion_micros: BTreeMap<String, i64>,
    /// Posts per language (`und`: not known).
    pub languages: BTreeMap<String, u64>,
}

impl MinuteStats {
    /// The same counters as the batch layer's rollups keep them.
    pub fn tally(&self) -> Tally {
        let label = |name: &str| self.labels.get(name).copied().unwrap_or(0);
        Tally {
            posts: self.count,
            negative: label("negative"),
            neutral: label("neutral"),
            positive: label("positive"),
            scored: self.scored,
            score_micros: self.score_micros,
            emotion_micros: self.emotion_micros.clone(),
            languages: self.languages.clone(),
        }
    }

    fn from_hash(minute: i64, fields: HashMap<String, i64>) -> Self {
        let mut stats = MinuteStats {
            minute,
            ..MinuteStats::default()
        };
        for (field, value) in fields {
            match field.as_str() {
                "n" => stats.count = value.max(0) as u64,
                "scored" => stats.scored = value.max(0) as u64,
                "score" => stats.score_micros = value,
                _ => {
                    if let Some(label) = field.strip_prefix("l:") {
                        stats.labels.insert(label.to_string(), value.max(0) as u64);
                    } else if let Some(emotion) = field.strip_prefix("e:") {
                        stats.emotion_micros.insert(emotion.to_string(), value);
                    } else if let Some(lang) = field.strip_prefix("g:") {
                        stats
                            .languages
                            .insert(lang.to_string(), value.max(0) as u64);
                    }
                }
            }
        }
        stats
    }

    fn add(&mut self, other: &MinuteStats) {
        self.count += other.count;
        self.scored += other.scored;
        self.score_micros += other.score_micros;
        for (label, n) in &other.labels {
            *self.labels.entry(label.clone()).or_default() += n;
        }
        for (emotion, sum) in &other.emotion_micros {
            *self.emotion_micros.entry(emotion.clone()).or_default() += sum;
        }
        for (lang, posts) in &other.languages {
            *self.languages.entry(lang.clone()).or_default() += posts;
        }
    }
}

/// Everything the live view shows of a channel over `[from_minute, to_minute)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowStats {
    /// The channel asked for.
    pub channel: String,
    /// First minute of the window, in minutes since the Unix epoch.
    pub from_minute: i64,
    /// Minute after the window's last (exclusive).
    pub to_minute: i64,
    /// The window's counters summed (`minute` is its first minute).
    pub totals: MinuteStats,
    /// Mean sentiment score of posts that had one; null when none had.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub mean_score: Option<f64>,
    /// Mean probability of each emotion over the window's posts.
    pub emotion_means: BTreeMap<String, f64>,
    /// Most frequent keywords, by count then term.
    pub keywords: Vec<TermCount>,
    /// Most frequent entities (`kind:text`), by count then term.
    pub entities: Vec<TermCount>,
    /// The window's buckets, oldest first (zeros included), each starting at its `minute`:
    /// one per minute, one per clock hour (the first and last may be partial), or none,
    /// as asked ([`Series`]).
    pub series: Vec<MinuteStats>,
}

impl SpeedLayer {
    /// The window `[from_minute, to_minute)` of `channel`, with the `top_k` terms and a
    /// per-minute series.
    pub async fn window(
        &self,
        channel: &str,
        from_minute: i64,
        to_minute: i64,
        top_k: usize,
    ) -> Result<WindowStats, SpeedError> {
        self.window_with(channel, from_minute, to_minute, top_k, Series::Minute)
            .await
    }

    /// The window `[from_minute, to_minute)` of `channel`, with the `top_k` terms and the
    /// `series` asked for. Hour counters live an hour longer than minute counters, so a
    /// window reaching past the retention can count a little more by hours than by minutes.
    pub async fn window_with(
        &self,
        channel: &str,
        from_minute: i64,
        to_minute: i64,
        top_k: usize,
        series: Series,
    ) -> Result<WindowStats, SpeedError> {
        let span = to_minute - from_minute;
        let longest = (self.retention_secs / 60) as i64 + 60;
        if span <= 0 || span > longest {
            return Err(SpeedError::Window(format!(
                "a window spans 1 to {longest} minutes, not {span}"
            )));
        }
        // Whole hours inside the window come from hour sets, the edges from minute sets.
        let first_hour = (from_minute + 59).div_euclid(60);
        let end_hour = to_minute.div_euclid(60);
        let mut keyword_sets = Vec::new();
        let mut entity_sets = Vec::new();
        for hour in first_hour..end_hour {
            keyword_sets.push(self.keys.hour_keywords(channel, hour));
            entity_sets.push(self.keys.hour_entities(channel, hour));
        }
        let covered = first_hour * 60..end_hour.max(first_hour) * 60;
        for minute in (from_minute..to_minute).filter(|m| !covered.contains(m)) {
            keyword_sets.push(self.keys.minute_keywords(channel, minute));
            entity_sets.push(self.keys.minute_entities(channel, minute));
        }

        // Counter buckets: every minute for a per-minute series; otherwise whole hours from
        // hour counters and the edges from minute counters.
        let buckets: Vec<(i64, String)> = match series {
            Series::Minute => (from_minute..to_minute)
                .map(|minute| (minute, self.keys.minute(channel, minute)))
                .collect(),
            Series::Hour | Series::None => {
                let mut buckets: Vec<(i64, String)> = (from_minute..to_minute)
                    .filter(|m| !covered.contains(m))
                    .map(|minute| (minute, self.keys.minute(channel, minute)))
                    .collect();
                buckets.extend(
                    (first_hour..end_hour).map(|hour| (hour * 60, self.keys.hour(channel, hour))),
                );
                buckets.sort_unstable_by_key(|(start, _)| *start);
                buckets
            }
        };

        // The three reads share the multiplexed connection: issued together, the client
        // decodes one reply while Redis computes the next.
        let mut pipe = redis::pipe();
        for (_, key) in &buckets {
            pipe.hgetall(key);
        }
        let mut connection = self.connection.clone();
        let (hashes, keywords, entities) = futures::join!(
            pipe.query_async::<Vec<HashMap<String, i64>>>(&mut connection),
            self.top_terms(self.connection.clone(), channel, keyword_sets, top_k),
            self.top_terms(self.connection.clone(), channel, entity_sets, top_k),
        );
        let (hashes, keywords, entities) = (hashes?, keywords?, entities?);
        let read: Vec<MinuteStats> = buckets
            .iter()
            .zip(hashes)
            .map(|((start, _), fields)| MinuteStats::from_hash(*start, fields))
            .collect();
        let mut totals = MinuteStats {
            minute: from_minute,
            ..MinuteStats::default()
        };
        for bucket in &read {
            totals.add(bucket);
        }
        let series: Vec<MinuteStats> = match series {
            Series::Minute => read,
            Series::Hour => by_hour(&read),
            Series::None => Vec::new(),
        };

        let tally = totals.tally();
        Ok(WindowStats {
            channel: channel.to_string(),
            from_minute,
            to_minute,
            totals,
            mean_score: tally.mean_score(),
            emotion_means: tally.emotion_means(),
            keywords,
            entities,
            series,
        })
    }

    async fn top_terms(
        &self,
        mut connection: redis::aio::ConnectionManager,
        channel: &str,
        sets: Vec<String>,
        top_k: usize,
    ) -> Result<Vec<TermCount>, SpeedError> {
        if top_k == 0 || sets.is_empty() {
            return Ok(Vec::new());
        }
        let scratch = self.keys.scratch(channel);
        let mut invocation = TOP_TERMS.prepare_invoke();
        invocation.key(scratch);
        for set in &sets {
            invocation.key(set);
        }
        invocation.arg(top_k);
        let flat: Vec<(String, f64)> = invocation.invoke_async(&mut connection).await?;
        let mut terms: Vec<TermCount> = flat
            .into_iter()
            .map(|(term, score)| TermCount {
                term,
                count: score.max(0.0) as u64,
            })
            .collect();
        TermCount::rank(&mut terms);
        terms.truncate(top_k);
        Ok(terms)
    }

    /// Known channels with their last-seen time (ms since the epoch), most recent first.
    pub async fn channels(&self) -> Result<Vec<(String, i64)>, SpeedError> {
        let mut connection = self.connection.clone();
        let channels: Vec<(String, f64)> = connection
            .zrevrange_withscores(self.keys.channels(), 0, -1)
            .await?;
        Ok(channels.into_iter().map(|(c, ms)| (c, ms as i64)).collect())
    }

    /// The `count` most recent posts of a channel's feed (JSON), newest first, with their
    /// stream ids.
    pub async fn recent(
        &self,
        channel: &str,
        count: usize,
    ) -> Result<Vec<(String, String)>, SpeedError> {
        let mut connection = self.connection.clone();
        let reply: redis::streams::StreamRangeReply = connection
            .xrevrange_count(self.keys.feed(channel), "+", "-", count)
            .await?;
        Ok(feed_entries(reply.ids))
    }

    /// Feed entries of `channel` after stream id `after` (`0` for all), oldest first, at
    /// most `count`: posts, and the deletions of posts shown before. Does not block: a
    /// blocking read would stall the shared connection, so live readers (SSE) poll.
    pub async fn feed_after(
        &self,
        channel: &str,
        after: &str,
        count: usize,
    ) -> Result<Vec<(String, FeedEntry)>, SpeedError> {
        let mut connection = self.connection.clone();
        let options = redis::streams::StreamReadOptions::default().count(count);
        let reply: Option<redis::streams::StreamReadReply> = connection
            .xread_options(&[self.keys.feed(channel)], &[after], &options)
            .await?;
        Ok(reply
            .map(|r| {
                r.keys
                    .into_iter()
                    .flat_map(|k| k.ids)
                    .filter_map(|entry| {
                        let post: Option<String> = entry.get("post");
                        let deleted: Option<String> = entry.get("deleted");
                        match (post, deleted) {
                            (Some(post), _) => Some((entry.id, FeedEntry::Post(post))),
                            (None, Some(id)) => Some((entry.id, FeedEntry::Deleted(id))),
                            (None, None) => None,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Buckets (minutes and whole hours, oldest first) folded into one entry per clock hour,
/// each starting at its first bucket.
fn by_hour(buckets: &[MinuteStats]) -> Vec<MinuteStats> {
    let mut hours: Vec<MinuteStats> = Vec::new();
    for bucket in buckets {
        match hours.last_mut() {
            Some(hour) if hour.minute.div_euclid(60) == bucket.minute.div_euclid(60) => {
                hour.add(bucket)
            }
            _ => hours.push(bucket.clone()),
        }
    }
    hours
}

fn feed_entries(ids: Vec<redis::streams::StreamId>) -> Vec<(String, String)> {
    ids.into_iter()
        .filter_map(|entry| {
            let post: Option<String> = entry.get("post");
            post.map(|p| (entry.id, p))
        })
        .collect()
}
