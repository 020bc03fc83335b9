//! Per-client request rate limit (a keyed GCRA from `governor`), keyed by the peer's IP
//! address; limits on the request target and headers; a time budget per request; and the
//! CORS policy; all from `[api]` configuration.
//!
//! Behind a reverse proxy every request comes from the proxy's address: limit there.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::{ApiError, ApiState};

/// How often (in checks) the limiter forgets clients that are back to a full allowance.
const FORGET_EVERY: u64 = 4_096;

/// Requests per second and burst allowed to each client address.
pub struct RateLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    per_second: u32,
    checks: AtomicU64,
}

impl RateLimit {
    /// `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Some(Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
            per_second,
            checks: AtomicU64::new(0),
        })
    }

    /// `Err(seconds to wait)` when `client` is over its allowance.
    fn check(&self, client: IpAddr) -> Result<(), u64> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// Middleware: 429 `rate_limited` with `Retry-After` for a client over its allowance.
pub async fn limit_rate(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    if let (Some(limit), Some(client)) = (&state.rate_limit, client) {
        if let Err(wait) = limit.check(client) {
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} requests per second from {client}; retry in {wait} s",
                    limit.per_second
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(wait.max(1)));
            return response;
        }
    }
    next.run(request).await
}

/// An origin of `api.cors_origins` that is not a valid header value.
#[derive(Debug, thiserror::Error)]
#[error("api.cors_origins: {0:?} is not a valid origin")]
pub struct InvalidOrigin(String);

/// The CORS layer for `origins`: `None` when empty (same origin only), any origin for
/// `["*"]`, else exactly those.
pub fn cors(origins: &[String]) -> Result<Option<CorsLayer>, InvalidOrigin> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        let parsed = origins
            .iter()
            .map(|o| HeaderValue::from_str(o).map_err(|_| InvalidOrigin(o.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(parsed)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(Any)
            .allow_headers(Any),
    ))
}

/// How far past the configured header limits the HTTP parser itself reads before it gives
/// up with an answer of its own (an empty 431): requests between the two limits get
/// Pulse's JSON errors.
pub const PARSER_HEADROOM: usize = 4;

/// Middleware: 414 `uri_too_long` for a request target over `api.max_uri_bytes`, 431
/// `headers_too_large` for headers over `api.max_header_bytes` or `api.max_headers` lines.
pub async fn limit_request_head(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let config = &state.config;
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target > config.max_uri_bytes {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!(
                "the request target has {target} bytes; the limit is {} (api.max_uri_bytes)",
                config.max_uri_bytes
            ),
        )
        .into_response();
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > config.max_headers || bytes > config.max_header_bytes {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request has {} headers of {bytes} bytes; the limits are {} headers \
                 (api.max_headers) and {} bytes (api.max_header_bytes)",
                headers.len(),
                config.max_headers,
                config.max_header_bytes
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Middleware: a request whose response has not started within `api.request_timeout_ms`
/// is stopped (its store reads cancelled) and answered 503 `timeout`.
pub async fn limit_time(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let budget = state.config.request_timeout_ms;
    if budget == 0 {
        return next.run(request).await;
    }
    match tokio::time::timeout(Duration::from_millis(budget), next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took over {budget} ms (api.request_timeout_ms); narrow it or retry"
            ),
        )
        .into_response(),
    }
}
