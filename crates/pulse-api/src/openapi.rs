//! The OpenAPI document of the API, generated from the handlers' annotations and served at
//! `/api/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
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
    modifiers(&BearerScheme, &CommonErrors)
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

/// Documents on every operation the errors that middleware and extractors answer for any
/// route, so that each status a client can get is in the document: 414 and 431 (request
/// limits, every route); under `/api/v1` 429 (rate) and 503 (a store down, or over the
/// time budget); 400 where there are parameters; 400, 413 and 415 where there is a body.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                document_common_errors(path, operation);
            }
        }
    }
}

fn document_common_errors(path: &str, operation: &mut Operation) {
    let mut errors = vec![
        ("414", "the request target is over api.max_uri_bytes"),
        (
            "431",
            "the headers are over api.max_header_bytes or api.max_headers",
        ),
    ];
    if path.starts_with("/api/v1") {
        errors.push(("429", "over the client's rate"));
        errors.push((
            "503",
            "a store is down, or the request is over api.request_timeout_ms",
        ));
    }
    if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        errors.push(("400", "a bad parameter"));
    }
    if operation.request_body.is_some() {
        errors.push(("400", "not the expected JSON"));
        errors.push(("413", "too large a body"));
        errors.push(("415", "not JSON (Content-Type: application/json)"));
    }
    for (status, description) in errors {
        let responses = &mut operation.responses.responses;
        if responses.contains_key(status) {
            continue;
        }
        let response = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        responses.insert(status.to_string(), RefOr::T(response));
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
