//! What orchestrators and Prometheus read from every long-running role on its metrics
//! port: `/healthz` (alive), `/readyz` (ready for work) and `/metrics`; and a source's
//! `/metrics`, which the "source stopped producing" alert reads.

use crate::common;

use common::{count, free_port, http_get as get, wait_for, Lane};

/// The value of the series `series` (name and labels, as encoded) in a `/metrics` body.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn a_role_answers_liveness_readiness_and_metrics() {
    let lane = Lane::new("probes-role", 1);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut role = lane.spawn_enrich("enrich", &[("PULSE_METRICS__LISTEN", &listen)]);

    wait_for("enrich to be ready", || {
        matches!(get(port, "/readyz"), Some((200, _)))
    });
    let (status, body) = get(port, "/readyz").expect("readyz answers");
    assert_eq!(status, 200);
    let ready: serde_json::Value = serde_json::from_str(&body).expect("readyz is JSON");
    assert_eq!(ready["status"], "ready");
    let (status, body) = get(port, "/healthz").expect("healthz answers");
    assert_eq!(status, 200);
    let alive: serde_json::Value = serde_json::from_str(&body).expect("healthz is JSON");
    assert_eq!(alive["status"], "ok");
    let (status, metrics) = get(port, "/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    assert_eq!(
        sample(&metrics, "pulse_records_consumed_total{stage=\"enrich\"}"),
        Some(0.0),
        "{metrics}"
    );

    assert!(role.terminate().success(), "{}", role.logs());
}

#[test]
fn a_source_serves_what_it_published_and_moves_off_a_taken_metrics_port() {
    let lane = Lane::new("probes-source", 1);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut source = lane.spawn(
        "ingest",
        &["ingest", "synthetic", "--rate", "50"],
        &[("PULSE_METRICS__LISTEN", &listen)],
    );
    let produced = "pulse_records_produced_total{stage=\"ingest\"}";
    let mut seen = 0.0;
    wait_for("the source to publish 20 posts", || {
        seen = get(port, "/metrics")
            .and_then(|(_, metrics)| sample(&metrics, produced))
            .unwrap_or(0.0);
        seen >= 20.0
    });
    // An endless source stops on a signal as interrupted (130), having confirmed every post
    // it sent; its summary counts them, and so does the topic.
    let status = source.terminate();
    let logs = source.logs();
    assert_eq!(status.code(), Some(130), "{logs}");
    assert!(
        logs.contains(" 0 records sent were not confirmed"),
        "{logs}"
    );
    let summary: i64 = logs
        .split_once("ingested ")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {logs}"));
    let published = count(&lane.raw, 1);
    assert_eq!(published, summary, "{logs}");
    assert!(
        seen as i64 <= published,
        "metrics said {seen} posts, the topic holds {published}"
    );

    // Another process holds the metrics address: the source serves its metrics on a free
    // port, says where, and ingests all the same.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let taken = holder.local_addr().expect("its address").to_string();
    let output = lane
        .pulse(&["ingest", "synthetic", "--rate", "0", "--count", "10"])
        .env("PULSE_METRICS__LISTEN", &taken)
        .output()
        .expect("pulse ingest runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let moved = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["fields"]["message"] == "metrics port taken; serving on a free port")
        .unwrap_or_else(|| panic!("no word of the taken port in {stderr}"));
    assert_eq!(moved["fields"]["configured"], taken.as_str(), "{moved}");
    assert_ne!(moved["fields"]["address"], taken.as_str(), "{moved}");
    assert_eq!(count(&lane.raw, 1), published + 10);
}
