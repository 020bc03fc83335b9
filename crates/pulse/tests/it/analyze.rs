//! `pulse analyze` end to end: the real binary, run from the repository root so that it
//! loads the shipped model by its default relative path, on plain-text and JSON-lines input.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `pulse analyze ARGS` from the repository root, feeding `stdin`.
fn analyze(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .arg("analyze")
        .args(args)
        .current_dir(repo_root())
        .env("PULSE_LOG__FILTER", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pulse runs");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin).expect("stdin written");
    drop(input);
    child.wait_with_output().expect("pulse finishes")
}

fn records(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .expect("utf-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each output line is JSON"))
        .collect()
}

fn label(record: &Value) -> &str {
    record["sentiment"]["label"].as_str().unwrap_or("none")
}

#[test]
fn plain_text_lines_get_one_enrichment_each_in_input_order() {
    let input = "I love this phone, it is absolutely wonderful!\n\
                 This is the worst service I have ever had. Terrible and rude.\n\
                 \n\
                 Barack Obama visited Paris with Emmanuel Macron.\n";
    let output = analyze(&[], input.as_bytes());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records = records(&output);
    assert_eq!(records.len(), 4, "one output line per input line");
    assert_eq!(label(&records[0]), "positive");
    assert_eq!(label(&records[1]), "negative");
    // A blank line has nothing to read: no sentiment, no keywords, but still its line.
    assert_eq!(records[2]["sentiment"], Value::Null);
    assert_eq!(records[2]["keywords"], serde_json::json!([]));
    let emotions = records[0]["emotions"].as_object().expect("emotions");
    let mut labels: Vec<&str> = emotions.keys().map(String::as_str).collect();
    labels.sort_unstable();
    assert_eq!(
        labels,
        ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
    );
    let people: Vec<&str> = records[3]["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .filter(|e| e["kind"] == "person")
        .map(|e| e["text"].as_str().unwrap_or_default())
        .collect();
    assert!(people.contains(&"Barack Obama"), "{:?}", records[3]);
    assert!(records
        .iter()
        .take(2)
        .all(|r| !r["keywords"].as_array().expect("keywords").is_empty()));
}

#[test]
fn json_lines_are_read_by_text_field_and_bad_lines_are_named() {
    let input = concat!(
        "{\"id\": \"a\", \"text\": \"What a fantastic day, I am so happy!\"}\n",
        "{\"id\": \"b\", \"body\": \"no text field\"}\n",
        "this line is not json\n",
        "{\"text\": 42}\n",
        "{\"text\": \"I am furious, this is a disgrace.\"}\n",
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("posts.jsonl");
    std::fs::write(&path, input).expect("input written");
    let path_arg = path.to_str().expect("utf-8 path");
    let output = analyze(&["--input", path_arg], b"");
    assert_eq!(
        output.status.code(),
        Some(1),
        "bad lines make the exit code 1"
    );
    let records = records(&output);
    assert_eq!(records.len(), 5);
    assert_eq!(label(&records[0]), "positive");
    assert_eq!(
        records[1],
        serde_json::json!({"line": 2, "error": "no `text` field"})
    );
    assert_eq!(records[2]["line"], 3);
    assert!(records[2]["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("not JSON")));
    assert_eq!(
        records[3],
        serde_json::json!({"line": 4, "error": "field `text` is not a string"})
    );
    assert_eq!(label(&records[4]), "negative");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("error: {path_arg}:2: no `text` field")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("error: {path_arg}:4:")),
        "{stderr}"
    );
}

#[test]
fn a_missing_model_directory_is_a_clear_error() {
    let output = analyze(&["--model", "no/such/model"], b"hello\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot load the enrichment models"),
        "{stderr}"
    );
    assert!(stderr.contains("no/such/model"), "{stderr}");
}

#[test]
fn each_line_gets_its_language_and_only_read_languages_get_scores() {
    let german = "Die neue Bahnstrecke zwischen Berlin und Hamburg ist seit Montag wegen eines \
                  Unwetters gesperrt, und niemand kann sagen, wann der Zug wieder fährt.";
    let input = [
        json!({"text": german, "lang": "de-AT"}),
        json!({"text": german}),
        json!({"text": "What a fantastic day, I am so happy!", "lang": "en-GB"}),
        json!({"text": "What a fantastic day at the beach with all of my friends, I am so happy!", "lang": "und"}),
        json!({"text": "So happy today", "lang": null}),
        json!({"text": "What a fantastic day", "lang": 7}),
    ]
    .iter()
    .map(|line| format!("{line}\n"))
    .collect::<String>();
    let output = analyze(&[], input.as_bytes());
    assert_eq!(output.status.code(), Some(1), "the last line is refused");
    let records = records(&output);
    assert_eq!(records.len(), 6);
    let langs: Vec<&str> = records[..5]
        .iter()
        .map(|r| r["lang"].as_str().expect("lang"))
        .collect();
    // Tagged, detected, tagged, detected (the tag `und` names no language), too short to tell.
    assert_eq!(langs, ["de", "de", "en", "en", "und"]);
    for german in &records[..2] {
        // The English model does not read German: keywords, never a confident wrong label.
        assert_eq!(german["sentiment"], Value::Null, "{german}");
        assert_eq!(german["emotions"], json!({}), "{german}");
        assert_eq!(german["entities"], json!([]), "{german}");
        let keywords: Vec<&str> = german["keywords"]
            .as_array()
            .expect("keywords")
            .iter()
            .map(|k| k["term"].as_str().unwrap_or_default())
            .collect();
        assert!(keywords.contains(&"bahnstrecke"), "{keywords:?}");
        // German stopwords, not English ones: no keyword starts or ends with a function word
        // of the post (English stopwords give "seit montag", "eines unwetters").
        let function_words = [
            "und", "ist", "seit", "wegen", "eines", "wann", "wieder", "kann",
        ];
        assert!(
            keywords.iter().all(|k| {
                let mut words = k.split(' ');
                let first = words.next().unwrap_or_default();
                let last = words.next_back().unwrap_or(first);
                !function_words.contains(&first) && !function_words.contains(&last)
            }),
            "{keywords:?}"
        );
    }
    assert_eq!(label(&records[2]), "positive");
    assert_eq!(label(&records[3]), "positive");
    assert_eq!(label(&records[4]), "positive");
    assert_eq!(
        records[5],
        json!({"line": 6, "error": "field `lang` is not a string"})
    );
}
