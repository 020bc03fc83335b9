//! One Reddit "thing" (a comment `t1` or a submission `t3`) made into a post. The API's
//! listings and the Pushshift/Arctic Shift dumps carry the same fields, so both use this.

use pulse_core::validate::post_from_value;
use pulse_core::{Post, PostLimits, Rejection};
use serde_json::{Map, Value};

/// What a thing lacking its own name or subreddit gets instead.
#[derive(Debug, Clone)]
pub struct RedditFallback {
    pub id: String,
    pub channel: String,
}

/// Whether Reddit shows a text or an author as gone (`[deleted]` by its author,
/// `[removed]` by moderators).
pub fn removed(text: &str) -> bool {
    matches!(text.trim(), "[deleted]" | "[removed]")
}

/// Whether an archive marks the record as deleted or removed after it was captured
/// (Arctic Shift's `_meta`: `removal_type`, `was_deleted_later`). Reddit's terms require
/// deleted content to be removed, so such a record is not ingested.
pub fn removed_later(record: &Map<String, Value>) -> bool {
    let Some(Value::Object(meta)) = record.get("_meta") else {
        return false;
    };
    let removal = meta
        .get("removal_type")
        .and_then(Value::as_str)
        .is_some_and(|kind| !kind.trim().is_empty());
    removal || meta.get("was_deleted_later") == Some(&Value::Bool(true))
}

/// The post of a Reddit thing; a deleted or removed thing is [`Rejection::Deleted`].
pub fn reddit_post(
    record: &Map<String, Value>,
    fallback: &RedditFallback,
    limits: &PostLimits,
) -> Result<Post, Rejection> {
    let string = |field: &str| {
        record
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let is_comment = record.contains_key("body");
    let text = if is_comment {
        string("body").unwrap_or_default()
    } else {
        let title = string("title").unwrap_or_default();
        match string("selftext") {
            Some(body) if !body.trim().is_empty() && !removed(&body) => {
                format!("{title}\n\n{body}")
            }
            _ => title,
        }
    };
    if removed(&text) || removed_later(record) {
        return Err(Rejection::Deleted);
    }
    let name = string("name").or_else(|| {
        string("id").map(|id| format!("{}{id}", if is_comment { "t1_" } else { "t3_" }))
    });
    let id = match name {
        Some(name) => format!("reddit:{name}"),
        None => fallback.id.clone(),
    };
    let created = match record.get("created_utc") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .and_then(|secs| chrono::DateTime::from_timestamp(secs as i64, 0))
    .ok_or(Rejection::InvalidField {
        field: "created_utc",
        reason: "expected seconds since the epoch".into(),
    })?;
    let subreddit = string("subreddit").unwrap_or_default();
    let mut post = serde_json::json!({
        "id": id,
        "source": "reddit",
        "channel": if subreddit.is_empty() { fallback.channel.clone() } else { format!("reddit/r/{subreddit}") },
        "text": text,
        "created_at": created.to_rfc3339(),
    });
    if let Value::Object(fields) = &mut post {
        if let Some(author) = string("author").filter(|a| !removed(a)) {
            fields.insert("author".into(), Value::String(author));
        }
        if let Some(permalink) = string("permalink") {
            fields.insert(
                "url".into(),
                Value::String(format!("https://www.reddit.com{permalink}")),
            );
        }
        if let Some(parent) = string("parent_id") {
            fields.insert(
                "parent_id".into(),
                Value::String(format!("reddit:{parent}")),
            );
        }
        // The submission a comment belongs to, however deep its parent.
        if let Some(link) = string("link_id") {
            fields.insert("link_id".into(), Value::String(format!("reddit:{link}")));
        }
        let meta: Map<String, Value> = [
            "score",
            "num_comments",
            "ups",
            "downs",
            "gilded",
            "controversiality",
        ]
        .into_iter()
        .filter_map(|k| {
            record
                .get(k)
                .filter(|v| v.is_number())
                .map(|v| (k.to_string(), v.clone()))
        })
        .collect();
        if !meta.is_empty() {
            fields.insert("meta".into(), Value::Object(meta));
        }
    }
    post_from_value(post, limits)
}
