//! The Reddit source: new submissions and comments of some subreddits, read from the OAuth
//! API's listings, with edits and deletions found by rechecking recent items.
//!
//! Each poll reads a listing newest first and pages back with `after` until it meets an
//! item already handed out, or one older than the newest handed out (never `before`: it
//! stalls for good once that item is deleted). New items go out oldest first. Items younger
//! than `recheck_age_secs` are looked up again through `/api/info`, 100 per call: a changed
//! text becomes an update (the post again, same id) and a deleted or removed one a
//! tombstone, because Reddit's terms require deleted content to be removed.
//!
//! Polls, pages and rechecks share one request budget (see [`crate::live::budget`]): new
//! items first; a recheck round goes a call at a time while the budget has room beyond the
//! polls due before Reddit's window resets, and what does not fit waits for the next poll
//! (counted as `recheck_deferred`; after three deferrals in a row, a recheck goes once as
//! first work, so rechecks are slowed, never starved). The budget is part of the checkpoint, so a restarted
//! process continues its predecessor's pace.

pub mod client;
pub mod config;
#[cfg(any(test, feature = "fakes"))]
pub mod fake;
#[cfg(test)]
mod tests;
pub mod thing;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pulse_core::tombstone::TombstoneKind;
use pulse_core::{Post, PostLimits, Rejection, Tombstone};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{Grant, Listing, RedditConfig};

use self::client::{pause, Answer, RedditClient};
use self::thing::{reddit_post, RedditFallback};
use crate::live::{
    decode_position, encode_position, BudgetState, LiveSource, Priority, SeenWindow, SourceError,
    SourceMetrics,
};
use crate::SourceItem;

/// Most ids in one `/api/info` call.
const INFO_BATCH: usize = 100;

/// The longest a recheck call waits for room when the next poll is due sooner.
const RECHECK_SLOT: Duration = Duration::from_secs(2);

/// After this many recheck calls deferred in a row, the next one goes as first work (paced
/// like a poll, even past the next poll): polls come first, but rechecks must not starve.
const MAX_DEFERRED_IN_A_ROW: u32 = 3;

/// Where a Reddit instance stands; committed with the posts it covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Position {
    /// Fullnames handed out most recently.
    seen: SeenWindow,
    /// Per listing, the `created_utc` of the newest item handed out (0 once polled while
    /// empty); a listing absent here has never been polled.
    newest: BTreeMap<Listing, i64>,
    /// Items still young enough to be rechecked, oldest first.
    tracked: VecDeque<Tracked>,
    /// The request budget when the checkpoint was taken.
    #[serde(default)]
    budget: BudgetState,
}

/// An item handed out that may still be edited or deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tracked {
    /// Fullname (`t3_abc`).
    name: String,
    channel: String,
    created_utc: i64,
    /// Digest of the text handed out, to tell an edit.
    digest: String,
}

/// A Reddit source instance.
pub struct RedditSource {
    name: String,
    config: RedditConfig,
    client: RedditClient,
    limits: PostLimits,
    metrics: SourceMetrics,
    position: Position,
    next_poll: Instant,
    next_recheck: Instant,
    /// Fullnames of the recheck round under way, next first.
    recheck_queue: VecDeque<String>,
    /// Recheck calls deferred in a row.
    deferred_in_a_row: u32,
}

impl RedditSource {
    /// A source for instance `name`; its configuration is checked here.
    pub fn new(
        name: &str,
        config: RedditConfig,
        limits: PostLimits,
        metrics: SourceMetrics,
    ) -> Result<Self, SourceError> {
        config.check(name)?;
        let client = RedditClient::new(config.clone(), metrics.clone())?;
        let now = Instant::now();
        Ok(Self {
            name: name.to_string(),
            position: Position {
                seen: SeenWindow::new(config.seen_capacity),
                ..Position::default()
            },
            config,
            client,
            limits,
            metrics,
            next_poll: now,
            next_recheck: now,
            recheck_queue: VecDeque::new(),
            deferred_in_a_row: 0,
        })
    }

    /// Reads every listing once; the new items, oldest first.
    async fn poll(&mut self, stop: &CancellationToken) -> Result<Vec<SourceItem>, SourceError> {
        let mut events = Vec::new();
        for listing in self.config.listings.clone() {
            match self.poll_listing(listing, stop).await? {
                Some(mut items) => events.append(&mut items),
                None => break,
            }
        }
        Ok(events)
    }

    /// One listing's new items; `None` if stopped.
    async fn poll_listing(
        &mut self,
        listing: Listing,
        stop: &CancellationToken,
    ) -> Result<Option<Vec<SourceItem>>, SourceError> {
        let subreddits = self.config.subreddits.join("+");
        let newest = self.position.newest.get(&listing).copied();
        let pages = match newest {
            Some(_) => self.config.max_pages,
            None => self.config.first_pages,
        }
        .max(1);
        let mut found: Vec<(String, Map<String, Value>)> = Vec::new();
        let mut after: Option<String> = None;
        let mut reached_known = newest.is_none();
        for _ in 0..pages {
            let mut path = format!("/r/{subreddits}/{}?limit=100&raw_json=1", listing.path());
            if let Some(after) = &after {
                path.push_str("&after=");
                path.push_str(after);
            }
            let page = match self.client.get(&path, Priority::First, None, stop).await? {
                Answer::Json(page) => page,
                // A bad page ends this poll; what was found before it still goes out.
                Answer::Unusable | Answer::Deferred => {
                    reached_known = true;
                    break;
                }
                Answer::Stopped => return Ok(None),
            };
            let Some(children) = page.pointer("/data/children").and_then(Value::as_array) else {
                self.metrics.skip("not_a_listing");
                tracing::warn!(%path, "reddit answer is not a listing, skipped");
                reached_known = true;
                break;
            };
            let mut stop_here = children.is_empty();
            for child in children {
                let Some(data) = child.get("data").and_then(Value::as_object) else {
                    self.metrics.skip("thing_without_data");
                    continue;
                };
                let Some(name) = data.get("name").and_then(Value::as_str) else {
                    self.metrics.skip("thing_without_name");
                    continue;
                };
                let created = created_utc(data);
                let older =
                    matches!((newest, created), (Some(newest), Some(created)) if created < newest);
                if self.position.seen.contains(name) || older {
                    stop_here = true;
                    break;
                }
                found.push((name.to_string(), data.clone()));
            }
            if stop_here {
                reached_known = true;
                break;
            }
            after = page
                .pointer("/data/after")
                .and_then(Value::as_str)
                .map(str::to_string);
            if after.is_none() {
                reached_known = true;
                break;
            }
        }
        if !reached_known {
            // More arrived since the last poll than `max_pages` pages hold.
            self.metrics.skip("gap_beyond_max_pages");
            tracing::warn!(
                listing = listing.path(),
                pages,
                "reddit listing not read back to a known item: some items may be missed"
            );
        }
        let mut items = Vec::with_capacity(found.len());
        let mut newest_created = newest.unwrap_or(0);
        for (name, data) in found.into_iter().rev() {
            // A page can repeat an item when the listing moved between two pages.
            if !self.position.seen.insert(&name) {
                continue;
            }
            if let Some(created) = created_utc(&data) {
                newest_created = newest_created.max(created);
            }
            if let Some(item) = self.item(&name, &data) {
                items.push(item);
            }
        }
        self.position.newest.insert(listing, newest_created);
        self.client.set_newest_created(newest_created);
        if newest_created > 0 {
            self.metrics
                .set_lag_seconds(Utc::now().timestamp().saturating_sub(newest_created));
        }
        Ok(Some(items))
    }

    /// The item of a new thing: a post (tracked for rechecks), or a malformed record.
    fn item(&mut self, name: &str, data: &Map<String, Value>) -> Option<SourceItem> {
        let location = format!("reddit/{}/{name}", self.name);
        if gone(data).is_some() {
            // Deleted before it was ever seen: nothing to hand out or remove.
            self.metrics.skip("deleted_before_seen");
            return None;
        }
        match reddit_post(data, &self.fallback(name), &self.limits) {
            Ok(post) => {
                self.track(name, &post);
                self.metrics.event("post");
                Some(SourceItem::Post {
                    post: Box::new(post),
                    location,
                })
            }
            Err(Rejection::Deleted) => {
                self.metrics.skip("deleted_before_seen");
                None
            }
            Err(rejection) => {
                self.metrics.event("malformed");
                Some(SourceItem::Malformed {
                    location,
                    kind: rejection.kind(),
                    error: rejection.to_string(),
                    raw: serde_json::to_vec(data).unwrap_or_default(),
                })
            }
        }
    }

    fn fallback(&self, name: &str) -> RedditFallback {
        RedditFallback {
            id: format!("reddit:{name}"),
            channel: format!("reddit/r/{}", self.config.subreddits[0]),
        }
    }

    fn track(&mut self, name: &str, post: &Post) {
        if self.config.recheck_age_secs == 0 {
            return;
        }
        let tracked = Tracked {
            name: name.to_string(),
            channel: post.channel.clone(),
            created_utc: post.created_at.timestamp(),
            digest: digest(&post.text),
        };
        match self.position.tracked.iter_mut().find(|t| t.name == name) {
            Some(existing) => *existing = tracked,
            None => self.position.tracked.push_back(tracked),
        }
        while self.position.tracked.len() > self.config.recheck_max {
            self.position.tracked.pop_front();
            self.metrics.skip("recheck_dropped_over_max");
        }
    }

    /// Starts a recheck round: every tracked item still young enough, queued. The rest of
    /// a round that did not finish within its interval stays first in line.
    fn start_recheck_round(&mut self) {
        let horizon = Utc::now().timestamp() - self.config.recheck_age_secs as i64;
        self.position.tracked.retain(|t| t.created_utc >= horizon);
        if !self.recheck_queue.is_empty() {
            self.metrics.skip("recheck_round_late");
        }
        let queued: BTreeSet<String> = self.recheck_queue.iter().cloned().collect();
        let new: Vec<String> = self
            .position
            .tracked
            .iter()
            .filter(|t| !queued.contains(&t.name))
            .map(|t| t.name.clone())
            .collect();
        self.recheck_queue.extend(new);
    }

    /// Looks the queued items up again, a call of 100 at a time, while the budget has room
    /// beyond the polls and before the next poll is due; the edits and deletions found.
    async fn recheck(&mut self, stop: &CancellationToken) -> Result<Vec<SourceItem>, SourceError> {
        // What the polls need: a call per listing per poll interval.
        let first_per_second = self.config.listings.len() as f64
            / Duration::from_millis(self.config.poll_interval_ms.max(1)).as_secs_f64();
        let room = Priority::WhenRoom { first_per_second };
        let mut events = Vec::new();
        while !self.recheck_queue.is_empty() && events.is_empty() {
            // Rechecks fill the time until the next poll, and may take a short slot of
            // their own when polls follow each other closely. Waiting for the room of work
            // that can wait may take long (its share of a long window), so a recheck
            // deferred too often goes once as first work instead.
            let starved = self.deferred_in_a_row >= MAX_DEFERRED_IN_A_ROW;
            let priority = if starved { Priority::First } else { room };
            let deadline = (!starved).then(|| self.next_poll.max(Instant::now() + RECHECK_SLOT));
            let chunk: Vec<String> = self
                .recheck_queue
                .iter()
                .take(INFO_BATCH)
                .cloned()
                .collect();
            let path = format!("/api/info?id={}&raw_json=1", chunk.join(","));
            let page = match self.client.get(&path, priority, deadline, stop).await? {
                Answer::Json(page) => Some(page),
                // Skipped; the next round asks again.
                Answer::Unusable => None,
                Answer::Stopped => break,
                Answer::Deferred => {
                    self.metrics.skip("recheck_deferred");
                    self.deferred_in_a_row += 1;
                    break;
                }
            };
            self.deferred_in_a_row = 0;
            self.recheck_queue.drain(..chunk.len());
            let children = page
                .as_ref()
                .and_then(|page| page.pointer("/data/children"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for data in children
                .iter()
                .filter_map(|c| c.get("data").and_then(Value::as_object))
            {
                if let Some(event) = self.rechecked(data) {
                    events.push(event);
                }
            }
        }
        Ok(events)
    }

    /// The update or tombstone of one rechecked thing, if it changed.
    fn rechecked(&mut self, data: &Map<String, Value>) -> Option<SourceItem> {
        let name = data.get("name").and_then(Value::as_str)?;
        let index = self.position.tracked.iter().position(|t| t.name == name)?;
        let location = format!("reddit/{}/{name}", self.name);
        if let Some(reason) = gone(data) {
            let tracked = self.position.tracked.remove(index)?;
            self.metrics.event("tombstone");
            let created_at = DateTime::from_timestamp(tracked.created_utc, 0).unwrap_or_default();
            return Some(SourceItem::Tombstone {
                tombstone: Tombstone {
                    kind: TombstoneKind::Tombstone,
                    id: format!("reddit:{name}"),
                    source: "reddit".into(),
                    channel: tracked.channel,
                    created_at,
                    deleted_at: Utc::now(),
                    reason: reason.into(),
                },
                location,
            });
        }
        let post = match reddit_post(data, &self.fallback(name), &self.limits) {
            Ok(post) => post,
            Err(rejection) => {
                self.metrics.skip("recheck_unusable");
                tracing::warn!(%name, %rejection, "rechecked reddit item unusable, kept as it was");
                return None;
            }
        };
        if self.position.tracked[index].digest == digest(&post.text) {
            return None;
        }
        self.position.tracked[index].digest = digest(&post.text);
        self.metrics.event("update");
        Some(SourceItem::Post {
            post: Box::new(post),
            location,
        })
    }
}

impl LiveSource for RedditSource {
    fn kind(&self) -> &'static str {
        "reddit"
    }

    fn instance(&self) -> &str {
        &self.name
    }

    fn restore(&mut self, checkpoint: Option<&[u8]>) -> Result<(), SourceError> {
        let key = format!("reddit/{}", self.name);
        let mut position: Position = decode_position(&key, checkpoint)?;
        position.seen = position.seen.with_capacity(self.config.seen_capacity);
        self.client.restore_budget(&position.budget);
        if let Some(newest) = position.newest.values().max() {
            self.client.set_newest_created(*newest);
        }
        self.position = position;
        self.next_poll = Instant::now();
        // Edits and deletions made while the source was down are looked for at once.
        self.next_recheck = Instant::now();
        self.recheck_queue.clear();
        Ok(())
    }

    fn checkpoint(&self) -> Result<Vec<u8>, SourceError> {
        let mut position = self.position.clone();
        position.budget = self.client.budget_state();
        encode_position(&format!("reddit/{}", self.name), &position)
    }

    async fn next_events(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<Vec<SourceItem>, SourceError> {
        let now = Instant::now();
        if now >= self.next_poll {
            self.next_poll = now + Duration::from_millis(self.config.poll_interval_ms);
            let events = self.poll(stop).await?;
            if !events.is_empty() {
                return Ok(events);
            }
        }
        if self.config.recheck_age_secs > 0 && Instant::now() >= self.next_recheck {
            self.next_recheck =
                Instant::now() + Duration::from_millis(self.config.recheck_interval_ms);
            self.start_recheck_round();
        }
        if !self.recheck_queue.is_empty() {
            let events = self.recheck(stop).await?;
            if !events.is_empty() {
                return Ok(events);
            }
        }
        let mut wake = self.next_poll;
        if self.config.recheck_age_secs > 0 {
            wake = wake.min(self.next_recheck);
        }
        pause(wake.saturating_duration_since(Instant::now()), stop).await;
        Ok(Vec::new())
    }

    fn status(&self) -> String {
        let [posts, updates, tombstones] =
            ["post", "update", "tombstone"].map(|kind| self.metrics.events(kind));
        let remaining = self
            .client
            .remaining()
            .map_or_else(|| "unknown".into(), |r| format!("{r:.0}"));
        format!(
            "reddit/{}: {posts} posts, {updates} updates, {tombstones} tombstones; \
             {} tracked for rechecks; rate limit left {remaining}",
            self.name,
            self.position.tracked.len()
        )
    }
}

/// `created_utc`, a number or (in old data) a string.
fn created_utc(data: &Map<String, Value>) -> Option<i64> {
    match data.get("created_utc") {
        Some(Value::Number(n)) => n.as_f64().map(|s| s as i64),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok().map(|s| s as i64),
        _ => None,
    }
}

/// Why a rechecked thing is gone, if it is.
fn gone(data: &Map<String, Value>) -> Option<&'static str> {
    let field = |name: &str| data.get(name).and_then(Value::as_str).unwrap_or_default();
    let text = if data.contains_key("body") {
        field("body")
    } else {
        field("selftext")
    };
    match (text.trim(), data.get("removed_by_category")) {
        ("[deleted]", _) => Some("deleted by its author"),
        (_, Some(Value::String(category))) if category == "deleted" => {
            Some("deleted by its author")
        }
        ("[removed]", _) => Some("removed by moderators or reddit"),
        (_, Some(category)) if !category.is_null() => Some("removed by moderators or reddit"),
        _ => None,
    }
}

fn digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}
