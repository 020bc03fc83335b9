//! `POST /api/v1/analyze` {"texts": [...], "lang"?}: enrichments of the given texts, in
//! order, each with its language, by the same enricher (and code path) as `pulse analyze`
//! and the enrich stage.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use pulse_nlp::PostText;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::params::ObjectBody;
use crate::{ApiError, ApiState, ErrorBody};

/// Texts to enrich.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    /// At most `api.max_analyze_texts`.
    texts: Vec<String>,
    /// The language tag of every text (`de`, `pt-BR`), when the client knows it; otherwise
    /// each text's language is detected.
    #[serde(default)]
    lang: Option<String>,
}

/// Enrichments of the given texts, in order (`{"model", "enrichments"}`, each enrichment with
/// the `lang` Pulse gave its text), by the same enricher as `pulse analyze` and the enrich
/// stage. A model scores only the languages its manifest declares.
#[utoipa::path(post, path = "/api/v1/analyze", tag = "analysis", request_body = AnalyzeRequest, responses(
    (status = 200, description = "one enrichment per text", content_type = "application/json"),
    (status = 400, description = "not the expected JSON", body = ErrorBody),
    (status = 413, description = "too many texts or too large a body", body = ErrorBody),
    (status = 415, description = "not JSON", body = ErrorBody), (status = 429, description = "over the client's rate", body = ErrorBody)))]
pub async fn texts(
    State(state): State<ApiState>,
    ObjectBody(request): ObjectBody<AnalyzeRequest>,
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
        let posts: Vec<PostText<'_>> = request
            .texts
            .iter()
            .map(|text| PostText {
                text,
                lang: request.lang.as_deref(),
            })
            .collect();
        enricher.enrich_posts(&posts)
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
