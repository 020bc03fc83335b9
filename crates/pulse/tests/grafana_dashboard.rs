//! The Grafana dashboard (dashboards/grafana/pulse.json) queries only metrics Pulse
//! registers, with labels they carry, and every panel reads the dashboard's data source.

use std::collections::BTreeSet;
use std::path::PathBuf;

use prometheus_client::registry::Registry;
use pulse_api::ApiMetrics;
use pulse_pipeline::PipelineMetrics;
use serde_json::Value;

fn dashboard() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../dashboards/grafana/pulse.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every metric family a Pulse process registers, by the name in its `# TYPE` line. Families
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
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("pulse_"));
            for series in names {
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
