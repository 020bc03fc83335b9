//! `POST /api/v1/analyze` {"texts": [...]}: enrichments of the given texts, in order, by
//! the same enricher (and code path) as `pulse analyze` and the enrich stage.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::params::Body;
use crate::{ApiError, ApiState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    texts: Vec<String>,
}

pub async fn texts(
    State(state): State<ApiState>,
    Body(request): Body<AnalyzeRequest>,
) -> Result<Json<Value>, ApiError> {
    let most = state.config.max_analyze_texts;
    if request.texts.len() > most {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "at most {most} texts per request, not {}",
                request.texts.len()
            ),
        ));
    }
    let enricher = state.enricher.clone();
    // Tokenization and inference are CPU work: off the async runtime.
    let enrichments = tokio::task::spawn_blocking(move || {
        let texts: Vec<&str> = request.texts.iter().map(String::as_str).collect();
        enricher.enrich(&texts)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "analysis_failed",
            format!("analysis task failed: {e}"),
        )
    })??;
    Ok(Json(json!({
        "model": state.enricher.model_name(),
        "enrichments": enrichments,
    })))
}
