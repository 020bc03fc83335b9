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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{TimeZone, Utc};
    use pulse_core::{Granularity, Tally, TermCount};
    use serde_json::Value;

    use super::*;
    use pulse_speed::{MinuteStats, WindowStats};

    use crate::serving::{merge, LayerBucket, Layers};

    /// Checks that `schema` (resolving references in `doc`) lists every field of `answer`
    /// as a required property and no field `answer` lacks, recursively into objects and
    /// arrays of objects; maps (`additionalProperties`) are checked by their values' type.
    fn assert_describes(doc: &Value, schema: &Value, answer: &Value, at: &str) {
        let schema = match schema["$ref"].as_str() {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/schemas/");
                &doc["components"]["schemas"][name]
            }
            None => schema,
        };
        let types: Vec<&str> = match &schema["type"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let kind = match answer {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_f64() => "number",
            Value::Number(_) => "integer",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let fits = types.contains(&kind) || (kind == "integer" && types.contains(&"number"));
        assert!(fits, "{at}: {kind} is not among {types:?} ({schema})");
        if let Some(allowed) = schema["enum"].as_array() {
            assert!(
                allowed.contains(answer),
                "{at}: {answer} not in {allowed:?}"
            );
        }
        match answer {
            Value::Object(fields) if schema.get("properties").is_some() => {
                let properties = schema["properties"].as_object().unwrap();
                let required: Vec<&str> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut described: Vec<&String> = properties.keys().collect();
                let mut answered: Vec<&String> = fields.keys().collect();
                described.sort();
                answered.sort();
                assert_eq!(described, answered, "{at}: properties against fields");
                for (name, value) in fields {
                    assert!(
                        required.contains(&name.as_str()),
                        "{at}.{name} is not required"
                    );
                    // A reference is described by the schema it names.
                    assert!(
                        properties[name].get("description").is_some()
                            || properties[name].get("$ref").is_some(),
                        "{at}.{name} has no description"
                    );
                    assert_describes(doc, &properties[name], value, &format!("{at}.{name}"));
                }
            }
            Value::Object(entries) => {
                for (key, value) in entries {
                    let values = &schema["additionalProperties"];
                    assert_describes(doc, values, value, &format!("{at}[{key}]"));
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    assert_describes(doc, &schema["items"], item, &format!("{at}[{index}]"));
                }
            }
            _ => {}
        }
    }

    /// The schema of `GET path`'s 200 answer.
    fn answer_schema<'a>(doc: &'a Value, path: &str) -> &'a Value {
        &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    }

    #[test]
    fn the_history_answer_is_described_field_by_field() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schema = answer_schema(&doc, "/api/v1/history");
        assert_eq!(schema["$ref"], "#/components/schemas/History");

        let at = |hour| Utc.with_ymd_and_hms(2026, 3, 2, hour, 0, 0).unwrap();
        let layers = Layers {
            watermark: Some(at(8)),
            now: at(12),
            speed_horizon: at(10),
        };
        let tally = Tally {
            posts: 2,
            positive: 1,
            negative: 1,
            scored: 2,
            score_micros: 250_000,
            emotion_micros: [("joy".to_string(), 900_000)].into(),
            languages: [("en".to_string(), 2)].into(),
            ..Tally::default()
        };
        let term = |term: &str| TermCount {
            term: term.into(),
            count: 2,
        };
        let figures = LayerBucket {
            tally,
            keywords: vec![term("rust")],
            entities: vec![term("organization:Mozilla")],
        };
        let starts = Granularity::Hour.buckets(at(7), at(14));
        let batch = BTreeMap::from([(at(7), figures.clone())]);
        let speed = BTreeMap::from([(at(11), figures)]);
        let history = merge(
            "reddit/rust",
            Granularity::Hour,
            &starts,
            &layers,
            batch,
            speed,
        );
        let answer = serde_json::to_value(&history).unwrap();
        // Every source, a null and a number mean score, both kinds of bucket content.
        let sources: Vec<&Value> = answer["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| &b["source"])
            .collect();
        for source in ["batch", "speed", "none"] {
            assert!(sources.contains(&&Value::from(source)), "{sources:?}");
        }
        assert_describes(&doc, schema, &answer, "history");

        let mut empty = answer.clone();
        empty["watermark"] = Value::Null;
        assert_describes(&doc, schema, &empty, "history");
    }

    #[test]
    fn the_live_answer_is_described_field_by_field() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schema = answer_schema(&doc, "/api/v1/live");
        assert_eq!(schema["$ref"], "#/components/schemas/WindowStats");
        let minute = |minute, count| MinuteStats {
            minute,
            count,
            labels: [("positive".to_string(), count)].into(),
            scored: count,
            score_micros: 600_000,
            emotion_micros: [("joy".to_string(), -5)].into(),
            languages: [("und".to_string(), count)].into(),
        };
        let term = |term: &str| TermCount {
            term: term.into(),
            count: 3,
        };
        let mut window = WindowStats {
            channel: "reddit/rust".into(),
            from_minute: 29_000_000,
            to_minute: 29_000_002,
            totals: minute(29_000_000, 3),
            mean_score: Some(0.2),
            emotion_means: [("joy".to_string(), 0.25)].into(),
            keywords: vec![term("rust")],
            entities: vec![term("person:Ferris")],
            series: vec![minute(29_000_000, 3), minute(29_000_001, 0)],
        };
        let answer = serde_json::to_value(&window).unwrap();
        assert_describes(&doc, schema, &answer, "live");
        window.mean_score = None;
        let answer = serde_json::to_value(&window).unwrap();
        assert_describes(&doc, schema, &answer, "live");
    }
}
