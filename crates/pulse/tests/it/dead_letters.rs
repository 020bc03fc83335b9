//! Acceptance: every malformed record, whether it arrives through `pulse ingest file` or is
//! written straight to the raw topic, lands in the DLQ with its reason and origin, and every
//! good post is delivered.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{committed, high_watermarks, read_all, wait_for, Lane};
use pulse_kafka::dlq::header;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// Dead letters by (partition, offset) of their origin: (original payload, error kind).
type LettersByOrigin = BTreeMap<(i32, i64), (Option<Vec<u8>>, String)>;

fn good(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","source":"file","channel":"test/dlq","text":"A perfectly fine post about {id}","created_at":"2026-11-01T00:00:00Z"}}"#).into_bytes()
}

/// Malformed lines of a JSONL file, each with the error kind it must be reported as.
fn bad_file_lines() -> Vec<(Vec<u8>, &'static str)> {
    let oversized = format!(r#"{{"id":"big","text":"{}"}}"#, "x".repeat(2_000));
    vec![
        (b"this is not json".to_vec(), "not_json"),
        (br#"{"id":"cut","text":"unterminated"#.to_vec(), "not_json"),
        (b"[1,2,3]".to_vec(), "not_an_object"),
        (b"42".to_vec(), "not_an_object"),
        (
            br#"{"id":"no-text","channel":"c"}"#.to_vec(),
            "missing_field",
        ),
        (
            br#"{"id":"null-text","text":null}"#.to_vec(),
            "missing_field",
        ),
        (br#"{"id":"num-text","text":42}"#.to_vec(), "invalid_field"),
        (br#"{"id":"empty","text":""}"#.to_vec(), "empty_text"),
        (br#"{"id":"blank","text":"  \t "}"#.to_vec(), "empty_text"),
        (oversized.into_bytes(), "text_too_long"),
        (
            b"{\"id\":\"latin1\",\"text\":\"caf\xe9\"}".to_vec(),
            "invalid_utf8",
        ),
        (
            br#"{"id":"who","source":"myspace","text":"hi"}"#.to_vec(),
            "unknown_source",
        ),
        (
            br#"{"id":"when","text":"hi","created_at":"last tuesday"}"#.to_vec(),
            "invalid_field",
        ),
        (br#"{"id":"","text":"hi"}"#.to_vec(), "invalid_field"),
    ]
}

/// Malformed records written straight to the raw topic, with their expected kinds.
fn bad_raw_records() -> Vec<(Option<Vec<u8>>, &'static str)> {
    vec![
        (Some(b"<html>not json</html>".to_vec()), "not_json"),
        (Some(b"\xff\xfe\xfd".to_vec()), "invalid_utf8"),
        (None, "empty_record"),
        (Some(br#"{"id":"r1","source":"file","channel":"c","created_at":"2026-11-01T00:00:00Z"}"#.to_vec()), "missing_field"),
        (Some(br#"{"id":"r2","source":"fax","channel":"c","text":"hi","created_at":"2026-11-01T00:00:00Z"}"#.to_vec()), "unknown_source"),
        (Some(format!(r#"{{"id":"r3","source":"file","channel":"c","text":"{}","created_at":"2026-11-01T00:00:00Z"}}"#, "y".repeat(2_000)).into_bytes()), "text_too_long"),
        (Some(b"[]".to_vec()), "not_an_object"),
        (Some(br#"{"id":"r4","source":"file","channel":"c","text":"hi","created_at":1700000000}"#.to_vec()), "invalid_field"),
    ]
}

#[test]
fn malformed_records_reach_the_dlq_with_reasons_and_good_ones_are_delivered() {
    let lane = Lane::new("dlq", 2);
    let limit = [("PULSE_ENRICH__MAX_TEXT_BYTES", "1000")];

    // A file mixing good and bad lines (good ones first, last and in between).
    let mut lines: Vec<(Vec<u8>, Option<&str>)> = vec![(good("file-0"), None)];
    for (i, (bad, kind)) in bad_file_lines().into_iter().enumerate() {
        lines.push((bad, Some(kind)));
        lines.push((good(&format!("file-{}", i + 1)), None));
    }
    let path = lane.dir.path().join("mixed.jsonl");
    let body: Vec<u8> = lines
        .iter()
        .flat_map(|(l, _)| l.iter().copied().chain([b'\n']))
        .collect();
    std::fs::write(&path, body).expect("write file");
    let output = lane
        .pulse(&["ingest", "file", path.to_str().expect("path")])
        .envs(limit)
        .output()
        .expect("ingest runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:2", path.display())),
        "the CLI names file and line: {stderr}"
    );

    // Bad records straight onto the raw topic, plus one good one.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", common::brokers())
        .create()
        .expect("producer");
    let mut raw_offsets = BTreeMap::new();
    let mut raw_records = bad_raw_records();
    raw_records.push((Some(good("raw-good")), "good"));
    for (i, (payload, kind)) in raw_records.iter().enumerate() {
        let key = format!("raw-{i}");
        let mut record = FutureRecord::to(&lane.raw).key(&key).partition(0);
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        let delivered = runtime
            .block_on(producer.send(record, Duration::from_secs(30)))
            .map_err(|(e, _)| e)
            .expect("raw record produced");
        raw_offsets.insert(
            (delivered.partition, delivered.offset),
            (payload.clone(), *kind),
        );
    }

    let mut enrich = lane.spawn_enrich("enrich", &limit);
    wait_for("every raw record committed", || {
        committed(&lane.group, &lane.raw, 2) == high_watermarks(&lane.raw, 2)
    });
    assert!(enrich.terminate().success());

    let letters = read_all(&lane.dlq, 2);
    // From ingest: one letter per bad line, at its line number, with the line's bytes.
    let from_ingest: BTreeMap<String, (String, Vec<u8>)> = letters
        .iter()
        .filter(|l| l.headers[header::STAGE] == "ingest")
        .map(|l| {
            (
                l.headers[header::LOCATION].clone(),
                (l.headers[header::ERROR_KIND].clone(), l.payload.clone()),
            )
        })
        .collect();
    let expected_ingest: BTreeMap<String, (String, Vec<u8>)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, (line, kind))| {
            kind.map(|k| {
                (
                    format!("{}:{}", path.display(), i + 1),
                    (k.to_string(), line.clone()),
                )
            })
        })
        .collect();
    assert_eq!(from_ingest, expected_ingest);

    // From enrich: one letter per bad raw record, naming its partition and offset.
    let from_enrich: LettersByOrigin = letters
        .iter()
        .filter(|l| l.headers[header::STAGE] == "enrich")
        .map(|l| {
            assert!(!l.headers[header::ERROR].is_empty());
            assert_eq!(l.headers[header::TOPIC], lane.raw);
            let origin = (
                l.headers[header::PARTITION].parse().expect("partition"),
                l.headers[header::OFFSET].parse().expect("offset"),
            );
            (
                origin,
                (
                    (!l.payload.is_empty()).then(|| l.payload.clone()),
                    l.headers[header::ERROR_KIND].clone(),
                ),
            )
        })
        .collect();
    let expected_enrich: LettersByOrigin = raw_offsets
        .iter()
        .filter(|(_, (_, kind))| *kind != "good")
        .map(|(origin, (payload, kind))| (*origin, (payload.clone(), kind.to_string())))
        .collect();
    assert_eq!(from_enrich, expected_enrich);
    assert_eq!(
        letters.len(),
        expected_ingest.len() + expected_enrich.len(),
        "no other letters"
    );

    // Every good post, and nothing else, is enriched.
    let enriched: Vec<String> = read_all(&lane.enriched, 2)
        .iter()
        .map(|r| r.json()["id"].as_str().expect("id").to_string())
        .collect();
    let mut expected: BTreeSet<String> = (0..=bad_file_lines().len())
        .map(|i| format!("file-{i}"))
        .collect();
    expected.insert("raw-good".to_string());
    assert_eq!(enriched.len(), expected.len());
    assert_eq!(enriched.into_iter().collect::<BTreeSet<_>>(), expected);
}
