//! `/api/v1/posts` and its stream: stored posts paged newest first with filters, and
//! server-sent events of the backlog then new posts.

use chrono::Utc;
use futures::StreamExt;
use pulse_core::config::ApiConfig;
use pulse_core::{EnrichedPost, SentimentLabel};
use reqwest::StatusCode;
use serde_json::Value;

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_posts_page_newest_first_and_filter() {
    let api = start("posts", keywords_only(), ApiConfig::default()).await;
    let newest_first: Vec<String> = api.alpha.iter().map(|p| p.post.id.clone()).collect();

    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/api/v1/posts?channel={ALPHA}&from=now-1h&limit=7");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = api.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        paged.extend(ids(&page["posts"]));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, newest_first, "every post once, newest first");
    assert_eq!(pages, 4, "7 + 7 + 7 + 3");

    let (_, negative) = api
        .get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&sentiment=negative&limit=100"
        ))
        .await;
    let expected: Vec<String> = api
        .alpha
        .iter()
        .filter(|p| {
            p.enrichment.sentiment.as_ref().map(|s| s.label) == Some(SentimentLabel::Negative)
        })
        .map(|p| p.post.id.clone())
        .collect();
    assert_eq!(ids(&negative["posts"]), expected);
    assert_eq!(expected.len(), 8);
    let (_, spanish) = api
        .get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&lang=es&limit=100"
        ))
        .await;
    let expected: Vec<String> = api
        .alpha
        .iter()
        .filter(|p| p.post.lang.as_deref() == Some("es"))
        .map(|p| p.post.id.clone())
        .collect();
    assert_eq!(ids(&spanish["posts"]), expected);
    assert_eq!(expected.len(), 6);
    let (_, kafka) = api
        .get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&keyword=KAFKA&limit=100"
        ))
        .await;
    assert_eq!(ids(&kafka["posts"]).len(), 12);
    let (_, beta) = api
        .get(&format!(
            "/api/v1/posts?channel={BETA}&from=now-1h&to=now-10m"
        ))
        .await;
    assert_eq!(
        ids(&beta["posts"]),
        api.beta
            .iter()
            .map(|p| p.post.id.clone())
            .collect::<Vec<_>>()
    );

    // Without a channel, a keyword searches every channel: alpha's and beta's even posts,
    // newest first across both, paged.
    let mut everywhere: Vec<&EnrichedPost> = api
        .alpha
        .iter()
        .chain(&api.beta)
        .filter(|p| p.enrichment.keywords.iter().any(|k| k.term == "kafka"))
        .collect();
    everywhere.sort_by_key(|p| std::cmp::Reverse(p.post.created_at));
    let expected: Vec<String> = everywhere.iter().map(|p| p.post.id.clone()).collect();
    assert_eq!(expected.len(), 15);
    let (status, first) = api
        .get("/api/v1/posts?keyword=kafka&from=now-1h&limit=10")
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let (_, second) = api
        .get(&format!(
            "/api/v1/posts?keyword=kafka&from=now-1h&limit=10&cursor={cursor}"
        ))
        .await;
    assert!(second["next_cursor"].is_null());
    let mut paged = ids(&first["posts"]);
    paged.extend(ids(&second["posts"]));
    assert_eq!(paged, expected);
    for (query, needle) in [
        ("from=now-1h", "give channel"),
        ("from=now-1h&keyword=kafka&entity=person:x", "give channel"),
        ("from=now-1h&entity=Berlin", "kind:text"),
        (
            "from=now-1h&keyword=kafka&sentiment=negative",
            "give channel",
        ),
        ("from=now-1h&keyword=kafka&lang=es", "give channel"),
        (
            &format!("channel={ALPHA}&from=now-1h&lang=EN"),
            "language code",
        ),
    ] {
        let detail = assert_error(
            api.get(&format!("/api/v1/posts?{query}")).await,
            StatusCode::BAD_REQUEST,
            "bad_parameter",
        );
        assert!(detail.contains(needle), "{query}: {detail}");
    }

    let id = &api.alpha[5].post.id;
    let (status, one) = api
        .get(&format!("/api/v1/posts/{}", id.replace('/', "%2F")))
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    let stored: EnrichedPost = serde_json::from_value(one).expect("an enriched post");
    assert_eq!(stored, api.alpha[5]);

    let bad = StatusCode::BAD_REQUEST;
    assert_error(
        api.get("/api/v1/posts/no-such-post").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let detail = assert_error(
        api.get(&format!("/api/v1/posts?channel={ALPHA}&from=yesterday"))
            .await,
        bad,
        "bad_parameter",
    );
    assert!(detail.contains("from"), "{detail}");
    assert_error(
        api.get(&format!("/api/v1/posts?channel={ALPHA}")).await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&to=now-2h"
        ))
        .await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&limit=0"
        ))
        .await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&sentiment=happy"
        ))
        .await,
        bad,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!(
            "/api/v1/posts?channel={ALPHA}&from=now-1h&cursor=garbage"
        ))
        .await,
        bad,
        "bad_parameter",
    );
}

/// Reads server-sent events from `response` until `n` `post` events came; returns their ids.
async fn post_ids(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    n: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < n {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let kind = event.lines().find_map(|l| l.strip_prefix("event: "));
            let data = event.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some("post"), Some(data)) = (kind, data) {
                let post: Value = serde_json::from_str(data).expect("a post in data");
                ids.push(post["id"].as_str().expect("an id").to_string());
            }
        }
        if ids.len() >= n {
            break;
        }
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), body.next())
            .await
            .expect("an event within 30 s")
            .expect("the stream goes on")
            .expect("bytes");
        buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8 events"));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_the_backlog_then_new_posts_as_they_arrive() {
    let api = start("stream", keywords_only(), ApiConfig::default()).await;
    let open = |path: String| {
        let request = api.client.get(format!("{}{path}", api.base));
        async move {
            let response = request.send().await.expect("stream opened");
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                response.headers()["content-type"],
                "text/event-stream",
                "server-sent events"
            );
            response.bytes_stream()
        }
    };
    let mut alpha = open(format!("/api/v1/stream?channel={ALPHA}&backlog=2")).await;
    let mut every = open("/api/v1/stream".to_string()).await;
    let mut spanish = open(format!("/api/v1/stream?channel={ALPHA}&lang=es,pt")).await;
    let (mut alpha_buffer, mut every_buffer) = (String::new(), String::new());
    let mut spanish_buffer = String::new();

    // The two posts the feed got last (it is in arrival order: `start` applied alpha's
    // posts by index), in the order they arrived.
    let backlog = post_ids(&mut alpha, &mut alpha_buffer, 2).await;
    assert_eq!(
        backlog,
        [api.alpha[22].post.id.clone(), api.alpha[23].post.id.clone()]
    );

    let now = Utc::now();
    let fresh: Vec<EnrichedPost> = (100..104).map(|i| post(ALPHA, i, now)).collect();
    let elsewhere = post("api/delta", 200, now);
    api.speed.apply(&fresh).await.expect("applied");
    api.speed
        .apply(std::slice::from_ref(&elsewhere))
        .await
        .expect("applied");
    let fresh_ids: Vec<String> = fresh.iter().map(|p| p.post.id.clone()).collect();
    assert_eq!(post_ids(&mut alpha, &mut alpha_buffer, 4).await, fresh_ids);
    // Filtered by language: the English posts before it in the feed are not sent.
    assert_eq!(
        post_ids(&mut spanish, &mut spanish_buffer, 1).await,
        [fresh[3].post.id.clone()]
    );

    // Following every channel: alpha's new posts, and delta, a channel that appeared later.
    let mut seen = post_ids(&mut every, &mut every_buffer, 5).await;
    seen.sort();
    let mut expected = fresh_ids.clone();
    expected.push(elsewhere.post.id.clone());
    expected.sort();
    assert_eq!(seen, expected);

    assert_error(
        api.get(&format!("/api/v1/stream?channel={ALPHA}&backlog=1000"))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_parameter",
    );
    assert_error(
        api.get(&format!("/api/v1/stream?channel={ALPHA}&lang=en,"))
            .await,
        StatusCode::BAD_REQUEST,
        "bad_parameter",
    );
}
