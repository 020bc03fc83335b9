//! Applying enriched posts: one atomic script per post, pipelined per batch.
//!
//! Sums are kept as integers in millionths (score, emotion probabilities), so aggregates are
//! exact and independent of the order in which posts arrive. The same script records the
//! log position of the post (topic, partition, offset) in the channel's slot, so what Redis
//! holds after a crash says how far into the log it really got.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use pulse_core::{entity_member, micros, EnrichedPost, UNDETERMINED_LANGUAGE};
use redis::Script;

use crate::keys::minute_of;
use crate::{SpeedError, SpeedLayer};

/// Records the post's log position (the highest offset per `<topic>:<partition>` field,
/// also for a redelivered post), marks the post seen (SET NX EX) and only if it was new
/// increments its minute and hour counters, the minute and hour term sets, and appends it
/// to the channel's feed.
///
/// KEYS: seen, minute counters, minute keywords, hour keywords, minute entities,
/// hour entities, feed, hour counters, positions. ARGV: position field (or ''), offset,
/// ttl, hour ttl, label (or ''), score micros, language, then counted lists: emotions
/// (name, micros), keywords, entities; then feed cap and the post's JSON.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ttl = tonumber(ARGV[3])
if ARGV[1] ~= '' then
  local at = tonumber(redis.call('HGET', KEYS[9], ARGV[1]) or '-1')
  if tonumber(ARGV[2]) > at then redis.call('HSET', KEYS[9], ARGV[1], ARGV[2]) end
  redis.call('EXPIRE', KEYS[9], ttl)
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ttl) then return 0 end
local hour_ttl = tonumber(ARGV[4])
local m, h = KEYS[2], KEYS[8]
local function count(field, by)
  redis.call('HINCRBY', m, field, by); redis.call('HINCRBY', h, field, by)
end
count('n', 1)
count('g:' .. ARGV[7], 1)
if ARGV[5] ~= '' then
  count('l:' .. ARGV[5], 1)
  count('scored', 1)
  count('score', ARGV[6])
end
local i = 8
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do count('e:' .. ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZINCRBY', KEYS[3], 1, ARGV[i]); redis.call('ZINCRBY', KEYS[4], 1, ARGV[i]); i = i + 1
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZINCRBY', KEYS[5], 1, ARGV[i]); redis.call('ZINCRBY', KEYS[6], 1, ARGV[i]); i = i + 1
end
redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[i], '*', 'post', ARGV[i + 1])
for k = 2, 8 do redis.call('EXPIRE', KEYS[k], (k == 4 or k == 6 or k == 8) and hour_ttl or ttl) end
return 1
",
    )
});

/// Where a post was read from: recorded with it as the speed layer's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// A post to apply: the post, its JSON as the feed keeps it, and where it was read from
/// (none for posts that come from no log).
pub type PostToApply<'a> = (&'a EnrichedPost, &'a str, Option<LogPosition<'a>>);

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Posts counted now.
    pub applied: usize,
    /// Posts already counted before (redelivery), left alone.
    pub duplicates: usize,
}

impl SpeedLayer {
    /// Applies a batch atomically per post, in one round trip; posts seen before are
    /// skipped. The feed gets each post serialized anew; a consumer holding the JSON the
    /// post was decoded from uses [`apply_json`](Self::apply_json) instead.
    pub async fn apply(&self, posts: &[EnrichedPost]) -> Result<ApplyReport, SpeedError> {
        let json: Vec<String> = posts
            .iter()
            .map(|post| serde_json::to_string(post).unwrap_or_default())
            .collect();
        let posts: Vec<PostToApply> = posts
            .iter()
            .zip(json.iter().map(String::as_str))
            .map(|(post, json)| (post, json, None))
            .collect();
        self.apply_json(&posts).await
    }

    /// Like [`apply`](Self::apply), with each post's JSON as it arrived, which the feed
    /// keeps unchanged, and its log position, recorded atomically with its counts.
    pub async fn apply_json(&self, posts: &[PostToApply<'_>]) -> Result<ApplyReport, SpeedError> {
        if posts.is_empty() {
            return Ok(ApplyReport::default());
        }
        let mut connection = self.connection.clone();
        // Pipelined EVALSHA needs the script loaded, also after a Redis restart.
        APPLY.prepare_invoke().load_async(&mut connection).await?;
        let ttl = self.retention_secs;
        let hour_ttl = ttl + 3_600;
        let mut pipe = redis::pipe();
        let mut last_seen: BTreeMap<&str, i64> = BTreeMap::new();
        for &(enriched, json, position) in posts {
            let post = &enriched.post;
            let minute = minute_of(post.created_at);
            let hour = minute.div_euclid(60);
            let channel = post.channel.as_str();
            let keys = &self.keys;
            let mut invocation = APPLY.prepare_invoke();
            invocation
                .key(keys.seen(channel, &post.id))
                .key(keys.minute(channel, minute))
                .key(keys.minute_keywords(channel, minute))
                .key(keys.hour_keywords(channel, hour))
                .key(keys.minute_entities(channel, minute))
                .key(keys.hour_entities(channel, hour))
                .key(keys.feed(channel))
                .key(keys.hour(channel, hour))
                .key(keys.positions(channel));
            match position {
                Some(at) => invocation
                    .arg(format!("{}:{}", at.topic, at.partition))
                    .arg(at.offset),
                None => invocation.arg("").arg(0),
            };
            invocation.arg(ttl).arg(hour_ttl);
            match &enriched.enrichment.sentiment {
                Some(sentiment) => invocation
                    .arg(sentiment.label.as_str())
                    .arg(micros(sentiment.score)),
                None => invocation.arg("").arg(0),
            };
            invocation.arg(post.lang.as_deref().unwrap_or(UNDETERMINED_LANGUAGE));
            invocation.arg(enriched.enrichment.emotions.len());
            for (emotion, probability) in &enriched.enrichment.emotions {
                invocation.arg(emotion).arg(micros(*probability));
            }
            let keywords: BTreeSet<&str> = enriched
                .enrichment
                .keywords
                .iter()
                .map(|k| k.term.as_str())
                .collect();
            invocation.arg(keywords.len());
            for term in &keywords {
                invocation.arg(*term);
            }
            let entities: BTreeSet<String> = enriched
                .enrichment
                .entities
                .iter()
                .map(|e| entity_member(e.kind, &e.text))
                .collect();
            invocation.arg(entities.len());
            for member in &entities {
                invocation.arg(member);
            }
            invocation.arg(self.feed_length).arg(json);
            pipe.invoke_script(&invocation);
            let seen = last_seen.entry(channel).or_insert(i64::MIN);
            *seen = (*seen).max(post.created_at.timestamp_millis());
        }
        for (channel, millis) in &last_seen {
            pipe.cmd("ZADD")
                .arg(self.keys.channels())
                .arg("GT")
                .arg(*millis)
                .arg(*channel)
                .ignore();
        }
        let applied: Vec<i64> = pipe.query_async(&mut connection).await?;
        let new = applied.iter().filter(|&&a| a == 1).count();
        Ok(ApplyReport {
            applied: new,
            duplicates: posts.len() - new,
        })
    }
}
