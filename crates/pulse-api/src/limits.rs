//! Per-client request rate limit (a keyed GCRA from `governor`), keyed by the peer's IP
//! address, and the CORS policy, both from `[api]` configuration.
//!
//! Behind a reverse proxy every request comes from the proxy's address: limit there.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

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
