//! Judging a raw record: decode it into a [`Post`] or say precisely why it cannot be one.
//!
//! Every rejection carries a stable machine-readable `kind` (a DLQ header, a metric label)
//! and a lowercase human-readable message.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::dead_letter::DeadLetterKind;
use crate::post::Post;
use crate::tombstone::Tombstone;

/// Limits a post must respect to be enriched.
#[derive(Debug, Clone)]
pub struct PostLimits {
    /// Largest accepted `text`, in bytes of UTF-8.
    pub max_text_bytes: usize,
    /// Accepted values of `source`.
    pub sources: BTreeSet<String>,
}

/// Why a record is not an acceptable post.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("record has no payload")]
    EmptyRecord,
    #[error("payload is not valid utf-8: {0}")]
    InvalidUtf8(String),
    #[error("payload is not json: {0}")]
    NotJson(String),
    #[error("payload is json but not an object")]
    NotAnObject,
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}` is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("text is empty")]
    EmptyText,
    #[error("text is {bytes} bytes, over the limit of {limit}")]
    TextTooLong { bytes: usize, limit: usize },
    #[error("unknown source `{0}`")]
    UnknownSource(String),
    #[error("the post was deleted or removed at its source")]
    Deleted,
}

impl Rejection {
    /// The dead-letter kind of this rejection.
    pub fn kind(&self) -> DeadLetterKind {
        match self {
            Rejection::EmptyRecord => DeadLetterKind::EmptyRecord,
            Rejection::InvalidUtf8(_) => DeadLetterKind::InvalidUtf8,
            Rejection::NotJson(_) => DeadLetterKind::NotJson,
            Rejection::NotAnObject => DeadLetterKind::NotAnObject,
            Rejection::MissingField(_) => DeadLetterKind::MissingField,
            Rejection::InvalidField { .. } => DeadLetterKind::InvalidField,
            Rejection::EmptyText => DeadLetterKind::EmptyText,
            Rejection::TextTooLong { .. } => DeadLetterKind::TextTooLong,
            Rejection::UnknownSource(_) => DeadLetterKind::UnknownSource,
            Rejection::Deleted => DeadLetterKind::DeletedPost,
        }
    }
}

/// Fields without which a record is not a post; each must be a JSON string.
const REQUIRED_STRINGS: [&str; 5] = ["id", "source", "channel", "text", "created_at"];

/// Decodes and validates the bytes of one raw record that must be a post.
pub fn decode_post(bytes: &[u8], limits: &PostLimits) -> Result<Post, Rejection> {
    post_from_value(decode_json(bytes)?, limits)
}

/// A record of the raw topic: a post, or the tombstone of a post deleted at its source.
#[derive(Debug, Clone, PartialEq)]
pub enum RawRecord {
    Post(Post),
    Tombstone(Tombstone),
}

/// Decodes and validates the bytes of one raw record, a post or a tombstone.
pub fn decode_record(bytes: &[u8], limits: &PostLimits) -> Result<RawRecord, Rejection> {
    let value = decode_json(bytes)?;
    if Tombstone::is_claimed_by(&value) {
        return tombstone_from_value(value, limits).map(RawRecord::Tombstone);
    }
    post_from_value(value, limits).map(RawRecord::Post)
}

fn decode_json(bytes: &[u8]) -> Result<Value, Rejection> {
    if bytes.is_empty() {
        return Err(Rejection::EmptyRecord);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Rejection::InvalidUtf8(e.to_string()))?;
    serde_json::from_str(text).map_err(|e| Rejection::NotJson(e.to_string()))
}

fn tombstone_from_value(value: Value, limits: &PostLimits) -> Result<Tombstone, Rejection> {
    let tombstone: Tombstone =
        serde_json::from_value(value).map_err(|e| Rejection::InvalidField {
            field: "tombstone",
            reason: e.to_string(),
        })?;
    check_tombstone(&tombstone, limits)?;
    Ok(tombstone)
}

/// Checks the rules that apply to an already-typed tombstone.
pub fn check_tombstone(tombstone: &Tombstone, limits: &PostLimits) -> Result<(), Rejection> {
    check_keys(&tombstone.id, &tombstone.channel)?;
    if !limits.sources.contains(&tombstone.source) {
        return Err(Rejection::UnknownSource(tombstone.source.clone()));
    }
    Ok(())
}

/// Validates a JSON value that should be a post (used by ingest paths that parse JSON
/// themselves).
pub fn post_from_value(value: Value, limits: &PostLimits) -> Result<Post, Rejection> {
    let Value::Object(object) = &value else {
        return Err(Rejection::NotAnObject);
    };
    for field in REQUIRED_STRINGS {
        match object.get(field) {
            None | Some(Value::Null) => return Err(Rejection::MissingField(field)),
            Some(Value::String(s)) if field != "text" && s.trim().is_empty() => {
                return Err(Rejection::InvalidField {
                    field,
                    reason: "must not be empty".into(),
                })
            }
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(Rejection::InvalidField {
                    field,
                    reason: format!("expected a string, found {}", json_type(other)),
                })
            }
        }
    }
    if let Some(Value::String(created_at)) = object.get("created_at") {
        chrono::DateTime::parse_from_rfc3339(created_at).map_err(|e| Rejection::InvalidField {
            field: "created_at",
            reason: format!("not an rfc 3339 time: {e}"),
        })?;
    }
    let post: Post = serde_json::from_value(value).map_err(|e| Rejection::InvalidField {
        field: "post",
        reason: e.to_string(),
    })?;
    check_post(&post, limits)?;
    Ok(post)
}

/// Largest id or channel, in bytes. Both are keys in Cassandra (partition keys are at most
/// 65,535 bytes, and a batch holding a larger one is refused as a whole) and in Redis; a
/// bound far below that keeps every key small (a file name is at most 255 bytes).
pub const MAX_KEY_BYTES: usize = 512;

/// Checks the rules that apply to an already-typed post.
pub fn check_post(post: &Post, limits: &PostLimits) -> Result<(), Rejection> {
    check_keys(&post.id, &post.channel)?;
    if post.text.trim().is_empty() {
        return Err(Rejection::EmptyText);
    }
    if post.text.len() > limits.max_text_bytes {
        return Err(Rejection::TextTooLong {
            bytes: post.text.len(),
            limit: limits.max_text_bytes,
        });
    }
    if !limits.sources.contains(&post.source) {
        return Err(Rejection::UnknownSource(post.source.clone()));
    }
    Ok(())
}

/// Checks an id and a channel, keys in both stores.
fn check_keys(id: &str, channel: &str) -> Result<(), Rejection> {
    for (field, value) in [("id", id), ("channel", channel)] {
        if value.is_empty() {
            return Err(Rejection::InvalidField {
                field,
                reason: "it is empty".to_string(),
            });
        }
        if value.len() > MAX_KEY_BYTES {
            return Err(Rejection::InvalidField {
                field,
                reason: format!(
                    "it is {} bytes, over the limit of {MAX_KEY_BYTES} for a key in the stores",
                    value.len()
                ),
            });
        }
    }
    Ok(())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PostLimits {
        PostLimits {
            max_text_bytes: 32,
            sources: ["file".to_string(), "reddit".to_string()].into(),
        }
    }

    fn kind_of(bytes: &[u8]) -> &'static str {
        decode_post(bytes, &limits()).unwrap_err().kind().as_str()
    }

    const GOOD: &str = r#"{"id":"file:1","source":"file","channel":"c","text":"hello","created_at":"2026-01-01T00:00:00Z"}"#;

    #[test]
    fn a_good_post_decodes() {
        let post = decode_post(GOOD.as_bytes(), &limits()).unwrap();
        assert_eq!(post.id, "file:1");
        assert_eq!(post.author, None);
    }

    #[test]
    fn ids_and_channels_are_bounded_as_store_keys() {
        let at_limit = "c".repeat(MAX_KEY_BYTES);
        let over = "c".repeat(MAX_KEY_BYTES + 1);
        for (key, field) in [
            ("channel", "\"channel\":\"c\""),
            ("id", "\"id\":\"file:1\""),
        ] {
            let with = |value: &str| GOOD.replace(field, &format!("\"{key}\":\"{value}\""));
            assert!(
                decode_post(with(&at_limit).as_bytes(), &limits()).is_ok(),
                "{key}"
            );
            let error = decode_post(with(&over).as_bytes(), &limits()).unwrap_err();
            assert_eq!(error.kind().as_str(), "invalid_field", "{key}");
            assert!(error.to_string().contains("513 bytes"), "{error}");
        }
        // A channel of 70,000 bytes would make Cassandra refuse the sink's batch for good.
        let huge = GOOD.replace(
            "\"channel\":\"c\"",
            &format!("\"channel\":\"{}\"", "c".repeat(70_000)),
        );
        assert_eq!(kind_of(huge.as_bytes()), "invalid_field");
    }

    #[test]
    fn every_kind_of_bad_record_is_named() {
        assert_eq!(kind_of(b""), "empty_record");
        assert_eq!(kind_of(b"{\"text\":\"\xff\"}"), "invalid_utf8");
        assert_eq!(kind_of(b"not json"), "not_json");
        assert_eq!(kind_of(b"{\"id\":"), "not_json");
        assert_eq!(kind_of(b"[1,2]"), "not_an_object");
        assert_eq!(
            kind_of(&GOOD.replace("\"id\":\"file:1\",", "").into_bytes()),
            "missing_field"
        );
        assert_eq!(
            kind_of(&GOOD.replace("\"hello\"", "null").into_bytes()),
            "missing_field"
        );
        assert_eq!(
            kind_of(&GOOD.replace("\"hello\"", "42").into_bytes()),
            "invalid_field"
        );
        assert_eq!(
            kind_of(&GOOD.replace("\"file:1\"", "\" \"").into_bytes()),
            "invalid_field"
        );
        assert_eq!(
            kind_of(
                &GOOD
                    .replace("2026-01-01T00:00:00Z", "yesterday")
                    .into_bytes()
            ),
            "invalid_field"
        );
        assert_eq!(
            kind_of(&GOOD.replace("hello", "  \\n ").into_bytes()),
            "empty_text"
        );
        assert_eq!(
            kind_of(&GOOD.replace("hello", &"x".repeat(33)).into_bytes()),
            "text_too_long"
        );
        assert_eq!(
            kind_of(
                &GOOD
                    .replace("\"source\":\"file\"", "\"source\":\"myspace\"")
                    .into_bytes()
            ),
            "unknown_source"
        );
    }

    #[test]
    fn a_bad_timestamp_names_created_at() {
        let err = decode_post(
            GOOD.replace("2026-01-01T00:00:00Z", "yesterday").as_bytes(),
            &limits(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Rejection::InvalidField {
                    field: "created_at",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn tombstones_are_records_and_bad_ones_are_named() {
        let tombstone = r#"{"kind":"tombstone","id":"reddit:t3_a","source":"reddit","channel":"reddit/r/rust","created_at":"2026-01-01T00:00:00Z","deleted_at":"2026-01-01T01:00:00Z","reason":"deleted by its author"}"#;
        let Ok(RawRecord::Tombstone(decoded)) = decode_record(tombstone.as_bytes(), &limits())
        else {
            panic!("not a tombstone");
        };
        assert_eq!(decoded.id, "reddit:t3_a");
        assert!(matches!(
            decode_record(GOOD.as_bytes(), &limits()),
            Ok(RawRecord::Post(_))
        ));
        let no_channel = tombstone.replace(r#""channel":"reddit/r/rust","#, "");
        assert!(matches!(
            decode_record(no_channel.as_bytes(), &limits()),
            Err(Rejection::InvalidField {
                field: "tombstone",
                ..
            })
        ));
        let unknown = tombstone.replace(r#""source":"reddit""#, r#""source":"myspace""#);
        assert_eq!(
            decode_record(unknown.as_bytes(), &limits()),
            Err(Rejection::UnknownSource("myspace".into()))
        );
        // A tombstone is not a post for a caller that wants only posts.
        assert!(decode_post(tombstone.as_bytes(), &limits()).is_err());
    }
}
