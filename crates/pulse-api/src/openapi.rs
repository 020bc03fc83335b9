//! The OpenAPI document of the API, generated from the handlers' annotations and served at
//! `/api/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::routes::{admin, analyze, channels, health, history, ingest, live, posts, stream};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulse query API",
        description = "Live windows (speed layer), history merged from batch rollups and \
                       speed-layer minutes, stored posts, a live event stream, ad-hoc analysis \
                       and authenticated ingest. Every error is JSON {error, detail}."
    ),
    paths(
        health::alive,
        health::ready,
        channels::list,
        live::window,
        history::buckets,
        posts::list,
        posts::one,
        ingest::posts,
        stream::posts,
        analyze::texts,
        admin::recompute,
        admin::replay,
        admin::job,
    ),
    components(schemas(
        ErrorBody,
        analyze::AnalyzeRequest,
        admin::RecomputeRequest,
        admin::ReplayRequest
    )),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the ingest route names.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
