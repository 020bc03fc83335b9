//! A role outlives its output: `pulse up` whose stdout and stderr are closed pipes (`pulse
//! up | head`, a terminal closed after Ctrl-C) keeps working, and SIGTERM still drains and
//! stops it cleanly (exit 0) within its drain deadline.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::Lane;

#[test]
fn pulse_up_stops_on_sigterm_with_its_output_closed() {
    let lane = Lane::new("closed-output", 2);
    let mut child = lane
        .pulse(&["up"])
        .env(
            "PULSE_BATCH__KEYSPACE",
            pulse_testkit::keyspace("closed_output"),
        )
        .env("PULSE_BATCH__GROUP", format!("{}.batch", lane.group))
        .env(
            "PULSE_SPEED__KEY_PREFIX",
            pulse_testkit::key_prefix("closed"),
        )
        .env("PULSE_SPEED__GROUP", format!("{}.speed", lane.group))
        .env("PULSE_PIPELINE__DRAIN_TIMEOUT_MS", "10000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pulse up starts");

    // Stderr (the logs) is closed from the start; stdout is read until the role serves and
    // has printed its first status line, then closed, as `head` would on exit.
    drop(child.stderr.take());
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let mut serving = false;
    for line in lines.by_ref() {
        let line = line.expect("a line of output");
        serving |= line.starts_with("api: ");
        let status = line.starts_with("enrich: consumed");
        seen.push(line);
        if serving && status {
            break;
        }
    }
    assert!(serving, "pulse up ended before serving: {seen:?}");
    drop(lines);

    // Produce while the output is closed: the status line (every 5 s) and the logs now
    // meet closed pipes. The role keeps consuming: wait until it enriched what was sent.
    let path = lane.dir.path().join("posts.jsonl");
    let posts: String = (0..50)
        .map(|i| {
            format!(
                "{{\"id\":\"closed:{i}\",\"source\":\"file\",\"channel\":\"closed/c\",\
                 \"text\":\"post number {i} after the pipes closed\",\
                 \"created_at\":\"{}\"}}\n",
                Utc::now().to_rfc3339()
            )
        })
        .collect();
    std::fs::write(&path, posts).expect("posts file");
    lane.ingest_file(&path);
    common::wait_for("the posts enriched with the output closed", || {
        common::read_all(&lane.enriched, 2).len() == 50
    });
    // Past the next status tick, so that a status line met the closed stdout too (the
    // assertions below hold either way; this makes the run exercise that write).
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "pulse up died with its output closed: {:?}",
        child.try_wait()
    );

    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal sent");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pulse up did not stop within 30 s of SIGTERM with its output closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "pulse up exited with {status}");
}
