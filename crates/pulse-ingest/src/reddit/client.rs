//! Reddit's HTTP API as the source uses it: an OAuth2 token obtained and refreshed before it
//! expires (and again on a 401), every call within the request budget (Reddit's
//! `X-Ratelimit-*` window spread evenly, the own cap as a ceiling), 429s waited out until the
//! reset they name, 5xx retried with backoff, bad bodies (HTML error pages, non-JSON,
//! oversized) skipped and counted.

use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, USER_AGENT};
use reqwest::{Client, Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{Grant, RedditConfig};
use crate::live::{
    Backoff, BudgetState, Priority, RateHeaders, RequestBudget, SourceError, SourceMetrics,
};

/// Refresh a token this long before Reddit says it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// What a call came back with.
#[derive(Debug)]
pub enum Answer {
    /// The JSON body of a 200.
    Json(Value),
    /// The body was unusable (skipped and counted); the poll ends here.
    Unusable,
    /// The stop signal fired while waiting.
    Stopped,
    /// The budget had no room for it before the deadline given; nothing was sent.
    Deferred,
}

struct Token {
    bearer: String,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<f64>,
    error: Option<Value>,
}

/// A client for one Reddit app (client id).
pub struct RedditClient {
    http: Client,
    config: RedditConfig,
    user_agent: String,
    token: Option<Token>,
    budget: RequestBudget,
    /// Waits after 5xx, 429s without a reset header and network errors.
    backoff: Backoff,
    metrics: SourceMetrics,
    /// The `created_utc` of the newest item handed out, for the lag shown while waiting.
    newest_created: Option<i64>,
}

impl RedditClient {
    pub fn new(config: RedditConfig, metrics: SourceMetrics) -> Result<Self, SourceError> {
        let http = Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms.max(1)))
            .build()
            .map_err(|e| SourceError::Refused(format!("cannot build the http client: {e}")))?;
        let per_minute = config.max_requests_per_minute.clamp(1, 100) as usize;
        let backoff = Backoff::doubling_jittered(
            Duration::from_millis(config.backoff_initial_ms),
            Duration::from_millis(config.backoff_max_ms),
        );
        Ok(Self {
            http,
            user_agent: config.user_agent(),
            config,
            token: None,
            budget: RequestBudget::new(per_minute, Duration::from_secs(60)),
            backoff,
            metrics,
            newest_created: None,
        })
    }

    /// The budget's state for the checkpoint.
    pub fn budget_state(&self) -> BudgetState {
        self.budget
            .state(Instant::now(), chrono::Utc::now().timestamp_millis())
    }

    /// Takes in the budget of a checkpoint (a predecessor's requests and the API's last word).
    pub fn restore_budget(&mut self, state: &BudgetState) {
        self.budget
            .restore(state, Instant::now(), chrono::Utc::now().timestamp_millis());
    }

    /// The newest item handed out, so that the lag metric keeps growing during waits.
    pub fn set_newest_created(&mut self, created_utc: i64) {
        self.newest_created = Some(created_utc);
    }

    /// What the API last said is left of its rate-limit window.
    pub fn remaining(&self) -> Option<f64> {
        self.budget.remaining()
    }

    /// GETs `path_and_query` from the API (`/r/rust/new?limit=100`), retrying what is
    /// transient until it answers or `stop` fires. A request that may not be sent before
    /// `deadline` (when given) is not sent: [`Answer::Deferred`].
    pub async fn get(
        &mut self,
        path_and_query: &str,
        priority: Priority,
        deadline: Option<Instant>,
        stop: &CancellationToken,
    ) -> Result<Answer, SourceError> {
        let url = format!(
            "{}{path_and_query}",
            self.config.api_url.trim_end_matches('/')
        );
        // A 401 on a token just obtained means the credentials no longer work.
        let mut fresh_token_refused = false;
        loop {
            if stop.is_cancelled() {
                return Ok(Answer::Stopped);
            }
            let bearer = match self.bearer(stop).await? {
                Some(bearer) => bearer,
                None => return Ok(Answer::Stopped),
            };
            let now = Instant::now();
            let wait = self.budget.wait(now, priority);
            if deadline.is_some_and(|deadline| now + wait > deadline) {
                return Ok(Answer::Deferred);
            }
            if !wait.is_zero() {
                if wait >= Duration::from_secs(5) {
                    tracing::info!(
                        wait_ms = wait.as_millis() as u64,
                        remaining = self.budget.remaining(),
                        "reddit rate limit: pacing requests until the window resets"
                    );
                }
                self.show_lag();
                if !pause(wait, stop).await {
                    return Ok(Answer::Stopped);
                }
                // A wait for room can lose its place to first work meanwhile: ask again.
                if priority != Priority::First {
                    continue;
                }
            }
            self.budget.spend(Instant::now());
            let sent = self
                .http
                .get(&url)
                .header(AUTHORIZATION, format!("bearer {bearer}"))
                .header(USER_AGENT, &self.user_agent)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    self.metrics.request("network");
                    let wait = self.backoff.next_delay();
                    tracing::warn!(%error, wait_ms = wait.as_millis() as u64, "reddit request failed, retrying");
                    if !pause(wait, stop).await {
                        return Ok(Answer::Stopped);
                    }
                    continue;
                }
            };
            let status = response.status();
            self.metrics.request(status.as_str());
            let now = Instant::now();
            let headers = rate_headers(response.headers());
            self.budget.observe(now, headers);
            if let Some(remaining) = self.budget.remaining() {
                self.metrics.set_rate_limit_remaining(remaining);
            }
            match status {
                StatusCode::OK => {
                    self.backoff.reset();
                    return Ok(self.body(response).await);
                }
                StatusCode::UNAUTHORIZED if !fresh_token_refused => {
                    tracing::info!("reddit refused the token, getting a new one");
                    self.token = None;
                    fresh_token_refused = true;
                }
                StatusCode::UNAUTHORIZED => {
                    return Err(SourceError::Credentials {
                        service: "reddit".into(),
                        detail: "a new token was refused too (401)".into(),
                    })
                }
                StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                    return Err(SourceError::Refused(format!(
                        "reddit answered {status} for {path_and_query}: a subreddit is private, \
                         banned or does not exist, or the app may not read it"
                    )))
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    // Reddit says when its window resets (or Retry-After does); no request
                    // goes before that, and without either the wait grows.
                    let reset_in = headers.reset_in.or_else(|| retry_after(response.headers()));
                    let wait = self.budget.rate_limited(now, reset_in, &mut self.backoff);
                    tracing::warn!(
                        wait_ms = wait.as_millis() as u64,
                        reset_in,
                        "reddit rate limit reached (429), waiting for the reset"
                    );
                    self.show_lag();
                    if !pause(wait, stop).await {
                        return Ok(Answer::Stopped);
                    }
                }
                status => {
                    let wait = self.backoff.next_delay();
                    tracing::warn!(%status, wait_ms = wait.as_millis() as u64, "reddit answered an error, retrying");
                    if !pause(wait, stop).await {
                        return Ok(Answer::Stopped);
                    }
                }
            }
        }
    }

    /// The body of a 200 as JSON, or `Unusable` (counted by reason).
    async fn body(&mut self, mut response: Response) -> Answer {
        let limit = self.config.max_body_bytes;
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        tracing::warn!(limit, "reddit answer over max_body_bytes, skipped");
                        self.metrics.skip("body_too_large");
                        return Answer::Unusable;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "reddit answer cut short, skipped");
                    self.metrics.skip("body_cut_short");
                    return Answer::Unusable;
                }
            }
        }
        match serde_json::from_slice(&body) {
            Ok(value) => Answer::Json(value),
            Err(error) => {
                let start = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
                tracing::warn!(%error, body_start = %start, "reddit answer is not json, skipped");
                self.metrics.skip("not_json");
                Answer::Unusable
            }
        }
    }

    /// The bearer token, obtained or refreshed when needed; `None` if stopped meanwhile.
    async fn bearer(&mut self, stop: &CancellationToken) -> Result<Option<String>, SourceError> {
        if let Some(token) = &self.token {
            if Instant::now() < token.refresh_at {
                return Ok(Some(token.bearer.clone()));
            }
        }
        let mut backoff = self.backoff.clone();
        backoff.reset();
        loop {
            match self.request_token().await {
                Ok(token) => {
                    let bearer = token.bearer.clone();
                    self.token = Some(token);
                    return Ok(Some(bearer));
                }
                Err(TokenFailure::Rejected(detail)) => {
                    return Err(SourceError::Credentials {
                        service: "reddit".into(),
                        detail,
                    })
                }
                Err(TokenFailure::Transient(error)) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(%error, wait_ms = wait.as_millis() as u64, "cannot get a reddit token, retrying");
                    if !pause(wait, stop).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn request_token(&self) -> Result<Token, TokenFailure> {
        let config = &self.config;
        let mut form: Vec<(&str, &str)> = Vec::new();
        match config.grant {
            Grant::Password => {
                form.push(("grant_type", "password"));
                form.push(("username", &config.username));
                form.push(("password", &config.password));
            }
            Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
            Grant::InstalledClient => {
                form.push((
                    "grant_type",
                    "https://oauth.reddit.com/grants/installed_client",
                ));
                form.push(("device_id", &config.device_id));
            }
        }
        let url = format!(
            "{}/api/v1/access_token",
            config.auth_url.trim_end_matches('/')
        );
        let response = self
            .http
            .post(url)
            .basic_auth(&config.client_id, Some(&config.client_secret))
            .header(USER_AGENT, &self.user_agent)
            .form(&form)
            .send()
            .await
            .map_err(|e| TokenFailure::Transient(e.to_string()))?;
        let status = response.status();
        self.metrics.request(&format!("token_{}", status.as_str()));
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(TokenFailure::Rejected(format!(
                "the token endpoint answered {status}: check client_id and client_secret"
            )));
        }
        if !status.is_success() {
            return Err(TokenFailure::Transient(format!(
                "the token endpoint answered {status}"
            )));
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| TokenFailure::Transient(format!("unreadable token answer: {e}")))?;
        if let Some(error) = answer.error {
            // Reddit answers a wrong password with 200 and `{"error": "invalid_grant"}`.
            return Err(TokenFailure::Rejected(format!(
                "the token endpoint answered error {error}: check the grant's credentials"
            )));
        }
        let bearer = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TokenFailure::Transient("token answer without access_token".into()))?;
        let lifetime =
            Duration::from_secs_f64(answer.expires_in.unwrap_or(3_600.0).clamp(0.0, 86_400.0));
        Ok(Token {
            bearer,
            refresh_at: Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN).max(lifetime / 2),
        })
    }
}

enum TokenFailure {
    Rejected(String),
    Transient(String),
}

impl RedditClient {
    /// Sets the lag metric from the newest item handed out, before a wait.
    fn show_lag(&self) {
        if let Some(newest) = self.newest_created.filter(|n| *n > 0) {
            self.metrics
                .set_lag_seconds(chrono::Utc::now().timestamp().saturating_sub(newest));
        }
    }
}

/// `X-Ratelimit-Remaining`, `-Used` (with it, the window's size) and `-Reset` (seconds to
/// the window's end).
fn rate_headers(headers: &HeaderMap) -> RateHeaders {
    let remaining = header_seconds(headers, "x-ratelimit-remaining");
    let used = header_seconds(headers, "x-ratelimit-used");
    RateHeaders {
        remaining,
        limit: remaining
            .zip(used)
            .map(|(remaining, used)| remaining + used),
        reset_in: header_seconds(headers, "x-ratelimit-reset"),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by these APIs).
pub fn retry_after(headers: &HeaderMap) -> Option<f64> {
    header_seconds(headers, "retry-after")
}

/// A header holding a number.
fn header_seconds(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

/// Sleeps `wait` unless `stop` fires first; `false` if it did.
pub async fn pause(wait: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stop.cancelled() => false,
    }
}
