//! The live dashboard in a real browser: `pulse up` runs on the test's own topics,
//! keyspace and Redis prefix over six hours of backfilled posts (recomputed into the batch
//! layer) while a generator keeps posting; headless Chromium from Debian, driven by
//! playwright-core (dashboards/live/test/browser.mjs), loads `/` and checks that every
//! KPI and chart has data, the history has batch and speed parts, and the live stream
//! grows. The screenshot is saved under the target directory.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{caught_up, read_all, wait_for, Lane, Role};

const CHANNEL: &str = "dashboard/tech";
const BACKFILL: i64 = 400;

#[test]
fn the_dashboard_shows_live_and_historical_figures_in_chromium() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lane = Lane::new("dashboard", 2);
    let keyspace = pulse_testkit::keyspace("dashboard");
    let prefix = pulse_testkit::key_prefix("dashboard");
    let batch_group = format!("{}.batch", lane.group);
    let speed_group = format!("{}.speed", lane.group);
    let dashboard_dir = repo.join("dashboards/live");
    let env = [
        ("PULSE_BATCH__KEYSPACE", keyspace.as_str()),
        ("PULSE_BATCH__GROUP", batch_group.as_str()),
        ("PULSE_SPEED__KEY_PREFIX", prefix.as_str()),
        ("PULSE_SPEED__GROUP", speed_group.as_str()),
        (
            "PULSE_API__DASHBOARD_DIR",
            dashboard_dir.to_str().expect("utf-8 path"),
        ),
    ];
    let run = |args: &[&str]| {
        let output = lane.pulse(args).envs(env).output().expect("pulse runs");
        assert!(
            output.status.success(),
            "pulse {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };

    run(&[
        "ingest",
        "synthetic",
        "--count",
        &BACKFILL.to_string(),
        "--rate",
        "0",
        "--since",
        "now-6h",
        "--seed",
        "7",
        "--channels",
        CHANNEL,
    ]);
    let stdout = lane.dir.path().join("up.out");
    let log = lane.dir.path().join("up.log");
    let mut up = Role {
        child: lane
            .pulse(&["up"])
            .envs(env)
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("pulse up starts"),
        log,
    };
    let mut api = None;
    wait_for("pulse up to serve its api", || {
        api = std::fs::read_to_string(&stdout).ok().and_then(|out| {
            out.lines()
                .find_map(|l| l.strip_prefix("api: "))
                .and_then(|url| url.strip_suffix("/api/v1"))
                .map(str::to_string)
        });
        api.is_some()
    });
    let api = api.expect("api address");

    // The backfill enriched and stored, then its past hours recomputed into rollups.
    wait_for("the backfill enriched", || {
        read_all(&lane.enriched, 2).len() as i64 == BACKFILL
    });
    wait_for("the backfill stored in the batch layer", || {
        caught_up(&batch_group, &lane.enriched, 2)
    });
    run(&["batch", "recompute", "--to", "now"]);

    let mut generator = Role {
        child: lane
            .pulse(&[
                "ingest",
                "synthetic",
                "--rate",
                "4",
                "--seed",
                "8",
                "--channels",
                CHANNEL,
            ])
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the generator starts"),
        log: lane.dir.path().join("generator.log"),
    };

    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let browser = Command::new("node")
        .arg(dashboard_dir.join("test/browser.mjs"))
        .args(["--url", &format!("{api}/"), "--channel", CHANNEL])
        .arg("--screenshot")
        .arg(&screenshot)
        .output()
        .expect("node runs the browser test (installed by scripts/setup)");
    let report = String::from_utf8_lossy(&browser.stdout);
    let checks = String::from_utf8_lossy(&browser.stderr);
    println!("{checks}{report}");
    assert!(
        browser.status.success(),
        "the browser test failed ({}): {checks}\npulse up log: {}",
        browser.status,
        up.logs()
    );
    let summary: serde_json::Value = serde_json::from_str(report.trim()).expect("a JSON summary");
    assert_eq!(summary["ok"], true);
    assert!(
        summary["newPosts"].as_u64().is_some_and(|n| n > 0),
        "{summary}"
    );
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 10_000),
        "a screenshot at {}",
        screenshot.display()
    );
    println!("screenshot: {}", screenshot.display());

    generator.kill();
    assert!(up.terminate().success(), "log: {}", up.logs());
}
