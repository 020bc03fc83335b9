//! An in-process fake of Reddit's OAuth API for tests: the token endpoint (three grants,
//! tokens that expire), listings newest first with `after` paging, `/api/info`, a fixed
//! rate-limit window announced in `X-Ratelimit-*` headers, and faults on demand (5xx
//! bursts, 429s, HTML pages, oversized and cut bodies). It counts what it was asked, so
//! tests can assert that the source kept to the budget.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use crate::live::fake_server::FakeServer;

/// What the fake accepts and how strict it is.
#[derive(Debug, Clone)]
pub struct FakeSettings {
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
    /// Lifetime of the tokens it hands out (`expires_in`).
    pub token_ttl: Duration,
    /// The rate-limit window and the requests allowed in it.
    pub window: Duration,
    pub window_limit: u32,
}

impl Default for FakeSettings {
    fn default() -> Self {
        Self {
            client_id: "fake-client".into(),
            client_secret: "fake-secret".into(),
            username: "fake-user".into(),
            password: "fake-password".into(),
            token_ttl: Duration::from_secs(3_600),
            window: Duration::from_secs(60),
            window_limit: 100,
        }
    }
}

/// A fault served instead of the next API answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// This status with an empty body.
    Status(u16),
    /// 429 with `X-Ratelimit-Reset` of this many seconds and nothing remaining.
    RateLimited(u64),
    /// A 200 whose body is an HTML error page.
    Html,
    /// A 200 whose body is `bytes` long (JSON-looking filler).
    Huge(usize),
}

/// What the fake saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FakeStats {
    pub api_requests: u64,
    pub token_requests: u64,
    /// API requests that arrived when the window had nothing left (Reddit would answer 429).
    pub over_limit: u64,
    /// Requests whose user agent lacked Reddit's `(by /u/<user>)`.
    pub bad_user_agent: u64,
    /// Requests with a missing, unknown or expired token.
    pub unauthorized: u64,
    pub info_requests: u64,
}

struct Thing {
    kind: &'static str,
    data: Map<String, Value>,
    /// Left out of listings (a removed submission), still answered by `/api/info`.
    hidden: bool,
}

#[derive(Default)]
struct Fake {
    things: Vec<Thing>,
    index: HashMap<String, usize>,
    tokens: HashMap<String, Instant>,
    window_start: Option<Instant>,
    window_used: u32,
    faults: VecDeque<Fault>,
    stats: FakeStats,
    /// When each API request arrived, with its path.
    log: Vec<(Instant, String)>,
    /// Each 429: when it was answered, and the reset it named.
    rate_limited: Vec<(Instant, Instant)>,
    next_token: u64,
}

/// A running fake Reddit.
pub struct FakeReddit {
    state: Arc<(Mutex<Fake>, FakeSettings)>,
    server: FakeServer,
}

impl FakeReddit {
    /// Starts the fake on a free loopback port.
    pub async fn start(settings: FakeSettings) -> std::io::Result<Self> {
        let state = Arc::new((Mutex::new(Fake::default()), settings));
        let app = Router::new()
            .route("/api/v1/access_token", post(token))
            .route("/api/info", get(info))
            .route("/r/{subreddits}/{listing}", get(listing))
            .with_state(state.clone());
        let server = FakeServer::http(app).await?;
        Ok(Self { state, server })
    }

    /// The base URL of both the token endpoint and the API.
    pub fn url(&self) -> String {
        self.server.url("http")
    }

    fn fake(&self) -> MutexGuard<'_, Fake> {
        lock(&self.state)
    }

    /// Adds a submission to `subreddit`, created at `created_utc`; returns its fullname.
    pub fn submit(&self, subreddit: &str, title: &str, selftext: &str, created_utc: i64) -> String {
        let mut fake = self.fake();
        let name = format!("t3_{}", base36(fake.things.len() as u64 + 1_000));
        let data = json!({
            "name": name, "id": &name[3..], "subreddit": subreddit, "author": "poster",
            "title": title, "selftext": selftext, "created_utc": created_utc as f64,
            "permalink": format!("/r/{subreddit}/comments/{}/", &name[3..]),
            "score": 1, "num_comments": 0, "removed_by_category": null
        });
        fake.add("t3", data);
        name
    }

    /// Adds a comment on `link` to `subreddit`; returns its fullname.
    pub fn comment(&self, subreddit: &str, link: &str, body: &str, created_utc: i64) -> String {
        let mut fake = self.fake();
        let name = format!("t1_{}", base36(fake.things.len() as u64 + 1_000));
        let data = json!({
            "name": name, "id": &name[3..], "subreddit": subreddit, "author": "commenter",
            "body": body, "created_utc": created_utc as f64, "link_id": link,
            "parent_id": link, "permalink": format!("/r/{subreddit}/comments/x/{}/", &name[3..]),
            "score": 1
        });
        fake.add("t1", data);
        name
    }

    /// Adds a thing with exactly these fields (for bad payloads); `name` must be set.
    pub fn add_raw(&self, kind: &'static str, data: Value) {
        self.fake().add(kind, data);
    }

    /// Deletes a thing as its author would: author and text become `[deleted]`.
    pub fn delete(&self, name: &str) {
        self.fake().update(name, |kind, data| {
            data.insert("author".into(), json!("[deleted]"));
            let field = if kind == "t1" { "body" } else { "selftext" };
            data.insert(field.into(), json!("[deleted]"));
        });
    }

    /// Removes a thing as a moderator would: a removed submission also leaves the
    /// listings.
    pub fn remove(&self, name: &str) {
        let mut fake = self.fake();
        fake.update(name, |kind, data| {
            let field = if kind == "t1" { "body" } else { "selftext" };
            data.insert(field.into(), json!("[removed]"));
            if kind == "t3" {
                data.insert("removed_by_category".into(), json!("moderator"));
            }
        });
        if let Some(&index) = fake.index.get(name) {
            fake.things[index].hidden = fake.things[index].kind == "t3";
        }
    }

    /// Edits a thing's text (a comment's body, a submission's selftext).
    pub fn edit(&self, name: &str, text: &str) {
        self.fake().update(name, |kind, data| {
            let field = if kind == "t1" { "body" } else { "selftext" };
            data.insert(field.into(), json!(text));
        });
    }

    /// Serves `fault` instead of the next API answer (faults queue up).
    pub fn inject(&self, fault: Fault) {
        self.fake().faults.push_back(fault);
    }

    /// Counts `requests` against the current window, as another process of the same app
    /// (client id) would spend it.
    pub fn spend(&self, requests: u32) {
        let mut fake = self.fake();
        let now = Instant::now();
        if fake.window_start.is_none() {
            fake.window_start = Some(now);
        }
        fake.window_used = fake.window_used.saturating_add(requests);
    }

    /// Makes every token handed out so far expired.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for expiry in self.fake().tokens.values_mut() {
            *expiry = now;
        }
    }

    pub fn stats(&self) -> FakeStats {
        self.fake().stats.clone()
    }

    /// When each API request arrived, with its path and query, in order.
    pub fn log(&self) -> Vec<(Instant, String)> {
        self.fake().log.clone()
    }

    /// Each 429 answered: when, and the moment its `X-Ratelimit-Reset` named.
    pub fn rate_limited(&self) -> Vec<(Instant, Instant)> {
        self.fake().rate_limited.clone()
    }

    /// The settings it runs with.
    pub fn settings(&self) -> FakeSettings {
        self.state.1.clone()
    }
}

impl Fake {
    fn add(&mut self, kind: &'static str, data: Value) {
        let Value::Object(data) = data else { return };
        if let Some(name) = data.get("name").and_then(Value::as_str) {
            self.index.insert(name.to_string(), self.things.len());
        }
        self.things.push(Thing {
            kind,
            data,
            hidden: false,
        });
    }

    fn update(&mut self, name: &str, change: impl FnOnce(&str, &mut Map<String, Value>)) {
        if let Some(&index) = self.index.get(name) {
            let thing = &mut self.things[index];
            change(thing.kind, &mut thing.data);
        }
    }
}

type Shared = Arc<(Mutex<Fake>, FakeSettings)>;

fn lock(state: &Shared) -> MutexGuard<'_, Fake> {
    state
        .0
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

async fn token(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let settings = &state.1;
    let mut fake = lock(&state);
    fake.stats.token_requests += 1;
    let expected = |secret: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{secret}", settings.client_id))
        )
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let grant = form
        .get("grant_type")
        .map(String::as_str)
        .unwrap_or_default();
    let client_ok = match grant {
        "https://oauth.reddit.com/grants/installed_client" => {
            authorization == expected("") && form.contains_key("device_id")
        }
        _ => authorization == expected(&settings.client_secret),
    };
    if !client_ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Unauthorized", "error": 401})),
        )
            .into_response();
    }
    if grant == "password"
        && (form.get("username") != Some(&settings.username)
            || form.get("password") != Some(&settings.password))
    {
        return axum::Json(json!({"error": "invalid_grant"})).into_response();
    }
    fake.next_token += 1;
    let bearer = format!("token-{}", fake.next_token);
    fake.tokens
        .insert(bearer.clone(), Instant::now() + settings.token_ttl);
    axum::Json(json!({
        "access_token": bearer, "token_type": "bearer",
        "expires_in": settings.token_ttl.as_secs_f64(), "scope": "*"
    }))
    .into_response()
}

/// What to do with an API request.
enum Admission {
    /// Serve it, with these rate-limit headers.
    Serve(HeaderMap),
    /// Send this answer instead.
    Answer(Response),
}

/// Checks the token, counts the request against the window and serves a queued fault.
fn admit(state: &Shared, headers: &HeaderMap, path: String) -> Admission {
    let settings = &state.1;
    let mut fake = lock(state);
    let now = Instant::now();
    fake.stats.api_requests += 1;
    fake.log.push((now, path));
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !user_agent.contains("(by /u/") {
        fake.stats.bad_user_agent += 1;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bearer "))
        .unwrap_or_default();
    if fake.tokens.get(bearer).is_none_or(|expiry| *expiry <= now) {
        fake.stats.unauthorized += 1;
        return Admission::Answer(StatusCode::UNAUTHORIZED.into_response());
    }
    let start = match fake.window_start {
        Some(start) if now.duration_since(start) < settings.window => start,
        _ => {
            fake.window_start = Some(now);
            fake.window_used = 0;
            now
        }
    };
    let reset = (settings.window.saturating_sub(now.duration_since(start)))
        .as_secs_f64()
        .ceil();
    if fake.window_used >= settings.window_limit {
        fake.stats.over_limit += 1;
        fake.rate_limited.push((now, start + settings.window));
        return Admission::Answer(rate_limited(settings.window_limit, 0, reset));
    }
    fake.window_used += 1;
    let mut rate = HeaderMap::new();
    let remaining = settings.window_limit - fake.window_used;
    for (name, value) in [
        ("x-ratelimit-used", f64::from(fake.window_used)),
        ("x-ratelimit-remaining", f64::from(remaining)),
        ("x-ratelimit-reset", reset),
    ] {
        if let Ok(value) = HeaderValue::from_str(&format!("{value:.0}")) {
            rate.insert(name, value);
        }
    }
    match fake.faults.pop_front() {
        None => Admission::Serve(rate),
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Admission::Answer((status, rate).into_response())
        }
        Some(Fault::RateLimited(reset)) => {
            fake.rate_limited
                .push((now, now + Duration::from_secs(reset)));
            Admission::Answer(rate_limited(
                settings.window_limit,
                settings.window_limit,
                reset as f64,
            ))
        }
        Some(Fault::Html) => Admission::Answer(
            (
                rate,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>all of our servers are busy right now</h1></body></html>",
            )
                .into_response(),
        ),
        Some(Fault::Huge(bytes)) => {
            let mut body = String::with_capacity(bytes + 16);
            body.push_str("{\"data\":\"");
            body.extend(std::iter::repeat_n('x', bytes));
            body.push_str("\"}");
            Admission::Answer((rate, Body::from(body)).into_response())
        }
    }
}

fn rate_limited(limit: u32, used: u32, reset: f64) -> Response {
    let mut response = StatusCode::TOO_MANY_REQUESTS.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-used", used.max(limit).to_string()),
        ("x-ratelimit-remaining", "0".to_string()),
        ("x-ratelimit-reset", format!("{reset:.0}")),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

async fn listing(
    State(state): State<Shared>,
    Path((subreddits, listing)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/r/{subreddits}/{listing}?{}", query_string(&query));
    let rate = match admit(&state, &headers, path) {
        Admission::Serve(rate) => rate,
        Admission::Answer(answer) => return answer,
    };
    let kind = match listing.as_str() {
        "new" => "t3",
        "comments" => "t1",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let subs: Vec<String> = subreddits.split('+').map(str::to_lowercase).collect();
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, 100);
    let fake = lock(&state);
    let newest_first: Vec<&Thing> = fake
        .things
        .iter()
        .rev()
        .filter(|t| {
            t.kind == kind
                && !t.hidden
                && t.data
                    .get("subreddit")
                    .and_then(Value::as_str)
                    .is_some_and(|s| subs.contains(&s.to_lowercase()))
        })
        .collect();
    let start = match query.get("after") {
        Some(after) => match newest_first
            .iter()
            .position(|t| t.data.get("name").and_then(Value::as_str) == Some(after))
        {
            Some(position) => position + 1,
            None => newest_first.len(),
        },
        None => 0,
    };
    let page: Vec<&Thing> = newest_first
        .iter()
        .skip(start)
        .take(limit)
        .copied()
        .collect();
    let after = if start + page.len() < newest_first.len() {
        page.last().and_then(|t| t.data.get("name")).cloned()
    } else {
        None
    };
    let children: Vec<Value> = page
        .iter()
        .map(|t| json!({"kind": t.kind, "data": t.data}))
        .collect();
    (
        rate,
        axum::Json(json!({"kind": "Listing", "data": {"after": after, "children": children}})),
    )
        .into_response()
}

async fn info(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/api/info?{}", query_string(&query));
    let rate = match admit(&state, &headers, path) {
        Admission::Serve(rate) => rate,
        Admission::Answer(answer) => return answer,
    };
    let mut fake = lock(&state);
    fake.stats.info_requests += 1;
    let ids: Vec<&str> = query
        .get("id")
        .map(|ids| ids.split(',').take(100).collect())
        .unwrap_or_default();
    let children: Vec<Value> = ids
        .iter()
        .filter_map(|id| fake.index.get(*id))
        .map(|&i| json!({"kind": fake.things[i].kind, "data": fake.things[i].data}))
        .collect();
    (
        rate,
        axum::Json(json!({"kind": "Listing", "data": {"after": null, "children": children}})),
    )
        .into_response()
}

fn query_string(query: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join("&")
}
