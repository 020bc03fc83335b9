//! An in-process fake of Bluesky's Jetstream for tests: a WebSocket endpoint that replays
//! its events from `cursor` (or sends only new ones without it) and then new ones as they
//! are made; posts, updates, deletes, other collections and kinds, raw messages; dropped
//! connections, connections closed at once with a close frame, and silent stalls (with or
//! without pings) on demand. It records the cursor and time of every connection.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::SinkExt;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

use crate::live::fake_server::FakeServer;

#[derive(Default)]
struct Inner {
    /// `(time_us, message)`, in time order.
    events: Vec<(i64, String)>,
    clock: i64,
    rkeys: u64,
    /// Bumped to drop every open connection, or to silence them.
    cuts: u64,
    stalls: u64,
    /// The cursor each connection asked for, and when it came.
    cursors: Vec<Option<i64>>,
    connected_at: Vec<tokio::time::Instant>,
    /// The next connections to close at once with this close code ("try again later").
    refusals: Vec<u16>,
    /// Stalled connections still send a ping this often.
    stall_pings: Option<Duration>,
}

type Shared = Arc<Mutex<Inner>>;

/// A running fake Jetstream.
pub struct FakeJetstream {
    state: Shared,
    server: FakeServer,
}

impl FakeJetstream {
    pub async fn start() -> std::io::Result<Self> {
        let state: Shared = Arc::default();
        let accepting = state.clone();
        let server = FakeServer::start(|listener: TcpListener| async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, accepting.clone()));
            }
        })
        .await?;
        Ok(Self { state, server })
    }

    /// The `ws://` base URL (the source adds `/subscribe`).
    pub fn url(&self) -> String {
        self.server.url("ws")
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.state)
    }

    /// Creates a post by `did`; returns its `at://` URI.
    pub fn post(&self, did: &str, text: &str, langs: &[&str]) -> String {
        let mut inner = self.inner();
        inner.rkeys += 1;
        let rkey = format!("3k{:011}", inner.rkeys);
        let record = json!({
            "$type": "app.bsky.feed.post", "text": text, "langs": langs,
            "createdAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        });
        inner.commit(did, &rkey, "create", Some(record));
        format!("at://{did}/app.bsky.feed.post/{rkey}")
    }

    /// Updates the text of the post at `uri`.
    pub fn update(&self, uri: &str, text: &str) {
        let Some((did, rkey)) = split(uri) else {
            return;
        };
        let record = json!({
            "$type": "app.bsky.feed.post", "text": text, "langs": ["en"],
            "createdAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        });
        self.inner().commit(did, rkey, "update", Some(record));
    }

    /// Deletes the post at `uri`.
    pub fn delete(&self, uri: &str) {
        let Some((did, rkey)) = split(uri) else {
            return;
        };
        self.inner().commit(did, rkey, "delete", None);
    }

    /// Sends a message as it is (with the next time).
    pub fn send_raw(&self, message: &str) {
        let mut inner = self.inner();
        let time = inner.tick();
        inner.events.push((time, message.to_string()));
    }

    /// An event that is not a post commit: an identity update.
    pub fn identity(&self, did: &str) {
        let mut inner = self.inner();
        let time = inner.tick();
        let event = json!({"did": did, "time_us": time, "kind": "identity",
            "identity": {"did": did, "handle": "someone.bsky.social", "seq": 1, "time": "now"}});
        inner.events.push((time, event.to_string()));
    }

    /// Drops every open connection.
    pub fn cut(&self) {
        self.inner().cuts += 1;
    }

    /// Keeps the open connections but sends them nothing more.
    pub fn stall(&self) {
        self.inner().stalls += 1;
    }

    /// The cursor each connection asked for, in order.
    pub fn cursors(&self) -> Vec<Option<i64>> {
        self.inner().cursors.clone()
    }

    /// When each connection came, in order.
    pub fn connected_at(&self) -> Vec<tokio::time::Instant> {
        self.inner().connected_at.clone()
    }

    /// Accepts the next `connections` and closes each at once with close `code` (1013:
    /// try again later), before any event.
    pub fn close_next(&self, connections: usize, code: u16) {
        self.inner()
            .refusals
            .extend(std::iter::repeat_n(code, connections));
    }

    /// Makes stalled connections still send a ping every `every`, as Jetstream does.
    pub fn ping_while_stalled(&self, every: Duration) {
        self.inner().stall_pings = Some(every);
    }
}

impl Inner {
    fn tick(&mut self) -> i64 {
        self.clock = self.clock.max(chrono::Utc::now().timestamp_micros()) + 1;
        self.clock
    }

    fn commit(&mut self, did: &str, rkey: &str, operation: &str, record: Option<Value>) {
        let time = self.tick();
        let mut commit = json!({
            "rev": format!("rev{time}"), "operation": operation,
            "collection": "app.bsky.feed.post", "rkey": rkey,
        });
        if let Some(record) = record {
            commit["record"] = record;
            commit["cid"] = json!(format!("bafy{time}"));
        }
        let event = json!({"did": did, "time_us": time, "kind": "commit", "commit": commit});
        self.events.push((time, event.to_string()));
    }
}

fn lock(state: &Shared) -> MutexGuard<'_, Inner> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn split(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("at://")?;
    let (did, rest) = rest.split_once('/')?;
    let rkey = rest.strip_prefix("app.bsky.feed.post/")?;
    Some((did, rkey))
}

// tungstenite's handshake callback returns its error response by value.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, state: Shared) {
    let mut cursor = None;
    let accepted =
        tokio_tungstenite::accept_hdr_async(stream, |request: &Request, response: Response| {
            cursor = request.uri().query().and_then(|query| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("cursor="))
                    .and_then(|c| c.parse::<i64>().ok())
            });
            Ok(response)
        })
        .await;
    let Ok(mut socket) = accepted else { return };
    let (mut next, cuts, stalls, refusal, pings) = {
        let mut inner = lock(&state);
        inner.cursors.push(cursor);
        inner.connected_at.push(tokio::time::Instant::now());
        let refusal = (!inner.refusals.is_empty()).then(|| inner.refusals.remove(0));
        let next = match cursor {
            Some(cursor) => inner.events.partition_point(|(time, _)| *time < cursor),
            None => inner.events.len(),
        };
        (next, inner.cuts, inner.stalls, refusal, inner.stall_pings)
    };
    if let Some(code) = refusal {
        let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: code.into(),
            reason: "try again later".into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
        return;
    }
    let mut last_ping = tokio::time::Instant::now();
    loop {
        let (pending, cut, stalled) = {
            let inner = lock(&state);
            let pending: Vec<String> = inner.events[next.min(inner.events.len())..]
                .iter()
                .map(|(_, message)| message.clone())
                .collect();
            (pending, inner.cuts != cuts, inner.stalls != stalls)
        };
        if cut {
            // Dropped without a close frame, as a network failure would.
            return;
        }
        if !stalled {
            for message in pending {
                if socket.send(Message::text(message)).await.is_err() {
                    return;
                }
                next += 1;
            }
        } else if pings.is_some_and(|every| last_ping.elapsed() >= every) {
            last_ping = tokio::time::Instant::now();
            if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
