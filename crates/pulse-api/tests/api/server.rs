//! What every route shares: the time budget, a store that is down, rate limits and CORS,
//! request metrics, the dashboard at the root, and bounds on slow, idle and surplus clients.

use std::path::PathBuf;
use std::sync::Arc;

use pulse_api::ApiState;
use pulse_core::config::{ApiConfig, SpeedConfig};
use pulse_speed::SpeedLayer;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_its_time_budget_is_stopped_with_a_json_error() {
    let config = ApiConfig {
        request_timeout_ms: 1,
        ..ApiConfig::default()
    };
    let api = start("budget", keywords_only(), config).await;
    // 80 days by hours read 1,920 buckets of rollups: far over a millisecond.
    let detail = assert_error(
        api.get(&format!(
            "/api/v1/history?channel={ALPHA}&from=now-80d&granularity=hour"
        ))
        .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
    );
    assert!(detail.contains("api.request_timeout_ms"), "{detail}");
    // Probes are outside the budget of /api/v1.
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_is_a_503_naming_it() {
    let api = start("down", keywords_only(), ApiConfig::default()).await;
    // A second server over the same batch layer, with a Redis nobody listens on.
    let nowhere = SpeedConfig {
        redis_url: "redis://127.0.0.1:1".into(),
        ..pulse_testkit::speed_config("down")
    };
    let unreachable = SpeedLayer::connect(&nowhere).expect("lazy client");
    let state = ApiState::new(
        unreachable.clone(),
        api.batch.clone(),
        Arc::new(keywords_only()),
        ApiConfig::default(),
        publisher(&api.raw_topic),
        CancellationToken::new(),
    );
    let down = Api {
        base: serve(state).await,
        client: reqwest::Client::new(),
        alpha: Vec::new(),
        beta: Vec::new(),
        batch_config: api.batch_config.clone(),
        speed: unreachable,
        batch: api.batch.clone(),
        raw_topic: api.raw_topic.clone(),
    };
    let detail = assert_error(
        down.get("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert!(detail.contains("redis"), "{detail}");
    assert_error(
        down.get(&format!("/api/v1/live?channel={ALPHA}")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert_eq!(
        down.get("/healthz").await.0,
        StatusCode::OK,
        "alive while a store is down"
    );
    assert_eq!(api.get("/readyz").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_their_rate_get_429_and_cors_allows_configured_origins() {
    let config = ApiConfig {
        rate_limit_per_second: 1,
        rate_limit_burst: 3,
        cors_origins: vec!["https://dash.example".into()],
        ..ApiConfig::default()
    };
    let api = start("limits", keywords_only(), config).await;
    let channels = |origin: &'static str| {
        api.client
            .get(format!("{}/api/v1/channels", api.base))
            .header("origin", origin)
            .send()
    };
    for _ in 0..3 {
        let response = channels("https://dash.example").await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "https://dash.example"
        );
    }
    let refused = channels("https://elsewhere.example").await.expect("sent");
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the burst of 3 is spent"
    );
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "an origin not configured gets no CORS grant"
    );
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"], "rate_limited");
    // Probes are not limited.
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(api.get("/readyz").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_route_template_and_status() {
    let api = start("metrics", keywords_only(), ApiConfig::default()).await;
    for _ in 0..3 {
        assert_eq!(
            api.get(&format!("/api/v1/live?channel={ALPHA}")).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        api.get("/api/v1/live?window=5m").await.0,
        StatusCode::BAD_REQUEST
    );
    for id in ["a", "b"] {
        assert_eq!(
            api.get(&format!("/api/v1/posts/{id}")).await.0,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(api.get("/nowhere").await.0, StatusCode::NOT_FOUND);

    let response = api
        .client
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("text");
    for line in [
        r#"pulse_http_requests_total{route="/api/v1/live",method="GET",status="200"} 3"#,
        r#"pulse_http_requests_total{route="/api/v1/live",method="GET",status="400"} 1"#,
        // Ids in paths do not make series: both unknown posts count under the template.
        r#"pulse_http_requests_total{route="/api/v1/posts/{id}",method="GET",status="404"} 2"#,
        r#"pulse_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        r#"pulse_http_request_seconds_count{route="/api/v1/live"} 4"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_at_the_root() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = ApiConfig {
        dashboard_dir: repo.join("dashboards/live"),
        ..ApiConfig::default()
    };
    let api = start("dashboard", keywords_only(), config).await;
    for (path, content_type, contains) in [
        ("/", "text/html", "<title>Pulse"),
        ("/app.js", "text/javascript", "api/v1"),
        ("/style.css", "text/css", ".post"),
        ("/vendor/echarts.min.js", "text/javascript", "echarts"),
    ] {
        let response = api
            .client
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .expect("sent");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{path} (is ECharts installed? scripts/setup)"
        );
        let served = response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_string();
        assert!(served.starts_with(content_type), "{path}: {served}");
        let body = response.text().await.expect("text");
        assert!(body.contains(contains), "{path}");
    }
    // The rest of the directory is not served.
    for path in [
        "/package.json",
        "/test/browser.mjs",
        "/node_modules/echarts/package.json",
    ] {
        assert_error(api.get(path).await, StatusCode::NOT_FOUND, "not_found");
    }

    let elsewhere = tempfile_dir();
    let missing = start(
        "dashboard_missing",
        keywords_only(),
        ApiConfig {
            dashboard_dir: elsewhere.clone(),
            ..ApiConfig::default()
        },
    )
    .await;
    let detail = assert_error(missing.get("/").await, StatusCode::NOT_FOUND, "not_found");
    assert!(
        detail.contains("the dashboard is not installed"),
        "{detail}"
    );
    assert!(detail.contains("index.html"), "{detail}");
}

/// A directory that does not exist (no dashboard there).
fn tempfile_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "pulse-no-dashboard-{}",
        pulse_testkit::unique("dir")
    ))
}

/// Reads `socket` until the server closes it (EOF or reset); false if still open after
/// `within`.
async fn closed_within(socket: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(within, async {
        while let Ok(n) = socket.read(&mut buffer).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_surplus_clients_are_bounded() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let config = ApiConfig {
        header_timeout_ms: 1_000,
        max_connections: 3,
        max_streams: 1,
        ..ApiConfig::default()
    };
    let api = start("limits", keywords_only(), config).await;
    let address = api.base.trim_start_matches("http://").to_string();
    let ten_seconds = std::time::Duration::from_secs(10);

    // Headers that never end (slowloris): the connection is closed.
    let mut slow = TcpStream::connect(&address).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: pulse\r\nX-Slow: 1\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut slow, ten_seconds).await,
        "slow headers kept open"
    );

    // A kept-alive connection left idle after its request is closed too.
    let mut idle = TcpStream::connect(&address).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: pulse\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut idle, ten_seconds).await,
        "idle connection kept open"
    );

    // Three connections fill the server: a fourth client is answered only once one of
    // them has been closed for its silence.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(&address).await.expect("connect"));
    }
    // A new client, so no pooled connection is reused.
    let answer = reqwest::get(format!("{}/healthz", api.base))
        .await
        .expect("answered");
    assert_eq!(answer.status(), StatusCode::OK);
    let mut closed = 0;
    for socket in &mut silent {
        if closed_within(socket, std::time::Duration::from_millis(1)).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 1,
        "the fourth client was served while three connections were open"
    );

    // One event stream at most: the second gets 503 while the first is open.
    let first = api
        .client
        .get(format!("{}/api/v1/stream", api.base))
        .send()
        .await
        .expect("stream opens");
    assert_eq!(first.status(), StatusCode::OK);
    let detail = assert_error(
        api.get("/api/v1/stream").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert!(detail.contains("api.max_streams"), "{detail}");
    drop(first);
}
