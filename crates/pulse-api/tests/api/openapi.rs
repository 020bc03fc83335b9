//! `/api/v1/openapi.json`: every route with its parameters.

use pulse_core::config::ApiConfig;
use reqwest::StatusCode;
use serde_json::json;

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_with_its_parameters() {
    let api = start("openapi", keywords_only(), ApiConfig::default()).await;
    let (status, document) = api.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{document}"
    );
    let paths: Vec<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        paths,
        [
            "/api/v1/admin/jobs/{id}",
            "/api/v1/admin/recompute",
            "/api/v1/admin/replay",
            "/api/v1/analyze",
            "/api/v1/channels",
            "/api/v1/history",
            "/api/v1/live",
            "/api/v1/posts",
            "/api/v1/posts/{id}",
            "/api/v1/stream",
            "/healthz",
            "/readyz",
        ]
    );
    let live = &document["paths"]["/api/v1/live"]["get"];
    let parameters: Vec<(&str, bool)> = live["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["required"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        parameters,
        [
            ("channel", true),
            ("window", false),
            ("top", false),
            ("series", false)
        ]
    );
    assert_eq!(
        live["parameters"][1]["schema"]["enum"],
        json!(["5m", "1h", "24h"])
    );
    assert!(document["paths"]["/api/v1/posts"]["post"]["security"].is_array());
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Every route the document names answers (none is a 404 of the fallback).
    for path in [
        "/api/v1/channels",
        "/api/v1/openapi.json",
        "/healthz",
        "/readyz",
    ] {
        assert_eq!(api.get(path).await.0, StatusCode::OK, "{path}");
    }
}
