//! An in-process fake of X API v2 for tests: stream rules (read, add, delete), the filtered
//! stream as a long-lived chunked body (posts, keep-alives, raw lines, cuts mid-line,
//! silent stalls, refused connections), and recent search with `since_id`, `until_id` and
//! `next_token`, under a rate-limit window as X documents it (`x-rate-limit-limit`,
//! `-remaining`, and `-reset` in Unix seconds on every answer; 429 past the limit). It
//! counts connections, searches and rule changes, so tests can assert waits and syncing.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::live::fake_server::FakeServer;

/// Twitter's epoch, in Unix milliseconds.
const EPOCH_MS: u64 = 1_288_834_974_657;

/// A rule the fake holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRule {
    pub id: String,
    pub tag: String,
    pub value: String,
}

/// What the fake saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FakeXStats {
    pub rules_added: u64,
    pub rules_deleted: u64,
    /// Stream connection attempts, refused ones included.
    pub connects: u64,
    pub searches: u64,
    /// Searches that arrived when the window had nothing left (answered 429).
    pub searches_over_limit: u64,
    pub unauthorized: u64,
}

/// A search rate-limit window: `limit` requests per `window`, from the first request.
#[derive(Debug, Clone, Copy)]
struct SearchWindow {
    limit: u32,
    window: std::time::Duration,
    start: Option<Instant>,
    used: u32,
}

struct Tweet {
    id: u64,
    tag: String,
    data: Value,
}

#[derive(Default)]
struct FakeXState {
    rules: Vec<FakeRule>,
    next_rule: u64,
    tweets: Vec<Tweet>,
    sequence: u64,
    /// Open streams that receive what is posted.
    live: Vec<mpsc::UnboundedSender<Result<Bytes, Infallible>>>,
    /// Open streams that receive nothing any more (a silent stall).
    stalled: Vec<mpsc::UnboundedSender<Result<Bytes, Infallible>>>,
    refusals: VecDeque<u16>,
    connect_times: Vec<Instant>,
    search_window: Option<SearchWindow>,
    /// 429s to answer the next searches with, each with its reset in seconds from now.
    search_refusals: VecDeque<u64>,
    /// When each search arrived, and the status it got.
    search_log: Vec<(Instant, u16)>,
    /// Open streams get a keep-alive newline this often (X: every 20 s).
    keep_alive_every: std::time::Duration,
    last_keep_alive: Option<Instant>,
    stats: FakeXStats,
}

type Shared = Arc<(Mutex<FakeXState>, String)>;

/// A running fake X.
pub struct FakeX {
    state: Shared,
    server: FakeServer,
}

impl FakeX {
    /// Starts the fake on a free loopback port; it accepts `bearer_token`.
    pub async fn start(bearer_token: &str) -> std::io::Result<Self> {
        let state: Shared = Arc::new((
            Mutex::new(FakeXState {
                keep_alive_every: std::time::Duration::from_secs(20),
                ..FakeXState::default()
            }),
            bearer_token.into(),
        ));
        // Keep-alives, as X sends them on an idle stream.
        let keeping = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                if Arc::strong_count(&keeping) == 1 {
                    return;
                }
                let mut fake = lock(&keeping);
                let due = fake
                    .last_keep_alive
                    .is_none_or(|last| last.elapsed() >= fake.keep_alive_every);
                if due {
                    fake.last_keep_alive = Some(Instant::now());
                    fake.send(Bytes::from_static(b"\r\n"));
                }
            }
        });
        let app = Router::new()
            .route(
                "/2/tweets/search/stream/rules",
                get(rules).post(change_rules),
            )
            .route("/2/tweets/search/stream", get(stream))
            .route("/2/tweets/search/recent", get(search))
            .with_state(state.clone());
        let server = FakeServer::http(app).await?;
        Ok(Self { state, server })
    }

    pub fn url(&self) -> String {
        self.server.url("http")
    }

    fn fake(&self) -> MutexGuard<'_, FakeXState> {
        lock(&self.state)
    }

    /// Sets the rules as if made earlier by someone else.
    pub fn preset_rule(&self, tag: &str, value: &str) {
        let mut fake = self.fake();
        fake.next_rule += 1;
        let id = format!("r{}", fake.next_rule);
        fake.rules.push(FakeRule {
            id,
            tag: tag.into(),
            value: value.into(),
        });
    }

    pub fn rules(&self) -> Vec<FakeRule> {
        self.fake().rules.clone()
    }

    /// Posts `text` matching the rule tagged `tag`: sent to open streams, kept for search.
    /// Returns its id.
    pub fn post(&self, tag: &str, text: &str) -> String {
        let mut fake = self.fake();
        let id = fake.next_id();
        let data = json!({
            "id": id.to_string(), "text": text, "author_id": "42", "lang": "en",
            "created_at": created_at(id), "conversation_id": id.to_string(),
            "edit_history_tweet_ids": [id.to_string()],
            "public_metrics": {"like_count": 0, "retweet_count": 0}
        });
        fake.publish(id, tag, data);
        id.to_string()
    }

    /// Edits post `id` (the id of its first version): a new version, sent and kept.
    pub fn edit(&self, id: &str, text: &str) -> String {
        let mut fake = self.fake();
        let Some(first) = fake.tweets.iter().find(|t| t.data["id"] == id) else {
            return String::new();
        };
        let (tag, mut data) = (first.tag.clone(), first.data.clone());
        let version = fake.next_id();
        data["id"] = json!(version.to_string());
        data["text"] = json!(text);
        data["edit_history_tweet_ids"] = json!([id, version.to_string()]);
        fake.publish(version, &tag, data);
        version.to_string()
    }

    /// Sends these bytes as they are to the open streams.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.fake().send(Bytes::copy_from_slice(bytes));
    }

    /// Sends a keep-alive newline to the open streams.
    pub fn keep_alive(&self) {
        self.send_raw(b"\r\n");
    }

    /// Posts `text` but cuts the open streams in the middle of its line; it stays
    /// available to search. Returns its id.
    pub fn post_and_cut(&self, tag: &str, text: &str) -> String {
        let mut fake = self.fake();
        let id = fake.next_id();
        let data = json!({
            "id": id.to_string(), "text": text, "author_id": "42",
            "created_at": created_at(id), "edit_history_tweet_ids": [id.to_string()]
        });
        let line = fake.line(tag, &data);
        fake.tweets.push(Tweet {
            id,
            tag: tag.into(),
            data,
        });
        fake.send(line.slice(..line.len() / 2));
        fake.live.clear();
        id.to_string()
    }

    /// Keeps the open streams open but sends them nothing more: a silent stall.
    pub fn stall(&self) {
        let mut fake = self.fake();
        let live = std::mem::take(&mut fake.live);
        fake.stalled.extend(live);
    }

    /// Refuses the next stream connections with these statuses, in order.
    pub fn refuse_connections(&self, statuses: &[u16]) {
        self.fake().refusals.extend(statuses);
    }

    /// Streams open now (receiving posts).
    pub fn open_streams(&self) -> usize {
        self.fake().live.iter().filter(|s| !s.is_closed()).count()
    }

    /// When each stream connection was attempted.
    pub fn connect_times(&self) -> Vec<Instant> {
        self.fake().connect_times.clone()
    }

    pub fn stats(&self) -> FakeXStats {
        self.fake().stats.clone()
    }

    /// Sends keep-alive newlines this often instead of X's 20 s.
    pub fn keep_alive_every(&self, every: std::time::Duration) {
        self.fake().keep_alive_every = every;
    }

    /// Limits recent search to `limit` requests per `window`, a fixed window from the
    /// first search, as X's 15-minute windows are.
    pub fn limit_searches(&self, limit: u32, window: std::time::Duration) {
        self.fake().search_window = Some(SearchWindow {
            limit,
            window,
            start: None,
            used: 0,
        });
    }

    /// Answers the next searches 429, each with `x-rate-limit-reset` this many seconds on.
    pub fn refuse_searches(&self, resets_in_secs: &[u64]) {
        self.fake().search_refusals.extend(resets_in_secs);
    }

    /// When each search arrived, and its status.
    pub fn search_log(&self) -> Vec<(Instant, u16)> {
        self.fake().search_log.clone()
    }
}

/// Unix seconds `seconds` from now.
fn unix_in(seconds: f64) -> u64 {
    (chrono::Utc::now().timestamp_millis() as f64 / 1_000.0 + seconds).ceil() as u64
}

/// The rate-limit headers of an answer.
fn rate_headers(limit: u32, remaining: u32, reset_unix: u64) -> [(&'static str, String); 3] {
    [
        ("x-rate-limit-limit", limit.to_string()),
        ("x-rate-limit-remaining", remaining.to_string()),
        ("x-rate-limit-reset", reset_unix.to_string()),
    ]
}

impl FakeXState {
    /// Ids as X makes them: the creation time above bit 22, a sequence below.
    fn next_id(&mut self) -> u64 {
        self.sequence += 1;
        let now = chrono::Utc::now().timestamp_millis() as u64;
        ((now - EPOCH_MS) << 22) | (self.sequence & 0x3f_ffff)
    }

    fn line(&self, tag: &str, data: &Value) -> Bytes {
        let rule = self.rules.iter().find(|r| r.tag == tag);
        let line = json!({
            "data": data,
            "includes": {"users": [{"id": "42", "username": "fake_user", "name": "Fake"}]},
            "matching_rules": [{"id": rule.map(|r| r.id.clone()), "tag": tag}]
        });
        Bytes::from(format!("{line}\r\n"))
    }

    fn publish(&mut self, id: u64, tag: &str, data: Value) {
        let line = self.line(tag, &data);
        self.tweets.push(Tweet {
            id,
            tag: tag.into(),
            data,
        });
        self.send(line);
    }

    fn send(&mut self, bytes: Bytes) {
        self.live
            .retain(|stream| stream.send(Ok(bytes.clone())).is_ok());
    }
}

fn lock(state: &Shared) -> MutexGuard<'_, FakeXState> {
    state
        .0
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn created_at(id: u64) -> String {
    let ms = ((id >> 22) + EPOCH_MS) as i64;
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn authorized(state: &Shared, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", state.1);
    let ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(expected.as_str());
    if !ok {
        lock(state).stats.unauthorized += 1;
    }
    ok
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"title": "Unauthorized", "type": "about:blank", "status": 401})),
    )
        .into_response()
}

async fn rules(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let fake = lock(&state);
    let data: Vec<Value> = fake
        .rules
        .iter()
        .map(|r| json!({"id": r.id, "tag": r.tag, "value": r.value}))
        .collect();
    Json(json!({"data": data, "meta": {"result_count": data.len()}})).into_response()
}

async fn change_rules(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let mut fake = lock(&state);
    if let Some(ids) = body.pointer("/delete/ids").and_then(Value::as_array) {
        let before = fake.rules.len();
        fake.rules
            .retain(|r| !ids.iter().any(|id| id.as_str() == Some(r.id.as_str())));
        fake.stats.rules_deleted += (before - fake.rules.len()) as u64;
    }
    let mut created = 0;
    for rule in body
        .get("add")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = |name: &str| rule.get(name).and_then(Value::as_str).unwrap_or_default();
        fake.next_rule += 1;
        let id = format!("r{}", fake.next_rule);
        let (tag, value) = (field("tag").to_string(), field("value").to_string());
        fake.rules.push(FakeRule { id, tag, value });
        created += 1;
    }
    fake.stats.rules_added += created;
    Json(json!({"meta": {"summary": {"created": created}}})).into_response()
}

async fn stream(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let mut fake = lock(&state);
    fake.stats.connects += 1;
    fake.connect_times.push(Instant::now());
    if let Some(status) = fake.refusals.pop_front() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (status, Json(json!({"title": "refused by the fake"}))).into_response();
    }
    let (sender, mut receiver) = mpsc::unbounded_channel();
    fake.live.push(sender);
    let body = futures::stream::poll_fn(move |context| receiver.poll_recv(context));
    Body::from_stream(body).into_response()
}

async fn search(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let mut fake = lock(&state);
    fake.stats.searches += 1;
    let now = Instant::now();
    if let Some(reset) = fake.search_refusals.pop_front() {
        fake.search_log.push((now, 429));
        let headers = rate_headers(0, 0, unix_in(reset as f64));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            headers,
            Json(json!({"title": "Too Many Requests"})),
        )
            .into_response();
    }
    let mut limit_headers = None;
    if let Some(window) = fake.search_window.as_mut() {
        let start = match window.start {
            Some(start) if now.duration_since(start) < window.window => start,
            _ => {
                window.start = Some(now);
                window.used = 0;
                now
            }
        };
        let left = window.window.saturating_sub(now.duration_since(start));
        let reset = unix_in(left.as_secs_f64());
        if window.used >= window.limit {
            let headers = rate_headers(window.limit, 0, reset);
            fake.stats.searches_over_limit += 1;
            fake.search_log.push((now, 429));
            return (
                StatusCode::TOO_MANY_REQUESTS,
                headers,
                Json(json!({"title": "Too Many Requests"})),
            )
                .into_response();
        }
        window.used += 1;
        limit_headers = Some(rate_headers(
            window.limit,
            window.limit - window.used,
            reset,
        ));
    }
    fake.search_log.push((now, 200));
    let value = query.get("query").cloned().unwrap_or_default();
    let tags: Vec<String> = fake
        .rules
        .iter()
        .filter(|r| r.value == value)
        .map(|r| r.tag.clone())
        .collect();
    let since: u64 = query
        .get("since_id")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let until: u64 = query
        .get("until_id")
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    let max = query
        .get("max_results")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(10, 100);
    let skip: usize = query
        .get("next_token")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let matching: Vec<&Tweet> = fake
        .tweets
        .iter()
        .rev()
        .filter(|t| tags.contains(&t.tag) && t.id > since && t.id < until)
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(max)
        .map(|t| t.data.clone())
        .collect();
    let mut meta = json!({"result_count": page.len()});
    if skip + page.len() < matching.len() {
        meta["next_token"] = json!((skip + page.len()).to_string());
    }
    let users = json!([{"id": "42", "username": "fake_user", "name": "Fake"}]);
    let body = if page.is_empty() {
        json!({"meta": meta})
    } else {
        json!({"data": page, "includes": {"users": users}, "meta": meta})
    };
    let mut response = Json(body).into_response();
    for (name, value) in limit_headers.into_iter().flatten() {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
