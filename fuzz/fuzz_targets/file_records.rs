//! What `pulse ingest file` reads: JSONL posts and Reddit/Pushshift dump lines, CSV with a
//! header, plain text. The first byte picks the format, the rest is the file. Every file is
//! read to its end as posts, dead letters or a reported error, never a panic; every post
//! read passes the checks of the enrich stage.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use pulse_core::config::EnrichConfig;
use pulse_core::validate::check_post;
use pulse_ingest::file::{FileOptions, FileSource};
use pulse_ingest::{FileFormat, SourceItem};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, contents)) = input.split_first() else {
        return;
    };
    let (format, name) = match selector % 3 {
        0 => (FileFormat::JsonLines, "input.jsonl"),
        1 => (FileFormat::Csv, "input.csv"),
        _ => (FileFormat::Text, "input.txt"),
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join(name);
    let Ok(mut file) = std::fs::File::create(&path) else {
        return;
    };
    if file.write_all(contents).is_err() {
        return;
    }
    drop(file);
    let limits = EnrichConfig::default().post_limits();
    let options = FileOptions {
        channel: None,
        format: Some(format),
        limits: limits.clone(),
        max_line_bytes: 4_096,
        bytes_read: None,
    };
    let Ok(source) = FileSource::open(&path, &options) else {
        return;
    };
    for item in source {
        if let Ok(SourceItem::Post { post, .. }) = item {
            assert!(check_post(&post, &limits).is_ok(), "{post:?}");
        }
    }
});
