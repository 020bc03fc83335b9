//! Bearer-token checks for the routes that change things. Tokens are compared in constant
//! time, so response timing does not reveal how much of a guess was right.

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use crate::ApiError;

/// Accepts the request when its `Authorization: Bearer <token>` is one of `tokens`.
pub fn require_token(tokens: &[String], headers: &HeaderMap) -> Result<(), ApiError> {
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
        .and_then(|value| value.strip_prefix("Bearer "))
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
    }
}
