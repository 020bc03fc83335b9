//! One X post (a tweet object of API v2, with the users of its `includes`) made into a
//! Pulse post. An edited tweet keeps the id of its first version, so an edit updates it.

use pulse_core::validate::post_from_value;
use pulse_core::{Post, PostLimits, Rejection};
use serde_json::{json, Map, Value};

/// The tweet fields and expansions every request asks for.
pub const TWEET_FIELDS: &str = "tweet.fields=created_at,lang,author_id,conversation_id,entities,\
public_metrics,edit_history_tweet_ids,referenced_tweets&expansions=author_id&user.fields=username";

/// The id a tweet is stored under: its first version's (`edit_history_tweet_ids[0]`).
pub fn original_id(tweet: &Map<String, Value>) -> Option<&str> {
    tweet
        .get("edit_history_tweet_ids")
        .and_then(Value::as_array)
        .and_then(|ids| ids.first())
        .and_then(Value::as_str)
        .or_else(|| tweet.get("id").and_then(Value::as_str))
}

/// The post of `tweet` in channel `x/<tag>`; `users` are the answer's `includes.users`.
pub fn tweet_post(
    tweet: &Map<String, Value>,
    users: &[Value],
    tag: &str,
    limits: &PostLimits,
) -> Result<Post, Rejection> {
    let string = |field: &str| tweet.get(field).and_then(Value::as_str);
    let version = string("id").ok_or(Rejection::MissingField("id"))?;
    let id = original_id(tweet).unwrap_or(version);
    let text = string("text").ok_or(Rejection::MissingField("text"))?;
    let created_at = string("created_at").ok_or(Rejection::MissingField("created_at"))?;
    let username = string("author_id").and_then(|author| {
        users
            .iter()
            .find(|user| user.get("id").and_then(Value::as_str) == Some(author))
            .and_then(|user| user.get("username"))
            .and_then(Value::as_str)
    });
    let mut post = json!({
        "id": format!("twitter:{id}"),
        "source": "twitter",
        "channel": format!("x/{tag}"),
        "text": text,
        "created_at": created_at,
    });
    let Value::Object(fields) = &mut post else {
        return Err(Rejection::NotAnObject);
    };
    if let Some(username) = username {
        fields.insert("author".into(), json!(username));
        fields.insert(
            "url".into(),
            json!(format!("https://x.com/{username}/status/{id}")),
        );
    }
    // `und`: X could not tell the language.
    if let Some(lang) = string("lang").filter(|lang| *lang != "und") {
        fields.insert("lang".into(), json!(lang));
    }
    let replied_to = tweet
        .get("referenced_tweets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|r| r.get("type").and_then(Value::as_str) == Some("replied_to"))
        .and_then(|r| r.get("id"))
        .and_then(Value::as_str);
    if let Some(parent) = replied_to {
        fields.insert("parent_id".into(), json!(format!("twitter:{parent}")));
    }
    if let Some(conversation) = string("conversation_id") {
        fields.insert(
            "conversation_id".into(),
            json!(format!("twitter:{conversation}")),
        );
    }
    if version != id {
        fields.insert("x_version_id".into(), json!(version));
    }
    if let Some(Value::Object(metrics)) = tweet.get("public_metrics") {
        let numbers: Map<String, Value> = metrics
            .iter()
            .filter(|(_, v)| v.is_number())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !numbers.is_empty() {
            fields.insert("meta".into(), Value::Object(numbers));
        }
    }
    post_from_value(post, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_core::config::EnrichConfig;

    #[test]
    fn an_edited_reply_keeps_its_first_id_and_names_its_parent() {
        let tweet = json!({
            "id": "1002", "text": "fixed typo", "created_at": "2026-11-01T10:00:00.000Z",
            "author_id": "7", "lang": "en", "conversation_id": "900",
            "edit_history_tweet_ids": ["1001", "1002"],
            "referenced_tweets": [{"type": "quoted", "id": "5"}, {"type": "replied_to", "id": "900"}],
            "public_metrics": {"like_count": 3, "reply_count": 1}
        });
        let users = [json!({"id": "7", "username": "ferris", "name": "Ferris"})];
        let limits = EnrichConfig::default().post_limits();
        let post = tweet_post(tweet.as_object().unwrap(), &users, "rust", &limits).unwrap();
        assert_eq!(post.id, "twitter:1001");
        assert_eq!(post.channel, "x/rust");
        assert_eq!(post.author.as_deref(), Some("ferris"));
        assert_eq!(
            post.url.as_deref(),
            Some("https://x.com/ferris/status/1001")
        );
        assert_eq!(post.parent_id.as_deref(), Some("twitter:900"));
        assert_eq!(post.lang.as_deref(), Some("en"));
        assert_eq!(post.meta["like_count"], 3);
        assert_eq!(post.extra["x_version_id"], "1002");
        let no_text = json!({"id": "1", "created_at": "2026-11-01T10:00:00Z"});
        assert_eq!(
            tweet_post(no_text.as_object().unwrap(), &[], "rust", &limits),
            Err(Rejection::MissingField("text"))
        );
    }
}
