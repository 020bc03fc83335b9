//! `/api/v1/admin/jobs`: recompute and replay jobs run in the background and report.

use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use prometheus_client::registry::Registry;
use pulse_api::ApiState;
use pulse_core::config::ApiConfig;
use pulse_core::{EnrichedPost, Granularity};
use pulse_pipeline::PipelineMetrics;
use pulse_testkit::kafka_config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recompute_without_an_end_leaves_hours_still_receiving_posts_open() {
    let config = ApiConfig {
        tokens: vec!["admin-token".into()],
        ..ApiConfig::default()
    };
    let api = start("recompute_default", keywords_only(), config).await;
    let before = pulse_batch::settled_end(Utc::now());
    let (status, started) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/admin/recompute",
            Some(json!({})),
            Some("admin-token"),
        )
        .await;
    let after = pulse_batch::settled_end(Utc::now());
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let job = finished_job(&api, started["id"].as_u64().expect("an id"), "admin-token").await;
    assert_eq!(job["state"], "done", "{job}");
    let watermark: DateTime<Utc> =
        serde_json::from_value(job["report"]["watermark"].clone()).expect("a watermark");
    // The end the CLI takes too: the last hour that ended over 5 minutes ago.
    assert!(watermark == before || watermark == after, "{job}");
    assert!(watermark <= Granularity::Hour.floor(Utc::now()));
    assert!(
        Utc::now() - watermark > pulse_batch::RECOMPUTE_SETTLE,
        "{job}"
    );
    // Only the fixture's posts before the watermark are rolled up; the rest wait.
    let rolled = api
        .alpha
        .iter()
        .chain(&api.beta)
        .filter(|p| p.post.created_at < watermark)
        .count();
    assert_eq!(job["report"]["posts"], rolled, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recompute_job_runs_in_the_background_and_reports_its_outcome() {
    let config = ApiConfig {
        tokens: vec!["admin-token".into()],
        ..ApiConfig::default()
    };
    let api = start("admin", keywords_only(), config).await;
    let call = |method, path: &'static str, body, token| api.call(method, path, body, token);
    let post_method = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let unauthorized = StatusCode::UNAUTHORIZED;
    assert_error(
        call(
            post_method.clone(),
            "/api/v1/admin/recompute",
            Some(json!({})),
            None,
        )
        .await,
        unauthorized,
        "unauthorized",
    );
    assert_error(
        call(get.clone(), "/api/v1/admin/jobs/1", None, Some("wrong")).await,
        unauthorized,
        "unauthorized",
    );
    assert_error(
        call(
            post_method.clone(),
            "/api/v1/admin/recompute",
            Some(json!({"from": "last week"})),
            Some("admin-token"),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_parameter",
    );

    // Up to an explicit hour, so that the expected count does not move with the clock.
    let hour = Granularity::Hour.floor(Utc::now());
    // Three posts surely before the hour, next to the fixture's recent ones.
    let older: Vec<EnrichedPost> = (0..3)
        .map(|i| post("api/epsilon", i, hour - Duration::hours(2)))
        .collect();
    write(&api.batch, &older).await;
    let expected = api
        .alpha
        .iter()
        .chain(&api.beta)
        .chain(&older)
        .filter(|p| p.post.created_at < hour)
        .count();
    assert!(expected >= 3);
    let body = json!({"to": hour.to_rfc3339_opts(SecondsFormat::Secs, true)});
    let (status, started) = call(
        post_method.clone(),
        "/api/v1/admin/recompute",
        Some(body),
        Some("admin-token"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["kind"], "recompute");
    let id = started["id"].as_u64().expect("an id");
    let job = finished_job(&api, id, "admin-token").await;
    assert_eq!(job["state"], "done", "{job}");
    // Every post of the test's keyspace before the hour is read.
    assert_eq!(job["report"]["posts"], expected, "{job}");
    assert_eq!(job["progress"]["days_done"], job["progress"]["days_total"]);
    assert_eq!(job["request"]["to"], json!(hour));
    let watermark: DateTime<Utc> =
        serde_json::from_value(job["report"]["watermark"].clone()).expect("a watermark");
    assert_eq!(watermark, hour);
    assert!(job["finished_at"].is_string());
    // The watermark gauge (what the stale-rollups alert reads) follows within its refresh.
    let gauge = format!(
        "pulse_batch_watermark_timestamp_seconds {:?}",
        hour.timestamp() as f64
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let metrics = api
            .client
            .get(format!("{}/metrics", api.base))
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("text");
        if metrics.lines().any(|line| line == gauge) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{gauge} not in\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    assert_error(
        call(
            get.clone(),
            "/api/v1/admin/jobs/999",
            None,
            Some("admin-token"),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        call(get, "/api/v1/admin/jobs/x", None, Some("admin-token")).await,
        StatusCode::BAD_REQUEST,
        "bad_parameter",
    );
}

/// Polls a job until it is no longer running.
async fn finished_job(api: &Api, id: u64, token: &str) -> Value {
    let path = format!("/api/v1/admin/jobs/{id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, job) = api
            .call(reqwest::Method::GET, &path, None, Some(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if job["state"] != "running" {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job still running: {job}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_job_reads_a_topic_range_into_a_stage() {
    let api = start("replay", keywords_only(), ApiConfig::default()).await;
    let enriched = format!("test.api.{}.enriched", pulse_testkit::unique("replay"));
    let dlq = format!("{enriched}.dlq");
    pulse_kafka::admin::create_topics(&kafka_config(1), &[&enriched, &dlq])
        .await
        .expect("topics created (is the stack running? scripts/stack start)");
    let channel = "api/replayed";
    let now = Utc::now();
    let producer = pulse_kafka::create_producer(&kafka_config(1)).expect("producer");
    for i in 0..6 {
        let payload =
            serde_json::to_vec(&post(channel, i, now - Duration::seconds(i as i64))).expect("json");
        let key = format!("{channel}:{i}");
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&enriched)
                    .key(&key)
                    .payload(&payload),
                std::time::Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produced");
    }

    // A server that can replay into the speed layer only (no batch layer given).
    let mut kafka = kafka_config(1);
    kafka.topics.enriched = enriched.clone();
    kafka.topics.dlq = dlq.clone();
    let pulse = pulse_core::PulseConfig {
        kafka,
        ..pulse_core::PulseConfig::default()
    };
    let replayer = pulse_pipeline::replay::Replayer::new(
        &pulse,
        PipelineMetrics::register(&mut Registry::default()),
        pulse_kafka::create_producer(&pulse.kafka).expect("producer"),
    )
    .with_speed(api.speed.clone());
    let state = ApiState::new(
        api.speed.clone(),
        api.batch.clone(),
        Arc::new(keywords_only()),
        ApiConfig {
            tokens: vec!["admin-token".into()],
            ..ApiConfig::default()
        },
        publisher(&api.raw_topic),
        CancellationToken::new(),
    )
    .with_replayer(replayer);
    let api = Api {
        base: serve(state).await,
        ..api
    };
    let replay = |body: Value, token: Option<&'static str>| {
        api.call(
            reqwest::Method::POST,
            "/api/v1/admin/replay",
            Some(body),
            token,
        )
    };
    let token = Some("admin-token");

    assert_error(
        replay(json!({"into": "sink-speed", "from_offset": 0}), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    for bad in [
        json!({"into": "nowhere", "from_offset": 0}),
        json!({"into": "sink-speed"}),
        json!({"into": "sink-speed", "from_offset": 0, "from_time": "now-1h"}),
        json!({"into": "sink-speed", "from_time": "yesterday"}),
        json!({"into": "sink-speed", "from_time": "now", "to_time": "now-1h"}),
        json!({"into": "sink-speed", "from_offset": {"zero": 1}}),
    ] {
        assert_error(
            replay(bad, token).await,
            StatusCode::BAD_REQUEST,
            "bad_parameter",
        );
    }
    assert_error(
        replay(
            json!({"into": "sink-speed", "from_offset": 0, "extra": true}),
            token,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_body",
    );
    let detail = assert_error(
        replay(
            json!({"into": "sink-speed", "topic": "test.api.no-such-topic", "from_offset": 0}),
            token,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert!(detail.contains("does not exist"), "{detail}");
    let detail = assert_error(
        replay(json!({"into": "sink-batch", "from_offset": 0}), token).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert!(detail.contains("batch layer"), "{detail}");

    // The last four records of the topic, then all of it: each post counted once.
    let (status, job) = replay(json!({"into": "sink-speed", "from_offset": -4}), token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["kind"], "replay");
    assert_eq!(job["request"]["topic"], enriched.as_str());
    assert_eq!(
        job["request"]["spans"],
        json!([{"partition": 0, "from": 2, "to": 6}])
    );
    let done = finished_job(&api, job["id"].as_u64().expect("id"), "admin-token").await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["report"]["replayed"], 4);
    assert_eq!(done["progress"]["replayed"], 4);
    let live = format!("/api/v1/live?channel={channel}");
    assert_eq!(api.get(&live).await.1["totals"]["count"], 4);

    // Per partition, as a stopped job's resume_at: only offset 5 on.
    let (status, job) = replay(
        json!({"into": "sink-speed", "from_offset": {"0": 5}}),
        token,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(
        job["request"]["spans"],
        json!([{"partition": 0, "from": 5, "to": 6}])
    );
    let done = finished_job(&api, job["id"].as_u64().expect("id"), "admin-token").await;
    assert_eq!(done["report"]["replayed"], 1, "{done}");
    assert_eq!(done["report"]["resume_at"], json!({"0": 6}));
    assert_eq!(api.get(&live).await.1["totals"]["count"], 4);

    let (status, job) = replay(json!({"into": "speed", "from_time": "now-1d"}), token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let done = finished_job(&api, job["id"].as_u64().expect("id"), "admin-token").await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["report"]["replayed"], 6);
    assert_eq!(done["report"]["dead_lettered"], 0);
    assert_eq!(api.get(&live).await.1["totals"]["count"], 6);
}
