//! Acceptance: Ctrl-C during `pulse ingest` stops reading, confirms what was already sent,
//! and reports exactly what reached the raw topic.

use crate::common;

use std::process::Stdio;

use common::{count, wait_for, Lane};

/// The number in `text` right after `before` (e.g. "ingested 1600 posts" -> 1600).
fn number_after(text: &str, before: &str) -> i64 {
    text.split(before)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {before:?} in {text}"))
}

#[test]
fn an_interrupted_ingest_reports_exactly_what_reached_the_topic() {
    let lane = Lane::new("interrupt", 2);
    let mut ingest = common::Role {
        child: lane
            .pulse(&[
                "ingest",
                "synthetic",
                "--rate",
                "2000",
                "--count",
                "1000000",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(lane.dir.path().join("ingest.log")).expect("log"))
            .spawn()
            .expect("pulse ingest starts"),
        log: lane.dir.path().join("ingest.log"),
    };
    wait_for("some posts on the raw topic", || {
        count(&lane.raw, 2) >= 2_000
    });
    let pid = nix::unistd::Pid::from_raw(ingest.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal");
    let status = ingest.child.wait().expect("exit");
    let report = ingest.logs();
    assert_eq!(status.code(), Some(130), "{report}");
    let confirmed = number_after(&report, "ingested ");
    let unconfirmed = number_after(&report, "interrupted: ");
    assert!((2_000..1_000_000).contains(&confirmed), "{report}");
    assert_eq!(
        unconfirmed, 0,
        "a clean stop confirms everything it sent: {report}"
    );
    assert_eq!(
        count(&lane.raw, 2),
        confirmed,
        "the report matches the topic"
    );
}
