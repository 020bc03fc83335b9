//! The Bluesky source: Jetstream, the public WebSocket stream of repository commits
//! (no credentials), filtered to `app.bsky.feed.post`. Posts are keyed by their `at://`
//! URI, sorted into channels by configured terms or hashtags (or `bluesky/all`), and carry
//! the record's language; an update is the post again, a delete a tombstone. The position
//! is the `time_us` of the last event handled: a reconnection, or a restart from the
//! checkpoint, resumes there with `cursor`.
//!
//! Only events count as life: pings keep a connection open but do not hide a stalled
//! upstream. A connection that ends (a close frame too) before it delivered an event backs
//! off, doubling with jitter, so a server that accepts and closes (1013, "try again later")
//! is not hammered; one that moved the cursor is reconnected at once.

pub mod config;
#[cfg(any(test, feature = "fakes"))]
pub mod fake;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use pulse_core::tombstone::TombstoneKind;
use pulse_core::validate::post_from_value;
use pulse_core::{DeadLetterKind, PostLimits, Tombstone};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub use config::{BlueskyConfig, Channel};

use crate::live::{
    decode_position, encode_position, Backoff, LiveSource, SeenWindow, SourceError, SourceMetrics,
};
use crate::reddit::client::pause;
use crate::SourceItem;

const COLLECTION: &str = "app.bsky.feed.post";
const BATCH_POSTS: usize = 200;
const BATCH_WAIT: Duration = Duration::from_millis(200);

/// Where a Bluesky instance stands; committed with the posts it covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Position {
    /// `time_us` of the last event handled.
    cursor: Option<i64>,
    /// Post versions (`uri#cid`) handed out most recently.
    seen: SeenWindow,
    /// Posts handed out most recently, with what a tombstone needs, oldest first.
    tracked: VecDeque<Tracked>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tracked {
    uri: String,
    channel: String,
    created_at: DateTime<Utc>,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A Bluesky source instance.
pub struct BlueskySource {
    name: String,
    config: BlueskyConfig,
    limits: PostLimits,
    metrics: SourceMetrics,
    position: Position,
    /// The open connection, when its last event came, and the cursor it started from.
    socket: Option<(Socket, Instant, Option<i64>)>,
    backoff: Backoff,
}

impl BlueskySource {
    /// A source for instance `name`; its configuration is checked here.
    pub fn new(
        name: &str,
        config: BlueskyConfig,
        limits: PostLimits,
        metrics: SourceMetrics,
    ) -> Result<Self, SourceError> {
        config.check(name)?;
        let backoff = Backoff::doubling_jittered(
            Duration::from_millis(config.backoff_initial_ms),
            Duration::from_millis(config.backoff_max_ms),
        );
        Ok(Self {
            name: name.to_string(),
            position: Position {
                seen: SeenWindow::new(config.seen_capacity),
                ..Position::default()
            },
            config,
            limits,
            metrics,
            socket: None,
            backoff,
        })
    }

    fn subscribe_url(&self) -> String {
        let mut url = format!(
            "{}/subscribe?wantedCollections={COLLECTION}",
            self.config.jetstream_url.trim_end_matches('/')
        );
        // The last event handled is replayed too (the seen window drops it): nothing
        // between it and the next one can be missed.
        if let Some(cursor) = self.position.cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        url
    }

    /// Opens the connection, retrying with backoff; `false` if stopped first.
    async fn connect(&mut self, stop: &CancellationToken) -> bool {
        loop {
            if stop.is_cancelled() {
                return false;
            }
            let url = self.subscribe_url();
            let connected = tokio::select! {
                _ = stop.cancelled() => return false,
                connected = tokio_tungstenite::connect_async(url.as_str()) => connected,
            };
            match connected {
                Ok((socket, _)) => {
                    // The backoff starts over once the connection delivers, not here: a
                    // server may accept and close at once.
                    self.metrics.request("101");
                    self.socket = Some((socket, Instant::now(), self.position.cursor));
                    return true;
                }
                Err(error) => {
                    self.metrics.request("error");
                    let wait = self.backoff.next_delay();
                    tracing::warn!(%error, wait_ms = wait.as_millis() as u64, "cannot connect to jetstream, waiting");
                    if !pause(wait, stop).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Reads messages until a batch is gathered, the connection ends or stalls, or `stop`.
    async fn read(&mut self, stop: &CancellationToken) -> Vec<SourceItem> {
        let mut events = Vec::new();
        let mut gathered_by: Option<Instant> = None;
        let read_timeout = Duration::from_millis(self.config.read_timeout_ms.max(1));
        loop {
            let Some((socket, last_event, _)) = self.socket.as_mut() else {
                return events;
            };
            let stall_at = *last_event + read_timeout;
            let until = gathered_by.map_or(stall_at, |at| at.min(stall_at));
            let next = tokio::select! {
                _ = stop.cancelled() => return events,
                next = tokio::time::timeout_at(until, socket.next()) => next,
            };
            let ended = match next {
                Ok(Some(Ok(message))) => {
                    if matches!(message, Message::Text(_) | Message::Binary(_)) {
                        *last_event = Instant::now();
                    }
                    match message {
                        Message::Text(text) => self.message(text.as_bytes(), &mut events),
                        Message::Binary(_) => self.metrics.skip("binary_message"),
                        Message::Close(frame) => {
                            let said = frame.map_or_else(
                                || "no code".to_string(),
                                |f| format!("{} {}", u16::from(f.code), f.reason),
                            );
                            self.end_connection(
                                &format!("closed by jetstream ({said})"),
                                &events,
                                stop,
                            )
                            .await;
                            return events;
                        }
                        // Pings are answered by the socket; they are not events.
                        _ => {}
                    }
                    if !events.is_empty() && gathered_by.is_none() {
                        gathered_by = Some(Instant::now() + BATCH_WAIT);
                    }
                    if events.len() >= BATCH_POSTS {
                        return events;
                    }
                    continue;
                }
                Err(_) if gathered_by.is_some_and(|at| Instant::now() >= at) => return events,
                Err(_) => {
                    self.metrics.skip("stream_stalled");
                    "no event within read_timeout_ms: stalled".to_string()
                }
                Ok(None) => "the connection ended".to_string(),
                Ok(Some(Err(error))) => format!("the connection broke: {error}"),
            };
            self.end_connection(&ended, &events, stop).await;
            return events;
        }
    }

    /// Drops the connection. One that moved the cursor (the replayed last event does not)
    /// is reconnected at once; one that did not waits the next backoff step, unless events
    /// of this call are waiting to go out.
    async fn end_connection(
        &mut self,
        reason: &str,
        events: &[SourceItem],
        stop: &CancellationToken,
    ) {
        let delivered = self
            .socket
            .take()
            .is_some_and(|(_, _, cursor)| cursor != self.position.cursor);
        if delivered {
            self.backoff.reset();
            tracing::warn!(%reason, "jetstream disconnected, reconnecting");
            return;
        }
        if !events.is_empty() {
            return;
        }
        let wait = self.backoff.next_delay();
        tracing::warn!(%reason, wait_ms = wait.as_millis() as u64, "jetstream disconnected before any event, waiting");
        pause(wait, stop).await;
    }

    /// One Jetstream message.
    fn message(&mut self, bytes: &[u8], events: &mut Vec<SourceItem>) {
        if bytes.len() > self.config.max_message_bytes {
            self.metrics.skip("message_too_large");
            return;
        }
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(value) => value,
            Err(error) => {
                self.metrics.event("malformed");
                events.push(SourceItem::Malformed {
                    location: format!(
                        "bluesky/{}/{}",
                        self.name,
                        self.position.cursor.unwrap_or(0)
                    ),
                    kind: DeadLetterKind::NotJson,
                    error: format!("jetstream message is not json: {error}"),
                    raw: bytes.to_vec(),
                });
                return;
            }
        };
        if let Some(time_us) = value.get("time_us").and_then(Value::as_i64) {
            self.position.cursor = Some(self.position.cursor.unwrap_or(0).max(time_us));
            let lag = Utc::now().timestamp_micros() - time_us;
            self.metrics.set_lag_seconds(lag / 1_000_000);
        }
        if value.get("kind").and_then(Value::as_str) != Some("commit") {
            return;
        }
        let (Some(did), Some(commit)) = (
            value.get("did").and_then(Value::as_str),
            value.get("commit").and_then(Value::as_object),
        ) else {
            self.metrics.skip("commit_without_did");
            return;
        };
        let field = |name: &str| commit.get(name).and_then(Value::as_str);
        if field("collection") != Some(COLLECTION) {
            return;
        }
        let Some(rkey) = field("rkey") else {
            self.metrics.skip("commit_without_rkey");
            return;
        };
        let uri = format!("at://{did}/{COLLECTION}/{rkey}");
        match field("operation") {
            Some("create") | Some("update") => {
                let version = format!("{uri}#{}", field("cid").unwrap_or_default());
                if self.position.seen.contains(&version) {
                    return;
                }
                let update = field("operation") == Some("update");
                if let Some(item) = self.post(did, rkey, &uri, commit, update, bytes) {
                    self.position.seen.insert(&version);
                    events.push(item);
                }
            }
            Some("delete") => {
                let Some(index) = self.position.tracked.iter().position(|t| t.uri == uri) else {
                    // Most deletions on the network concern posts this source never had.
                    self.metrics.skip("delete_of_untracked");
                    return;
                };
                let Some(tracked) = self.position.tracked.remove(index) else {
                    return;
                };
                self.metrics.event("tombstone");
                events.push(SourceItem::Tombstone {
                    tombstone: Tombstone {
                        kind: TombstoneKind::Tombstone,
                        id: uri,
                        source: "bluesky".into(),
                        channel: tracked.channel,
                        created_at: tracked.created_at,
                        deleted_at: Utc::now(),
                        reason: "deleted by its author".into(),
                    },
                    location: format!("bluesky/{}/{rkey}", self.name),
                });
            }
            _ => self.metrics.skip("unknown_operation"),
        }
    }

    /// The post of a created or updated record, if it is for one of the channels.
    fn post(
        &mut self,
        did: &str,
        rkey: &str,
        uri: &str,
        commit: &Map<String, Value>,
        update: bool,
        raw: &[u8],
    ) -> Option<SourceItem> {
        let location = format!("bluesky/{}/{rkey}", self.name);
        let Some(record) = commit.get("record").and_then(Value::as_object) else {
            self.metrics.event("malformed");
            return Some(SourceItem::Malformed {
                location,
                kind: DeadLetterKind::MissingField,
                error: "commit without record".into(),
                raw: raw.to_vec(),
            });
        };
        let text = record
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if text.trim().is_empty() {
            // Image-only posts: nothing to analyse.
            self.metrics.skip("no_text");
            return None;
        }
        let langs: Vec<&str> = record
            .get("langs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let lang = langs.first().copied();
        if !self.config.langs.is_empty()
            && !langs.iter().any(|tag| {
                self.config
                    .langs
                    .iter()
                    .any(|range| language_matches(range, tag))
            })
        {
            self.metrics.skip("other_language");
            return None;
        }
        let Some(channel) = self.channel(text, record) else {
            self.metrics.skip("no_matching_channel");
            return None;
        };
        let created_at = record
            .get("createdAt")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(Utc::now);
        let mut post = json!({
            "id": uri,
            "source": "bluesky",
            "channel": channel,
            "author": did,
            "text": text,
            "created_at": created_at.to_rfc3339(),
            "url": format!("https://bsky.app/profile/{did}/post/{rkey}"),
        });
        if let Value::Object(fields) = &mut post {
            if let Some(lang) = lang {
                fields.insert("lang".into(), json!(lang));
            }
            let parent = record
                .get("reply")
                .and_then(|reply| reply.pointer("/parent/uri"))
                .and_then(Value::as_str);
            if let Some(parent) = parent {
                fields.insert("parent_id".into(), json!(parent));
            }
        }
        match post_from_value(post, &self.limits) {
            Ok(post) => {
                self.track(uri, &post.channel, post.created_at);
                self.metrics.event(if update { "update" } else { "post" });
                Some(SourceItem::Post {
                    post: Box::new(post),
                    location,
                })
            }
            Err(rejection) => {
                self.metrics.event("malformed");
                Some(SourceItem::Malformed {
                    location,
                    kind: rejection.kind(),
                    error: rejection.to_string(),
                    raw: raw.to_vec(),
                })
            }
        }
    }

    /// The channel of a post: the first configured one with a matching term.
    fn channel(&self, text: &str, record: &Map<String, Value>) -> Option<String> {
        if self.config.channels.is_empty() {
            return Some("bluesky/all".into());
        }
        let tags = hashtags(text, record);
        let lower = text.to_lowercase();
        self.config
            .channels
            .iter()
            .find(|channel| {
                channel
                    .terms
                    .iter()
                    .any(|term| match term.strip_prefix('#') {
                        Some(tag) => tags.iter().any(|t| t.eq_ignore_ascii_case(tag)),
                        None => contains_words(&lower, &term.to_lowercase()),
                    })
            })
            .map(|channel| format!("bluesky/{}", channel.name))
    }

    fn track(&mut self, uri: &str, channel: &str, created_at: DateTime<Utc>) {
        self.position.tracked.retain(|t| t.uri != uri);
        self.position.tracked.push_back(Tracked {
            uri: uri.to_string(),
            channel: channel.to_string(),
            created_at,
        });
        while self.position.tracked.len() > self.config.tracked_capacity {
            self.position.tracked.pop_front();
        }
    }
}

impl LiveSource for BlueskySource {
    fn kind(&self) -> &'static str {
        "bluesky"
    }

    fn instance(&self) -> &str {
        &self.name
    }

    fn restore(&mut self, checkpoint: Option<&[u8]>) -> Result<(), SourceError> {
        let key = format!("bluesky/{}", self.name);
        let mut position: Position = decode_position(&key, checkpoint)?;
        position.seen = position.seen.with_capacity(self.config.seen_capacity);
        self.position = position;
        // Reconnect from the restored cursor.
        self.socket = None;
        Ok(())
    }

    fn checkpoint(&self) -> Result<Vec<u8>, SourceError> {
        encode_position(&format!("bluesky/{}", self.name), &self.position)
    }

    async fn next_events(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<Vec<SourceItem>, SourceError> {
        if self.socket.is_none() && !self.connect(stop).await {
            return Ok(Vec::new());
        }
        Ok(self.read(stop).await)
    }

    fn status(&self) -> String {
        let [posts, updates, tombstones] =
            ["post", "update", "tombstone"].map(|kind| self.metrics.events(kind));
        format!(
            "bluesky/{}: {posts} posts, {updates} updates, {tombstones} tombstones; {}; cursor {}",
            self.name,
            if self.socket.is_some() {
                "connected"
            } else {
                "disconnected"
            },
            self.position
                .cursor
                .map_or_else(|| "none".into(), |c| c.to_string())
        )
    }
}

/// The hashtags of a post: its `#tag` facets and the `#words` of its text.
fn hashtags(text: &str, record: &Map<String, Value>) -> Vec<String> {
    let mut tags: Vec<String> = record
        .get("facets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|facet| facet.get("features").and_then(Value::as_array))
        .flatten()
        .filter_map(|feature| feature.get("tag").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    for (at, _) in text.match_indices('#') {
        let tag: String = text[at + 1..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !tag.is_empty() {
            tags.push(tag);
        }
    }
    tags
}

/// Whether `needle` occurs in `haystack` as whole words (both lower-cased).
/// Whether language tag `tag` (BCP 47, `en-US`) falls in `range` (`en`), by RFC 4647's
/// basic filtering: equal, or `range` followed by a `-` subtag, case aside.
fn language_matches(range: &str, tag: &str) -> bool {
    let (range, tag) = (range.trim(), tag.trim());
    if range == "*" {
        return true;
    }
    tag.len() >= range.len()
        && tag.is_char_boundary(range.len())
        && tag[..range.len()].eq_ignore_ascii_case(range)
        && (tag.len() == range.len() || tag.as_bytes()[range.len()] == b'-')
}

fn contains_words(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}
