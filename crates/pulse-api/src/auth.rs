//! Bearer-token checks for the routes that change things. Tokens are compared in constant
//! time, so response timing does not reveal how much of a guess was right.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use crate::{ApiError, ApiState};

/// A request that carries one of the configured tokens. Handlers take it before their body,
/// so a request without a valid token gets 401 whatever its body holds.
pub struct Authorized;

impl FromRequestParts<ApiState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        require_token(&state.config.tokens, &parts.headers).map(|()| Authorized)
    }
}

/// Accepts the request when its `Authorization: Bearer <token>` is one of `tokens`.
fn require_token(tokens: &[String], headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized =
        |detail: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
    if tokens.is_empty() {
        return Err(unauthorized(
            "no api tokens are configured (api.tokens), so this route is closed",
        ));
    }
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            // The scheme name is case-insensitive (RFC 9110, 11.1).
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim_start())
        })
        .ok_or_else(|| unauthorized("an Authorization: Bearer <token> header is required"))?;
    // Every token is compared (no early exit on a match).
    let matched = tokens.iter().fold(subtle::Choice::from(0), |found, token| {
        found | token.as_bytes().ct_eq(presented.as_bytes())
    });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(unauthorized("the bearer token is not valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    #[test]
    fn only_a_configured_token_opens() {
        let tokens = vec!["first-secret".to_string(), "second-secret".to_string()];
        assert!(require_token(&tokens, &bearer("second-secret")).is_ok());
        for wrong in ["second-secre", "second-secret2", "", "FIRST-SECRET"] {
            let error = require_token(&tokens, &bearer(wrong)).unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        }
        assert!(require_token(&tokens, &HeaderMap::new()).is_err());
        assert!(require_token(&[], &bearer("anything")).is_err());
        let mut basic = HeaderMap::new();
        basic.insert(AUTHORIZATION, "Basic Zmlyc3Q6c2VjcmV0".parse().unwrap());
        assert!(require_token(&tokens, &basic).is_err());
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            let mut headers = HeaderMap::new();
            let value = format!("{scheme} first-secret");
            headers.insert(AUTHORIZATION, value.parse().unwrap());
            assert!(require_token(&tokens, &headers).is_ok(), "{scheme}");
        }
    }
}
