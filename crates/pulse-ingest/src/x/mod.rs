//! The X (Twitter) source: API v2's filtered stream, its rules synced from the
//! configuration, with gaps after a reconnect filled by recent search; or recent search
//! alone, polled with `since_id`, for access levels without the stream.
//!
//! The stream is read line by line: a keep-alive newline comes every 20 s, and no byte for
//! `read_timeout_ms` is a stall that reconnects. Reconnections wait as X documents: network
//! errors linearly from 250 ms up to 16 s, HTTP errors from 5 s doubling up to 320 s, 429s
//! from a minute doubling. An edited post keeps the id of its first version, so the edit
//! is an update. Channels are `x/<rule tag>`.
//!
//! Recent search has its own request budget, paced by X's `x-rate-limit-*` headers (see
//! [`crate::live::budget`]) and kept in the checkpoint. A gap after a reconnect is filled a
//! page at a time while the budget allows, between reads of the stream: X drops readers
//! that fall behind, so the stream is never left unread while a search waits. A 429 on a
//! search waits for the reset it names. After an established connection drops, the source
//! reconnects at once, as X asks; only failed reconnections back off.

pub mod config;
#[cfg(any(test, feature = "fakes"))]
pub mod fake;
#[cfg(test)]
mod tests;
pub mod tweet;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use pulse_core::{DeadLetterKind, PostLimits};
use reqwest::header::{HeaderMap, AUTHORIZATION};
use reqwest::{Client, Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{Mode, Rule, XConfig};

use self::tweet::{tweet_post, TWEET_FIELDS};
use crate::live::{
    decode_position, encode_position, Backoff, BudgetState, LiveSource, Priority, RateHeaders,
    RequestBudget, Schedule, SeenWindow, SourceError, SourceMetrics, MIN_RATE_LIMITED_WAIT,
};
use crate::reddit::client::pause;
use crate::SourceItem;

/// Posts handed out by one call at most, and how long a call gathers after the first.
const BATCH_POSTS: usize = 200;
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// Twitter's epoch, in Unix milliseconds: ids carry their creation time above bit 22.
const TWITTER_EPOCH_MS: u64 = 1_288_834_974_657;
/// Recent search reaches back 7 days; a `since_id` older than that is refused.
const SEARCH_REACH: chrono::Duration = chrono::Duration::days(7);
/// X's rate-limit window.
const SEARCH_WINDOW: Duration = Duration::from_secs(15 * 60);
/// A dropped stream reconnects at once only if the last such reconnection is older.
const RECONNECT_AT_ONCE_EVERY: Duration = Duration::from_secs(1);

/// Why the source waited, for [`XSource::waits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    Network,
    Http,
    RateLimited,
}

/// Where an X instance stands; committed with the posts it covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Position {
    /// The highest tweet id handed out: where a gap fill starts.
    since_id: Option<u64>,
    /// Tweet (version) ids handed out most recently.
    seen: SeenWindow,
    /// What was posted while the stream was down, still to be searched, oldest first.
    #[serde(default)]
    gaps: Vec<Gap>,
    /// The recent-search budget when the checkpoint was taken.
    #[serde(default)]
    search_budget: BudgetState,
    /// Of posts edited recently, the newest version handed out: an older version that
    /// comes later (a gap's search after the stream's edit) is not handed out over it.
    #[serde(default)]
    edited: BTreeMap<u64, u64>,
}

/// Edited posts whose newest version is remembered.
const EDITED_CAPACITY: usize = 1_000;

/// A stretch of time the stream missed for one rule, filled by recent search a page at a
/// time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Gap {
    /// The rule's tag.
    tag: String,
    /// Posts after this id were missed.
    since_id: u64,
    /// The first post the stream delivered after reconnecting: the gap ends before it.
    /// Without it, the gap runs to the moment of its first page.
    until_id: Option<u64>,
    /// The token of the next page, once paging started.
    next_token: Option<String>,
    started: bool,
}

/// Gaps kept per rule; a further one is merged into the rule's newest.
const MAX_GAPS_PER_RULE: usize = 4;

struct Connection {
    response: Response,
    /// Bytes of a line not complete yet.
    partial: Vec<u8>,
    /// Bytes of an overlong line are dropped up to its end.
    skipping: bool,
    last_byte: Instant,
    /// Whether it delivered anything: only then is it established.
    delivered: bool,
}

/// Why a request did not answer with what was asked.
enum Failure {
    Network(String),
    Status(StatusCode, Option<u64>),
}

/// An X source instance.
pub struct XSource {
    name: String,
    config: XConfig,
    http: Client,
    limits: PostLimits,
    metrics: SourceMetrics,
    position: Position,
    connection: Option<Connection>,
    rules_synced: bool,
    network: Backoff,
    http_errors: Backoff,
    rate_limited: Backoff,
    waits: Vec<(WaitReason, Duration)>,
    next_poll: Instant,
    search_budget: RequestBudget,
    /// When a dropped stream was last reconnected without waiting.
    reconnected_at_once: Option<Instant>,
}

impl XSource {
    /// A source for instance `name`; its configuration is checked here.
    pub fn new(
        name: &str,
        config: XConfig,
        limits: PostLimits,
        metrics: SourceMetrics,
    ) -> Result<Self, SourceError> {
        config.check(name)?;
        let http = Client::builder()
            .connect_timeout(Duration::from_millis(config.request_timeout_ms.max(1)))
            .build()
            .map_err(|e| SourceError::Refused(format!("cannot build the http client: {e}")))?;
        let scaled = |ms: u64| Duration::from_millis(ms).mul_f64(config.backoff_scale);
        Ok(Self {
            name: name.to_string(),
            network: Backoff::exact(Schedule::Linear {
                step: scaled(250),
                max: scaled(16_000),
            }),
            http_errors: Backoff::exact(Schedule::Doubling {
                initial: scaled(5_000),
                max: scaled(320_000),
            }),
            // X documents no ceiling; after 16 minutes a window has surely reset.
            rate_limited: Backoff::exact(Schedule::Doubling {
                initial: scaled(60_000),
                max: scaled(960_000),
            }),
            position: Position {
                seen: SeenWindow::new(config.seen_capacity),
                ..Position::default()
            },
            search_budget: RequestBudget::new(
                config.max_search_requests.max(1) as usize,
                SEARCH_WINDOW,
            ),
            config,
            http,
            limits,
            metrics,
            connection: None,
            rules_synced: false,
            waits: Vec::new(),
            next_poll: Instant::now(),
            reconnected_at_once: None,
        })
    }

    /// The waits of this process so far, in order (the last 1,000).
    pub fn waits(&self) -> &[(WaitReason, Duration)] {
        &self.waits
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_url.trim_end_matches('/'))
    }

    /// Waits before the next attempt after `failure`; `false` if stopped meanwhile.
    async fn back_off(&mut self, failure: &Failure, stop: &CancellationToken) -> bool {
        let (reason, mut wait) = match failure {
            Failure::Network(_) => (WaitReason::Network, self.network.next_delay()),
            Failure::Status(StatusCode::TOO_MANY_REQUESTS, _) => {
                (WaitReason::RateLimited, self.rate_limited.next_delay())
            }
            Failure::Status(..) => (WaitReason::Http, self.http_errors.next_delay()),
        };
        // A 429 waits at least a second, and at least until the reset it names: a server's
        // window is not shortened by the test scale of the documented schedule.
        if let Failure::Status(StatusCode::TOO_MANY_REQUESTS, reset) = failure {
            wait = wait.max(MIN_RATE_LIMITED_WAIT);
            if let Some(reset_in) = reset.and_then(seconds_until) {
                wait = wait.max(Duration::from_secs_f64(reset_in.ceil()));
            }
        }
        self.record_wait(reason, wait);
        match failure {
            Failure::Network(error) => {
                tracing::warn!(%error, wait_ms = wait.as_millis() as u64, "x request failed, waiting")
            }
            Failure::Status(status, _) => {
                tracing::warn!(%status, wait_ms = wait.as_millis() as u64, "x answered an error, waiting")
            }
        }
        pause(wait, stop).await
    }

    fn record_wait(&mut self, reason: WaitReason, wait: Duration) {
        if self.waits.len() >= 1_000 {
            self.waits.remove(0);
        }
        self.waits.push((reason, wait));
    }

    fn reset_backoff(&mut self) {
        self.network.reset();
        self.http_errors.reset();
        self.rate_limited.reset();
    }

    /// Sends a request; a status other than 2xx is a failure, except those that retrying
    /// cannot mend, which are errors.
    async fn send(
        &mut self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Result<Response, Failure>, SourceError> {
        let mut request = self.http.request(method, url).header(
            AUTHORIZATION,
            format!("Bearer {}", self.config.bearer_token),
        );
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                self.metrics.request("network");
                return Ok(Err(Failure::Network(error.to_string())));
            }
        };
        let status = response.status();
        self.metrics.request(status.as_str());
        if let Some(remaining) = header_number(response.headers(), "x-rate-limit-remaining") {
            self.metrics.set_rate_limit_remaining(remaining as f64);
        }
        match status {
            s if s.is_success() => Ok(Ok(response)),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let detail = response.text().await.unwrap_or_default();
                Err(SourceError::Credentials {
                    service: "x".into(),
                    detail: format!("{status} for {url}: {}", clip(&detail)),
                })
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let reset = header_number(response.headers(), "x-rate-limit-reset");
                Ok(Err(Failure::Status(status, reset)))
            }
            StatusCode::BAD_REQUEST => {
                let detail = response.text().await.unwrap_or_default();
                Err(SourceError::Refused(format!(
                    "x refused a request (400) to {url}: {}",
                    clip(&detail)
                )))
            }
            _ => Ok(Err(Failure::Status(status, None))),
        }
    }

    /// A JSON answer, retried with the documented backoff; `None` if stopped or if the
    /// body is unusable (skipped and counted).
    async fn call(
        &mut self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        stop: &CancellationToken,
    ) -> Result<Option<Value>, SourceError> {
        loop {
            if stop.is_cancelled() {
                return Ok(None);
            }
            match self.send(method.clone(), url, body).await? {
                Ok(response) => return Ok(self.json_body(response).await),
                Err(failure) => {
                    if !self.back_off(&failure, stop).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn json_body(&mut self, mut response: Response) -> Option<Value> {
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.config.max_line_bytes {
                        self.metrics.skip("body_too_large");
                        return None;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => {
                    self.metrics.skip("body_cut_short");
                    return None;
                }
            }
        }
        match serde_json::from_slice(&body) {
            Ok(value) => Some(value),
            Err(_) => {
                self.metrics.skip("not_json");
                None
            }
        }
    }

    /// Makes the stream's rules those of the configuration: reads them, deletes the ones
    /// not configured, adds the missing ones. `false` if stopped first.
    async fn sync_rules(&mut self, stop: &CancellationToken) -> Result<bool, SourceError> {
        let url = self.url("/2/tweets/search/stream/rules");
        let Some(current) = self.call(Method::GET, &url, None, stop).await? else {
            return Ok(false);
        };
        let current: Vec<(String, Rule)> = current
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|rule| {
                let field = |name: &str| rule.get(name).and_then(Value::as_str).map(str::to_string);
                Some((
                    field("id")?,
                    Rule {
                        tag: field("tag").unwrap_or_default(),
                        value: field("value")?,
                    },
                ))
            })
            .collect();
        let stale: Vec<String> = current
            .iter()
            .filter(|(_, rule)| !self.config.rules.contains(rule))
            .map(|(id, _)| id.clone())
            .collect();
        let missing: Vec<Rule> = self
            .config
            .rules
            .iter()
            .filter(|rule| !current.iter().any(|(_, r)| r == *rule))
            .cloned()
            .collect();
        let (deleted, added) = (stale.len(), missing.len());
        if !stale.is_empty() {
            let body = json!({"delete": {"ids": stale}});
            if self
                .call(Method::POST, &url, Some(&body), stop)
                .await?
                .is_none()
            {
                return Ok(false);
            }
        }
        if !missing.is_empty() {
            let body = json!({"add": missing});
            let Some(answer) = self.call(Method::POST, &url, Some(&body), stop).await? else {
                return Ok(false);
            };
            if let Some(errors) = answer.get("errors") {
                return Err(SourceError::Refused(format!(
                    "x refused the rules: {errors}"
                )));
            }
        }
        tracing::info!(source = %format!("x/{}", self.name), deleted, added, "stream rules synced");
        Ok(true)
    }

    /// Opens the stream, retrying with the documented backoff; `false` if stopped first.
    async fn connect(&mut self, stop: &CancellationToken) -> Result<bool, SourceError> {
        let url = self.url(&format!("/2/tweets/search/stream?{TWEET_FIELDS}"));
        loop {
            if stop.is_cancelled() {
                return Ok(false);
            }
            match self.send(Method::GET, &url, None).await? {
                Ok(response) => {
                    self.reset_backoff();
                    self.connection = Some(Connection {
                        response,
                        partial: Vec::new(),
                        skipping: false,
                        last_byte: Instant::now(),
                        delivered: false,
                    });
                    return Ok(true);
                }
                Err(failure) => {
                    if !self.back_off(&failure, stop).await {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Reads the stream until a batch is gathered, the stream ends or stalls, `deadline`
    /// (when given), or `stop`.
    async fn read_stream(
        &mut self,
        stop: &CancellationToken,
        deadline: Option<Instant>,
    ) -> Vec<SourceItem> {
        let mut events = Vec::new();
        let mut gathered_by: Option<Instant> = None;
        let read_timeout = Duration::from_millis(self.config.read_timeout_ms.max(1));
        loop {
            let Some(connection) = self.connection.as_mut() else {
                return events;
            };
            let stall_at = connection.last_byte + read_timeout;
            let until = [gathered_by, deadline]
                .into_iter()
                .flatten()
                .fold(stall_at, Instant::min);
            let read = tokio::select! {
                _ = stop.cancelled() => return events,
                read = tokio::time::timeout_at(until, connection.response.chunk()) => read,
            };
            let failure = match read {
                Ok(Ok(Some(bytes))) => {
                    connection.last_byte = Instant::now();
                    connection.delivered = true;
                    let lines = split_lines(connection, &bytes, self.config.max_line_bytes);
                    for line in lines {
                        match line {
                            Line::Complete(line) => self.stream_line(&line, &mut events),
                            Line::Overlong => self.metrics.skip("line_too_long"),
                        }
                    }
                    if !events.is_empty() && gathered_by.is_none() {
                        gathered_by = Some(Instant::now() + BATCH_WAIT);
                    }
                    if events.len() >= BATCH_POSTS {
                        return events;
                    }
                    continue;
                }
                // A batch gathered, or the deadline, came before a stall.
                Err(_) if Instant::now() < stall_at => return events,
                Err(_) => {
                    self.metrics.skip("stream_stalled");
                    Failure::Network(format!(
                        "no byte for {} ms: stalled",
                        read_timeout.as_millis()
                    ))
                }
                Ok(Ok(None)) => Failure::Network("the stream ended".into()),
                Ok(Err(error)) => Failure::Network(format!("the stream broke: {error}")),
            };
            // A line cut by the disconnection is dropped: the gap fill serves it again.
            let delivered = self.connection.take().is_some_and(|c| c.delivered);
            // X: reconnect at once after an established connection drops; back off only
            // when reconnecting fails. A server that drops every connection at once
            // still gets the backoff.
            let now = Instant::now();
            let at_once = delivered
                && self
                    .reconnected_at_once
                    .is_none_or(|last| now.duration_since(last) >= RECONNECT_AT_ONCE_EVERY);
            if at_once {
                self.reconnected_at_once = Some(now);
                if let Failure::Network(error) = &failure {
                    tracing::warn!(%error, "x stream disconnected; reconnecting at once");
                }
            } else if events.is_empty() {
                self.back_off(&failure, stop).await;
            } else if let Failure::Network(error) = &failure {
                tracing::warn!(%error, "x stream disconnected; reconnecting after this batch");
            }
            return events;
        }
    }

    /// One line of the stream: a tweet, a keep-alive, or a message without data.
    fn stream_line(&mut self, line: &[u8], events: &mut Vec<SourceItem>) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let location = format!("x/{}/stream", self.name);
        let value: Value = match serde_json::from_slice(line) {
            Ok(value) => value,
            Err(error) => {
                self.metrics.event("malformed");
                events.push(SourceItem::Malformed {
                    location,
                    kind: DeadLetterKind::NotJson,
                    error: format!("stream line is not json: {error}"),
                    raw: line.to_vec(),
                });
                return;
            }
        };
        let Some(tweet) = value.get("data").and_then(Value::as_object) else {
            // Operational messages (`errors`: a disconnect notice, ...).
            tracing::warn!(message = %clip(&String::from_utf8_lossy(line)), "x stream message without data");
            self.metrics.skip("message_without_data");
            return;
        };
        let tag = value
            .pointer("/matching_rules/0/tag")
            .and_then(Value::as_str)
            .unwrap_or("untagged");
        let users = users(&value);
        // The first post after a reconnection ends the gaps that search fills (those not
        // paged yet: a page token holds its query).
        let id: Option<u64> = tweet
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse().ok());
        for gap in &mut self.position.gaps {
            if gap.until_id.is_none() && !gap.started {
                gap.until_id = id;
            }
        }
        if let Some(event) = self.item(tweet, &users, tag, line) {
            events.push(event);
        }
    }

    /// The item of a tweet not handed out before.
    fn item(
        &mut self,
        tweet: &Map<String, Value>,
        users: &[Value],
        tag: &str,
        raw: &[u8],
    ) -> Option<SourceItem> {
        let version = tweet.get("id").and_then(Value::as_str).unwrap_or_default();
        if !version.is_empty() && !self.position.seen.insert(version) {
            return None;
        }
        if self.older_than_handed_out(tweet) {
            self.metrics.skip("older_version");
            return None;
        }
        let location = format!("x/{}/{version}", self.name);
        match tweet_post(tweet, users, tag, &self.limits) {
            Ok(post) => {
                if let Ok(id) = version.parse::<u64>() {
                    self.position.since_id = Some(self.position.since_id.unwrap_or(0).max(id));
                    let created = (id >> 22) + TWITTER_EPOCH_MS;
                    let lag = Utc::now().timestamp_millis() - created as i64;
                    self.metrics.set_lag_seconds(lag / 1_000);
                }
                let update = post.extra.contains_key("x_version_id");
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

    /// Whether a newer version of this post was handed out already; remembers the version
    /// of an edit.
    fn older_than_handed_out(&mut self, tweet: &Map<String, Value>) -> bool {
        let id = |value: Option<&Value>| {
            value
                .and_then(Value::as_str)
                .and_then(|id| id.parse::<u64>().ok())
        };
        let Some(version) = id(tweet.get("id")) else {
            return false;
        };
        let first = tweet
            .get("edit_history_tweet_ids")
            .and_then(Value::as_array)
            .and_then(|ids| ids.first());
        let post = id(first).unwrap_or(version);
        if self
            .position
            .edited
            .get(&post)
            .is_some_and(|newest| version < *newest)
        {
            return true;
        }
        if version != post {
            self.position.edited.insert(post, version);
            while self.position.edited.len() > EDITED_CAPACITY {
                self.position.edited.pop_first();
            }
        }
        false
    }

    /// Recent search of every rule since the last tweet handed out, oldest first, waiting
    /// for the search budget as needed (search mode).
    async fn search(&mut self, stop: &CancellationToken) -> Result<Vec<SourceItem>, SourceError> {
        let mut found: Vec<Found> = Vec::new();
        let start = self.search_start(self.position.since_id);
        for rule in self.config.rules.clone() {
            let mut next_token: Option<String> = None;
            for _ in 0..self.config.max_search_pages.max(1) {
                let page = self
                    .search_page(&rule, &start, None, next_token.as_deref(), true, stop)
                    .await?;
                match page {
                    SearchPage::Page {
                        found: mut page,
                        next_token: next,
                    } => {
                        found.append(&mut page);
                        next_token = next;
                    }
                    SearchPage::Unusable => next_token = None,
                    SearchPage::Deferred | SearchPage::Stopped => return Ok(Vec::new()),
                }
                if next_token.is_none() {
                    break;
                }
            }
        }
        Ok(self.found_items(found))
    }

    /// One page of the oldest gap's search, if the search budget allows it now; what it
    /// found.
    async fn fill_gap(&mut self, stop: &CancellationToken) -> Result<Vec<SourceItem>, SourceError> {
        let Some(gap) = self.position.gaps.first().cloned() else {
            return Ok(Vec::new());
        };
        let Some(rule) = self.config.rules.iter().find(|r| r.tag == gap.tag).cloned() else {
            // A rule no longer configured.
            self.position.gaps.remove(0);
            return Ok(Vec::new());
        };
        let start = self.search_start(Some(gap.since_id));
        let page = self
            .search_page(
                &rule,
                &start,
                gap.until_id,
                gap.next_token.as_deref(),
                false,
                stop,
            )
            .await?;
        let (found, next_token) = match page {
            SearchPage::Page { found, next_token } => (found, next_token),
            // Skipped (counted): this gap's search ends here.
            SearchPage::Unusable => (Vec::new(), None),
            SearchPage::Deferred | SearchPage::Stopped => return Ok(Vec::new()),
        };
        match next_token {
            Some(token) => {
                if let Some(gap) = self.position.gaps.first_mut() {
                    gap.next_token = Some(token);
                    gap.started = true;
                }
            }
            None => {
                self.position.gaps.remove(0);
                if self.position.gaps.is_empty() {
                    tracing::info!(source = %format!("x/{}", self.name), "x gaps filled by recent search");
                }
            }
        }
        Ok(self.found_items(found))
    }

    /// Adds, for every rule, the gap of a reconnection: what was posted after `since_id`.
    /// A rule whose last gap is still open-ended and unsearched is covered already.
    fn open_gaps(&mut self, since_id: u64) {
        for rule in &self.config.rules {
            let gaps = &mut self.position.gaps;
            let of_rule: Vec<usize> = (0..gaps.len())
                .filter(|i| gaps[*i].tag == rule.tag)
                .collect();
            if let Some(last) = of_rule.last().map(|i| &mut gaps[*i]) {
                if last.until_id.is_none() && !last.started {
                    continue;
                }
                if of_rule.len() >= MAX_GAPS_PER_RULE {
                    // Widened to cover the new one too, and searched afresh.
                    self.metrics.skip("x_gaps_merged");
                    last.since_id = last.since_id.min(since_id);
                    last.until_id = None;
                    last.next_token = None;
                    last.started = false;
                    continue;
                }
            }
            gaps.push(Gap {
                tag: rule.tag.clone(),
                since_id,
                until_id: None,
                next_token: None,
                started: false,
            });
        }
    }

    /// The items of posts found by search, oldest first.
    fn found_items(&mut self, mut found: Vec<Found>) -> Vec<SourceItem> {
        found.sort_by_key(|found| found.id);
        let mut events = Vec::new();
        for Found {
            tweet, users, tag, ..
        } in found
        {
            let raw = serde_json::to_vec(&tweet).unwrap_or_default();
            if let Some(event) = self.item(&tweet, &users, &tag, &raw) {
                events.push(event);
            }
        }
        events
    }

    /// One page of recent search for `rule`. With `wait`, waits for the budget and retries
    /// failures; without, a request the budget does not allow now, or one that failed, is
    /// [`SearchPage::Deferred`] (the budget holds later ones back by the failure's wait).
    async fn search_page(
        &mut self,
        rule: &Rule,
        start: &SearchStart,
        until_id: Option<u64>,
        next_token: Option<&str>,
        wait: bool,
        stop: &CancellationToken,
    ) -> Result<SearchPage, SourceError> {
        let base = self.url(&format!("/2/tweets/search/recent?{TWEET_FIELDS}"));
        let mut url = reqwest::Url::parse(&base).map_err(|e| SourceError::Config {
            key: format!("sources.x.{}.api_url", self.name),
            reason: e.to_string(),
        })?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("query", &rule.value);
            query.append_pair("max_results", "100");
            match start {
                SearchStart::SinceId(id) => query.append_pair("since_id", &id.to_string()),
                SearchStart::Time(time) => query.append_pair("start_time", time),
                SearchStart::Recent => &mut query,
            };
            if let Some(until_id) = until_id {
                query.append_pair("until_id", &until_id.to_string());
            }
            if let Some(token) = next_token {
                query.append_pair("next_token", token);
            }
        }
        loop {
            if stop.is_cancelled() {
                return Ok(SearchPage::Stopped);
            }
            let now = Instant::now();
            let budget_wait = self.search_budget.wait(now, Priority::First);
            if !budget_wait.is_zero() {
                if !wait {
                    return Ok(SearchPage::Deferred);
                }
                if budget_wait >= Duration::from_secs(5) {
                    tracing::info!(
                        wait_ms = budget_wait.as_millis() as u64,
                        remaining = self.search_budget.remaining(),
                        "x search rate limit: pacing searches until the window resets"
                    );
                }
                if !pause(budget_wait, stop).await {
                    return Ok(SearchPage::Stopped);
                }
                continue;
            }
            self.search_budget.spend(now);
            let failure = match self.send(Method::GET, url.as_str(), None).await? {
                Ok(response) => {
                    self.search_budget
                        .observe(Instant::now(), rate_headers(response.headers()));
                    self.http_errors.reset();
                    self.rate_limited.reset();
                    let Some(page) = self.json_body(response).await else {
                        return Ok(SearchPage::Unusable);
                    };
                    return Ok(SearchPage::Page {
                        found: found_on(&page, &rule.tag),
                        next_token: page
                            .pointer("/meta/next_token")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    });
                }
                Err(failure) => failure,
            };
            let now = Instant::now();
            if let Failure::Status(StatusCode::TOO_MANY_REQUESTS, reset) = &failure {
                let reset_in = reset.map(|reset| seconds_until(reset).unwrap_or(0.0));
                let held = self
                    .search_budget
                    .rate_limited(now, reset_in, &mut self.rate_limited);
                self.record_wait(WaitReason::RateLimited, held);
                tracing::warn!(
                    wait_ms = held.as_millis() as u64,
                    reset_in,
                    "x search rate limit reached (429), waiting for the reset"
                );
                if !wait {
                    return Ok(SearchPage::Deferred);
                }
                continue;
            }
            if !wait {
                let held = match failure {
                    Failure::Network(_) => self.network.next_delay(),
                    Failure::Status(..) => self.http_errors.next_delay(),
                };
                self.search_budget.hold(now, held);
                return Ok(SearchPage::Deferred);
            }
            if !self.back_off(&failure, stop).await {
                return Ok(SearchPage::Stopped);
            }
        }
    }

    /// Where a search starts: after `since` (the last id handed out), or as far back as
    /// search reaches when that id is older.
    fn search_start(&self, since: Option<u64>) -> SearchStart {
        let Some(since) = since else {
            return SearchStart::Recent;
        };
        let created_ms = (since >> 22) + TWITTER_EPOCH_MS;
        let reach = Utc::now() - SEARCH_REACH + chrono::Duration::minutes(1);
        if (created_ms as i64) < reach.timestamp_millis() {
            self.metrics.skip("gap_older_than_search");
            return SearchStart::Time(reach.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        SearchStart::SinceId(since)
    }
}

impl LiveSource for XSource {
    fn kind(&self) -> &'static str {
        "x"
    }

    fn instance(&self) -> &str {
        &self.name
    }

    fn restore(&mut self, checkpoint: Option<&[u8]>) -> Result<(), SourceError> {
        let key = format!("x/{}", self.name);
        let mut position: Position = decode_position(&key, checkpoint)?;
        position.seen = position.seen.with_capacity(self.config.seen_capacity);
        self.search_budget.restore(
            &position.search_budget,
            Instant::now(),
            Utc::now().timestamp_millis(),
        );
        self.position = position;
        // What the stream delivered after that checkpoint is served again by the gap fill
        // of the next connection.
        self.connection = None;
        self.next_poll = Instant::now();
        Ok(())
    }

    fn checkpoint(&self) -> Result<Vec<u8>, SourceError> {
        let mut position = self.position.clone();
        position.search_budget = self
            .search_budget
            .state(Instant::now(), Utc::now().timestamp_millis());
        encode_position(&format!("x/{}", self.name), &position)
    }

    async fn next_events(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<Vec<SourceItem>, SourceError> {
        if self.config.mode == Mode::Search {
            pause(
                self.next_poll.saturating_duration_since(Instant::now()),
                stop,
            )
            .await;
            if stop.is_cancelled() {
                return Ok(Vec::new());
            }
            self.next_poll = Instant::now() + Duration::from_millis(self.config.poll_interval_ms);
            return self.search(stop).await;
        }
        if !self.rules_synced {
            if !self.sync_rules(stop).await? {
                return Ok(Vec::new());
            }
            self.rules_synced = true;
        }
        if self.connection.is_none() {
            if !self.connect(stop).await? {
                return Ok(Vec::new());
            }
            // What was posted while disconnected: from recent search, since the last id,
            // up to the stream's first post.
            if let Some(since) = self.position.since_id {
                self.open_gaps(since);
            }
        }
        if !self.position.gaps.is_empty() {
            let filled = self.fill_gap(stop).await?;
            if !filled.is_empty() {
                return Ok(filled);
            }
        }
        // With a gap left, the stream is read until the search budget allows its next page.
        let deadline = (!self.position.gaps.is_empty()).then(|| {
            let now = Instant::now();
            now + self.search_budget.wait(now, Priority::First)
        });
        Ok(self.read_stream(stop, deadline).await)
    }

    fn status(&self) -> String {
        let [posts, updates] = ["post", "update"].map(|kind| self.metrics.events(kind));
        format!(
            "x/{}: {posts} posts, {updates} updates; stream {}; last id {}",
            self.name,
            if self.connection.is_some() {
                "connected"
            } else {
                "disconnected"
            },
            self.position
                .since_id
                .map_or_else(|| "none".into(), |id| id.to_string())
        )
    }
}

/// A post found by recent search, with the users of its page and its rule's tag.
struct Found {
    id: u64,
    tweet: Map<String, Value>,
    users: Vec<Value>,
    tag: String,
}

/// Where a recent search starts.
enum SearchStart {
    /// Nothing handed out yet: the most recent posts.
    Recent,
    SinceId(u64),
    /// `start_time`, RFC 3339.
    Time(String),
}

/// A piece of the stream split at newlines.
enum Line {
    Complete(Vec<u8>),
    Overlong,
}

fn split_lines(connection: &mut Connection, bytes: &[u8], max: usize) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|b| *b == b'\n') {
        let (head, tail) = rest.split_at(end);
        rest = &tail[1..];
        if connection.skipping {
            connection.skipping = false;
            connection.partial.clear();
            continue;
        }
        connection.partial.extend_from_slice(head);
        lines.push(Line::Complete(std::mem::take(&mut connection.partial)));
    }
    if !connection.skipping {
        connection.partial.extend_from_slice(rest);
        if connection.partial.len() > max {
            connection.partial.clear();
            connection.skipping = true;
            lines.push(Line::Overlong);
        }
    }
    lines
}

fn users(answer: &Value) -> Vec<Value> {
    answer
        .pointer("/includes/users")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// How a search request turned out.
enum SearchPage {
    /// The page's posts, and the token of the next page.
    Page {
        found: Vec<Found>,
        next_token: Option<String>,
    },
    /// The body was unusable (skipped and counted).
    Unusable,
    /// Not sent now, or failed, where waiting was not allowed.
    Deferred,
    Stopped,
}

/// The posts of a search answer, tagged with their rule.
fn found_on(page: &Value, tag: &str) -> Vec<Found> {
    let users = users(page);
    page.get("data")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .map(|tweet| Found {
            id: tweet
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| id.parse().ok())
                .unwrap_or(0),
            tweet: tweet.clone(),
            users: users.clone(),
            tag: tag.to_string(),
        })
        .collect()
}

/// Seconds from now until the Unix time `reset` (0 when past); `None` for a time so far off
/// that the header is misread.
fn seconds_until(reset: u64) -> Option<f64> {
    let now = Utc::now().timestamp_millis() as f64 / 1_000.0;
    let seconds = reset as f64 - now;
    (seconds <= 86_400.0).then_some(seconds.max(0.0))
}

/// `x-rate-limit-limit`, `-remaining` and `-reset` (Unix seconds).
fn rate_headers(headers: &HeaderMap) -> RateHeaders {
    RateHeaders {
        remaining: header_number(headers, "x-rate-limit-remaining").map(|n| n as f64),
        limit: header_number(headers, "x-rate-limit-limit").map(|n| n as f64),
        reset_in: header_number(headers, "x-rate-limit-reset").and_then(seconds_until),
    }
}

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}
