use std::io::{Read, Write};

use super::*;

fn options() -> FileOptions {
    FileOptions {
        channel: None,
        format: None,
        limits: PostLimits {
            max_text_bytes: 100,
            sources: ["file", "reddit"].into_iter().map(String::from).collect(),
        },
        max_line_bytes: 1_000,
        bytes_read: None,
    }
}

fn read(path: &Path) -> Vec<SourceItem> {
    FileSource::open(path, &options())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn ids(items: &[SourceItem]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Post { post, .. } => Some(post.id.clone()),
            _ => None,
        })
        .collect()
}

fn kinds(items: &[SourceItem]) -> Vec<(String, String)> {
    items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Malformed { location, kind, .. } => {
                Some((location.clone(), kind.to_string()))
            }
            _ => None,
        })
        .collect()
}

use std::path::PathBuf;

#[test]
fn jsonl_derives_missing_fields_and_reports_bad_lines_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "posts.jsonl",
        b"{\"text\":\"first post\"}\n\
          {\"id\":\"x:1\",\"text\":\"second\",\"created_at\":\"2026-01-01T00:00:00Z\",\"extra\":1}\n\
          \n\
          not json\n\
          [1]\n\
          {\"text\":\"\"}\n\
          {\"text\":\"\xff\"}\n\
          {\"text\":42}\n",
    );
    let items = read(&path);
    let ids = ids(&items);
    assert_eq!(ids.len(), 2);
    assert!(
        ids[0].starts_with("file:") && ids[0].ends_with(":1"),
        "{ids:?}"
    );
    assert_eq!(ids[1], "x:1");
    let display = path.display().to_string();
    assert_eq!(
        kinds(&items),
        vec![
            (format!("{display}:4"), "not_json".to_string()),
            (format!("{display}:5"), "not_an_object".to_string()),
            (format!("{display}:6"), "empty_text".to_string()),
            (format!("{display}:7"), "invalid_utf8".to_string()),
            (format!("{display}:8"), "invalid_field".to_string()),
        ]
    );
    let SourceItem::Post { post, .. } = &items[0] else {
        panic!()
    };
    assert_eq!(post.channel, "file/posts.jsonl");
    assert_eq!(post.source, "file");
}

#[test]
fn same_file_same_ids_whatever_the_compression() {
    let dir = tempfile::tempdir().unwrap();
    let body = b"one\ntwo\n\nthree\n";
    let plain = write(&dir, "talk.txt", body);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body).unwrap();
    let sub = tempfile::tempdir().unwrap();
    let gz_path = write(&sub, "talk.txt.gz", &gz.finish().unwrap());
    let zst_dir = tempfile::tempdir().unwrap();
    let zst_path = write(
        &zst_dir,
        "talk.txt.zst",
        &zstd::encode_all(&body[..], 3).unwrap(),
    );
    let first = ids(&read(&plain));
    assert_eq!(first.len(), 3);
    assert_eq!(first, ids(&read(&plain)));
    assert_eq!(first, ids(&read(&gz_path)));
    assert_eq!(first, ids(&read(&zst_path)));
    assert!(
        first[2].ends_with(":4"),
        "line numbers count blank lines: {first:?}"
    );
}

#[test]
fn csv_maps_columns_and_keeps_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "survey.csv",
        b"id,author,text,mood\nr1,ann,\"Hello, world\",happy\nr2,bob,,sad\nr3,cy,too,many,fields\n",
    );
    let items = read(&path);
    assert_eq!(ids(&items), vec!["r1".to_string()]);
    let SourceItem::Post { post, .. } = &items[0] else {
        panic!()
    };
    assert_eq!(post.text, "Hello, world");
    assert_eq!(post.author.as_deref(), Some("ann"));
    assert_eq!(post.extra["mood"], "happy");
    let kinds: Vec<String> = kinds(&items).into_iter().map(|(_, k)| k).collect();
    assert_eq!(kinds, vec!["empty_text", "invalid_csv"]);
}

#[test]
fn csv_records_are_bounded_like_lines_and_a_bad_quote_costs_one_row() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileOptions {
        max_line_bytes: 4_096,
        ..options()
    };
    let read_with = |path: &Path| {
        FileSource::open(path, &options)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    // A quoted field over several lines is one post; a quote inside an unquoted field is
    // a plain character.
    let mut csv =
        b"id,text\nm1,\"first line\nsecond line, \"\"quoted\"\"\"\ns1,a 5\" screen\n".to_vec();
    // A quote never closed, then 2,000 rows: one row lost, not the rest of the file.
    csv.extend_from_slice(b"bad,\"never closed\n");
    for i in 0..2_000 {
        csv.extend_from_slice(format!("r{i},row {i}\n").as_bytes());
    }
    // A 10 MB quoted field on one line, and one spread over lines: each reported, never
    // read whole.
    csv.extend_from_slice(b"huge,\"");
    csv.extend(std::iter::repeat_n(b'x', 10_000_000));
    csv.extend_from_slice(b"\"\n");
    csv.extend_from_slice(b"tall,\"");
    for _ in 0..5_000 {
        csv.extend_from_slice(b"xxxxxxxxxxxxxxxxxxx\n");
    }
    csv.extend_from_slice(b"\"\nlast,the end\n");
    let items = read_with(&write(&dir, "hostile.csv", &csv));

    let posts = ids(&items);
    assert_eq!(posts[..2], ["m1", "s1"]);
    assert_eq!(
        posts[2..2_002],
        (0..2_000).map(|i| format!("r{i}")).collect::<Vec<_>>()[..]
    );
    assert_eq!(posts.last().map(String::as_str), Some("last"));
    let SourceItem::Post { post, .. } = &items[0] else {
        panic!("{:?}", items[0])
    };
    assert_eq!(post.text, "first line\nsecond line, \"quoted\"");
    let SourceItem::Post { post, .. } = &items[1] else {
        panic!("{:?}", items[1])
    };
    assert_eq!(post.text, "a 5\" screen");

    let bad: Vec<(String, String)> = kinds(&items)
        .into_iter()
        .map(|(location, kind)| (location.rsplit('/').next().unwrap().to_string(), kind))
        .collect();
    let at = |location: &str, kind: &str| (location.to_string(), kind.to_string());
    assert_eq!(bad[0], at("hostile.csv:5", "invalid_csv"), "{bad:?}");
    assert_eq!(bad[1], at("hostile.csv:2006", "line_too_long"));
    assert_eq!(bad[2], at("hostile.csv:2007", "invalid_csv"));
    // The lines of the tall field, read again as rows, are rows of the wrong shape; the
    // quote that closed it opens one the end of the file leaves open.
    assert!(
        bad[3..].iter().all(|(_, kind)| kind == "invalid_csv"),
        "{bad:?}"
    );
    assert_eq!(bad.last(), Some(&at("hostile.csv:7007", "invalid_csv")));
    for item in &items {
        if let SourceItem::Malformed { raw, .. } = item {
            assert!(
                raw.len() <= 4_096,
                "a malformed record kept {} bytes",
                raw.len()
            );
        }
    }

    // A quote left open that runs into an overlong line: both reported, in file order.
    let mut csv = b"id,text\nq,\"open\n".to_vec();
    csv.extend(std::iter::repeat_n(b'y', 5_000));
    csv.extend_from_slice(b"\nz,ok\n");
    let items = read_with(&write(&dir, "runs-into.csv", &csv));
    assert_eq!(ids(&items), ["z"]);
    let kinds: Vec<String> = kinds(&items)
        .into_iter()
        .map(|(location, kind)| format!("{}={kind}", &location[location.len() - 2..]))
        .collect();
    assert_eq!(kinds, [":2=invalid_csv", ":3=line_too_long"]);
}

#[test]
fn csv_without_text_column_is_a_file_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "bad.csv", b"a,b\n1,2\n");
    let err = FileSource::open(&path, &options()).err().unwrap();
    assert!(err.to_string().contains("no `text` column"), "{err}");
}

#[test]
fn a_csv_header_of_control_characters_is_named_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let mut header = b"a\x1b[2J,b\x07\x00,".to_vec();
    header.extend(std::iter::repeat_n(b'x', 500));
    header.extend_from_slice(b"\n1,2,3\n");
    let path = write(&dir, "noise.csv", &header);
    let err = FileSource::open(&path, &options())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(r"a\u{1b}[2j,b\u{7}"), "{err}");
    assert!(!err.chars().any(|c| c.is_control()), "{err:?}");
    assert!(err.len() < 400 && err.ends_with("...)"), "{err}");
}

#[test]
fn a_byte_order_mark_does_not_spoil_the_first_post() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("bom.jsonl", &b"\xEF\xBB\xBF{\"id\":\"b1\",\"text\":\"first\"}\n{\"id\":\"b2\",\"text\":\"second\"}\n"[..]),
        ("bom.csv", &b"\xEF\xBB\xBFid,text\nb1,first\nb2,second\n"[..]),
    ] {
        let items = read(&write(&dir, name, bytes));
        assert_eq!(ids(&items), ["b1", "b2"], "{name}: {items:?}");
    }
}

#[test]
fn pushshift_comments_and_submissions() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "RC_2024-01.ndjson",
        br#"{"id":"abc","subreddit":"rust","author":"ferris","body":"Borrow checker wins","created_utc":1704067200,"score":5,"parent_id":"t3_p1","permalink":"/r/rust/comments/p1/x/abc/"}
{"id":"p1","subreddit":"rust","title":"Rust 2024","selftext":"[removed]","created_utc":"1704067100","num_comments":3}
{"id":"gone","subreddit":"rust","body":"[deleted]","created_utc":1704067300}
{"id":"late","subreddit":"rust","body":"said, then deleted","created_utc":1704067400,"_meta":{"was_deleted_later":true}}
{"id":"mod","subreddit":"rust","body":"taken down","created_utc":1704067500,"_meta":{"removal_type":"removed"}}
{"id":"kept","subreddit":"rust","body":"still here","created_utc":1704067600,"link_id":"t3_p1","parent_id":"t1_abc","_meta":{"removal_type":null,"was_deleted_later":false}}
"#,
    );
    let items = read(&path);
    assert_eq!(
        ids(&items),
        vec!["reddit:t1_abc", "reddit:t3_p1", "reddit:t1_kept"]
    );
    let deleted: Vec<(String, String)> = ["3", "4", "5"]
        .map(|line| (format!("{}:{line}", path.display()), "deleted_post".into()))
        .into();
    assert_eq!(kinds(&items), deleted);
    let SourceItem::Post { post, .. } = &items[5] else {
        panic!("{:?}", items[5])
    };
    assert_eq!(post.parent_id.as_deref(), Some("reddit:t1_abc"));
    assert_eq!(post.extra["link_id"], "reddit:t3_p1");
    let SourceItem::Post { post, .. } = &items[0] else {
        panic!()
    };
    assert_eq!(post.channel, "reddit/r/rust");
    assert_eq!(post.created_at.to_rfc3339(), "2024-01-01T00:00:00+00:00");
    assert_eq!(post.parent_id.as_deref(), Some("reddit:t3_p1"));
    assert_eq!(post.meta["score"], 5);
    let SourceItem::Post { post, .. } = &items[1] else {
        panic!()
    };
    assert_eq!(post.text, "Rust 2024");
}

/// The Reddit archives are zstd frames with a 2 GiB window (`zstd --long=31`). Built here
/// by streaming, as the archives were: compressing a file of known size would shrink the
/// window to that size and hide the decoder's limit.
#[test]
fn reddit_dumps_with_a_two_gib_window_decode_whole() {
    let mut body = Vec::new();
    for i in 0..3_000 {
        writeln!(
            body,
            r#"{{"id":"c{i}","subreddit":"rust","body":"comment {i}","created_utc":{},"link_id":"t3_p{}","parent_id":"t3_p{}"}}"#,
            1_704_067_200 + i,
            i % 10,
            i % 10
        )
        .unwrap();
    }
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    encoder.long_distance_matching(true).unwrap();
    encoder.window_log(31).unwrap();
    encoder.write_all(&body).unwrap();
    let frame = encoder.finish().unwrap();
    let mut plain = Vec::new();
    let refused = zstd::stream::read::Decoder::new(&frame[..])
        .unwrap()
        .read_to_end(&mut plain);
    assert!(
        refused.is_err_and(|e| e.to_string().contains("too much memory")),
        "the frame must need more than the default window"
    );

    let dir = tempfile::tempdir().unwrap();
    let items = read(&write(&dir, "RC_2024-01.zst", &frame));
    assert_eq!(items.len(), 3_000);
    assert!(kinds(&items).is_empty(), "{:?}", kinds(&items).first());
    let want: Vec<String> = (0..3_000).map(|i| format!("reddit:t1_c{i}")).collect();
    assert_eq!(ids(&items), want);
    assert!(kinds(&items).is_empty());
}

#[test]
fn overlong_lines_are_reported_not_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = vec![b'x'; 5_000];
    body.extend_from_slice(b"\nshort\n");
    let path = write(&dir, "long.txt", &body);
    let items = read(&path);
    assert_eq!(ids(&items).len(), 1);
    let SourceItem::Malformed { kind, raw, .. } = &items[0] else {
        panic!()
    };
    assert_eq!(kind.as_str(), "line_too_long");
    assert!(raw.len() <= 256);
}

#[test]
fn reddit_archive_names_are_json_lines() {
    for name in [
        "RC_2024-01.zst",
        "RS_2023-12.zst",
        "rust_comments.zst",
        "rust_submissions",
        "posts.ndjson.gz",
    ] {
        assert_eq!(
            FileFormat::detect(Path::new(name)),
            FileFormat::JsonLines,
            "{name}"
        );
    }
    for (name, format) in [
        ("notes.txt", FileFormat::Text),
        ("RCA.txt", FileFormat::Text),
        ("survey.csv.zst", FileFormat::Csv),
    ] {
        assert_eq!(FileFormat::detect(Path::new(name)), format, "{name}");
    }
}

#[test]
fn a_corrupt_archive_is_an_error_naming_the_file_not_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    // Bytes that are no gzip or zstd stream, and a gzip stream cut off in its middle.
    let noise = pulse_testkit::noise(256 * 1024, 0x9E37_79B9_7F4A_7C15);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..2_000 {
        writeln!(
            gzip,
            "{{\"text\": \"post number {i} of a dump cut short\"}}"
        )
        .unwrap();
    }
    let whole = gzip.finish().unwrap();
    let cut = &whole[..whole.len() / 2];
    for (name, bytes) in [
        ("noise.jsonl.gz", &noise[..]),
        ("noise.jsonl.zst", &noise[..]),
        ("cut.jsonl.gz", cut),
    ] {
        let path = write(&dir, name, bytes);
        let read: Result<Vec<SourceItem>, FileError> =
            FileSource::open(&path, &options()).unwrap().collect();
        let error = read.expect_err(name).to_string();
        assert!(
            error.starts_with(&format!("{}:", path.display())) && error.contains("cannot read"),
            "{name}: {error}"
        );
    }
}
