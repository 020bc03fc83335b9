//! Every command is pipe-safe: with its standard output already closed by its reader (`pulse
//! batch rollups ... | head -n 1` once `head` has its line), a command that has something to
//! print stops quietly with the status a shell gives a process ended by SIGPIPE (141): no
//! panic, no error message, nothing left running. The long-running roles are
//! `closed_output`'s.

use std::io::Write;
use std::process::Stdio;

use crate::common::Lane;

/// 128 + SIGPIPE.
const CLOSED_STDOUT: i32 = 141;

#[test]
fn every_command_stops_quietly_on_a_closed_stdout() {
    let lane = Lane::new("closed-stdout", 1);
    let keyspace = pulse_testkit::keyspace("closed_stdout");
    let prefix = pulse_testkit::key_prefix("closed-stdout");
    let posts = lane.dir.path().join("posts.jsonl");
    std::fs::write(
        &posts,
        "{\"text\": \"a first post about rust\"}\n{\"text\": \"a second one\"}\n",
    )
    .expect("posts written");
    let posts = posts.to_str().expect("utf-8 path");
    let env = [
        ("PULSE_BATCH__KEYSPACE", keyspace.as_str()),
        ("PULSE_SPEED__KEY_PREFIX", prefix.as_str()),
    ];
    // Each has output to print; the schema is applied first so that the batch reads work.
    let commands: &[(&[&str], Option<&str>)] = &[
        (&["schema", "apply"], None),
        (&["topics", "create"], None),
        (&["config", "show"], None),
        (&["--json", "config", "show"], None),
        (&["--help"], None),
        (&["batch", "--help"], None),
        (&["--version"], None),
        (&["completions", "bash"], None),
        (&["man"], None),
        (&["live", "--channel", "closed/c"], None),
        (&["--json", "live", "--channel", "closed/c"], None),
        (&["batch", "recompute", "--to", "now"], None),
        (
            &[
                "--json",
                "batch",
                "posts",
                "--channel",
                "closed/c",
                "--from",
                "now-1h",
            ],
            None,
        ),
        (
            &[
                "--json",
                "batch",
                "mentions",
                "--keyword",
                "rust",
                "--from",
                "now-1h",
            ],
            None,
        ),
        (
            &["--json", "replay", "--into", "enrich", "--from-offset", "0"],
            None,
        ),
        (&["--json", "ingest", "file", posts], None),
        (
            &[
                "--json",
                "ingest",
                "synthetic",
                "--count",
                "3",
                "--rate",
                "0",
            ],
            None,
        ),
        (&["analyze"], Some("I love this!\nI hate that.\n")),
    ];
    for (args, input) in commands {
        // The reader has gone before the command starts, so its first write meets a closed
        // pipe whatever the timing.
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let mut child = lane
            .pulse(args)
            .envs(env)
            .env("PULSE_LOG__FORMAT", "text")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .expect("pulse starts");
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input.as_bytes()).expect("input written");
        }
        let output = child.wait_with_output().expect("pulse exits");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("panicked"),
            "pulse {args:?} panicked: {stderr}"
        );
        assert!(
            !stderr.lines().any(|line| line.starts_with("error")),
            "pulse {args:?} reported an error for a closed pipe: {stderr}"
        );
        assert_eq!(
            output.status.code(),
            Some(CLOSED_STDOUT),
            "pulse {args:?}: {stderr}"
        );
    }
}
