//! `POST /api/v1/analyze`: texts enriched by the shipped model, in order; bad bodies refused.

use pulse_core::config::ApiConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::harness::*;

/// Posts `body` to the route as JSON.
async fn analyze(api: &Api, body: Value) -> (StatusCode, Value) {
    api.post(
        "/api/v1/analyze",
        body.to_string().into(),
        "application/json",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_enriches_texts_in_order_and_refuses_bad_bodies() {
    let limits = ApiConfig {
        max_body_bytes: 4_096,
        max_analyze_texts: 3,
        ..ApiConfig::default()
    };
    let api = start("analyze", shipped_model(), limits).await;
    let body = json!({"texts": [
        "I love this, what a wonderful day!",
        "",
        "This is awful, I hate it so much.",
    ]});
    let (status, answer) = analyze(&api, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["model"], "pulse-minilm-multitask@2.0.0");
    let enrichments = answer["enrichments"].as_array().expect("enrichments");
    assert_eq!(enrichments.len(), 3);
    assert_eq!(enrichments[0]["sentiment"]["label"], "positive");
    assert_eq!(enrichments[1]["sentiment"], Value::Null, "nothing to read");
    assert_eq!(enrichments[2]["sentiment"]["label"], "negative");
    assert_eq!(
        enrichments[0]["emotions"].as_object().map(|e| e.len()),
        Some(7)
    );

    // Each text's language: detected, or the request's tag for every text. A model scores
    // only the languages it reads, so a German text gets keywords and no English scores.
    let german = "Die neue Bahnstrecke zwischen Berlin und Hamburg ist seit Montag wegen eines \
                  Unwetters gesperrt, und niemand kann sagen, wann der Zug wieder fährt.";
    let english = "What a fantastic day at the beach with all of my friends, I am so happy!";
    for (lang, expected) in [(None, ["de", "en"]), (Some("de-AT"), ["de", "de"])] {
        let body = json!({"texts": [german, english], "lang": lang});
        let (status, answer) = analyze(&api, body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let enrichments = answer["enrichments"].as_array().expect("enrichments");
        let langs: Vec<&str> = enrichments
            .iter()
            .filter_map(|e| e["lang"].as_str())
            .collect();
        assert_eq!(langs, expected, "{answer}");
        for (enrichment, lang) in enrichments.iter().zip(expected) {
            assert_eq!(
                enrichment["sentiment"].is_null(),
                lang == "de",
                "{enrichment}"
            );
            assert!(!enrichment["keywords"]
                .as_array()
                .expect("keywords")
                .is_empty());
        }
    }
    assert_error(
        analyze(&api, json!({"texts": ["x"], "lang": 7})).await,
        StatusCode::BAD_REQUEST,
        "bad_body",
    );

    // The same texts through `Enricher::enrich` directly (what `pulse analyze` calls).
    let direct = shipped_model()
        .enrich(&["I love this, what a wonderful day!"])
        .expect("enriched");
    assert_eq!(
        enrichments[0]["keywords"],
        serde_json::to_value(&direct[0].keywords).unwrap()
    );

    let (status, empty) = analyze(&api, json!({"texts": []})).await;
    assert_eq!(
        (status, empty["enrichments"].clone()),
        (StatusCode::OK, json!([]))
    );

    let too_many = json!({"texts": ["a", "b", "c", "d"]});
    let detail = assert_error(
        analyze(&api, too_many).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert!(detail.contains("at most 3 texts"), "{detail}");
    let oversized = json!({"texts": ["x".repeat(5_000)]});
    assert_error(
        analyze(&api, oversized).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_error(
        api.post(
            "/api/v1/analyze",
            "{\"texts\": [".into(),
            "application/json",
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_body",
    );
    assert_error(
        analyze(&api, json!({"text": "x"})).await,
        StatusCode::BAD_REQUEST,
        "bad_body",
    );
    assert_error(
        api.post(
            "/api/v1/analyze",
            json!({"texts": ["x"]}).to_string().into(),
            "text/plain",
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
}
