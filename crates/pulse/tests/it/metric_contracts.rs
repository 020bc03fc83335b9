//! What reads Pulse's metrics from outside uses only metrics Pulse registers: the Grafana
//! dashboard (dashboards/grafana/pulse.json, whose panels also all read its data source) and
//! the Prometheus alert rules (deploy/prometheus/rules).

use std::collections::BTreeSet;
use std::path::PathBuf;

use prometheus_client::registry::Registry;
use pulse_api::ApiMetrics;
use pulse_ingest::live::SourceMetrics;
use pulse_pipeline::PipelineMetrics;
use serde_json::Value;

fn repository_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dashboard() -> Value {
    let text = repository_file("dashboards/grafana/pulse.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("pulse.json: {e}"))
}

/// The metric names (`pulse_...` words) in a query or a rule file.
fn metric_names(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("pulse_"))
}

/// Every metric family a Pulse process registers (its stages, its API, its live sources), by the name in its `# TYPE` line. Families
/// without series are not encoded, so each gets one, as a running process would.
fn registered() -> BTreeSet<String> {
    let mut registry = Registry::default();
    let pipeline = PipelineMetrics::register(&mut registry);
    let stage = pipeline.for_stage("enrich");
    stage.dead_letter(pulse_core::DeadLetterKind::NotJson);
    pipeline
        .lag
        .get_or_create(&vec![
            ("topic".to_string(), "pulse.posts.raw".to_string()),
            ("partition".to_string(), "0".to_string()),
        ])
        .set(1);
    ApiMetrics::register(&mut registry).record("/api/v1/live", "GET", 200, 0.001);
    let source = SourceMetrics::register(&mut registry, "reddit", "default");
    source.request("200");
    source.event("post");
    source.skip("deleted");
    source.set_rate_limit_remaining(99.0);
    source.set_lag_seconds(3);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The family a series name belongs to (`x_total`, `x_bucket`, `x_count`, `x_sum` -> `x`).
fn family(series: &str) -> &str {
    ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| series.strip_suffix(suffix))
        .unwrap_or(series)
}

#[test]
fn every_panel_queries_registered_metrics() {
    let dashboard = dashboard();
    let known = registered();
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "duplicate id in {panel}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("an expr");
            for series in metric_names(expr) {
                let name = family(series);
                assert!(
                    known.contains(name),
                    "panel {:?} queries {series}, which no Pulse process registers ({known:?})",
                    panel["title"]
                );
                used.insert(name.to_string());
            }
        }
    }
    // Every registered family is on the dashboard.
    assert_eq!(used, known);
}

#[test]
fn alert_rules_query_registered_metrics() {
    let known = registered();
    let rules = repository_file("deploy/prometheus/rules/pulse.rules.yml");
    let used: BTreeSet<&str> = metric_names(&rules).map(family).collect();
    for name in &used {
        assert!(
            known.contains(*name),
            "an alert rule queries {name}, which no Pulse process registers ({known:?})"
        );
    }
    // The families the rules are about: lag, dead letters, retries, refusals, transactions,
    // API errors and latency, the batch watermark, and what sources produce.
    for name in [
        "pulse_consumer_lag",
        "pulse_records_dead_lettered",
        "pulse_retries",
        "pulse_records_refused",
        "pulse_transactions",
        "pulse_http_requests",
        "pulse_http_request_seconds",
        "pulse_batch_watermark_timestamp_seconds",
        "pulse_records_produced",
    ] {
        assert!(used.contains(name), "no alert rule reads {name}");
    }
}
