//! `GET /api/v1/stream[?channel=C][&backlog=N][&lang=L,...]`: server-sent events of enriched posts as
//! the speed sink adds them to the channels' feeds (`event: post`, the post as JSON in
//! `data`; `event: deleted` with `{"id": ...}` when a post shown before was deleted at its
//! source). `backlog` sends a channel's N most recent posts first. Without `channel`, every
//! channel is followed, including channels that appear later. `lang` keeps the posts in
//! those languages (`und`: language not known).
//!
//! Feeds are polled, not read with a blocking XREAD: a blocking read would hold the shared
//! Redis connection. Streams end when the server shuts down.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use pulse_core::UNDETERMINED_LANGUAGE;
use pulse_speed::{FeedEntry, SpeedLayer};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use crate::params::Params;
use crate::{ApiError, ApiState, ErrorBody};

const POLL: Duration = Duration::from_millis(250);
/// How often a stream over every channel looks for new channels.
const CHANNEL_REFRESH: Duration = Duration::from_secs(5);
/// Most posts read from one feed per poll.
const READ: usize = 200;
const MAX_BACKLOG: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// The channel to follow (default: every channel, including new ones).
    channel: Option<String>,
    /// Recent posts of each channel to send first (default 0, at most 100).
    backlog: Option<usize>,
    /// Only posts in these languages, comma-separated codes such as `en,es` (`und`: not
    /// known); default every language.
    lang: Option<String>,
}

/// The languages a stream keeps; `None`: every language.
type Languages = Option<BTreeSet<String>>;

/// Whether a post's JSON is in one of `languages` (a post without `lang` is `und`).
fn in_languages(languages: &Languages, post: &str) -> bool {
    #[derive(Deserialize)]
    struct Lang {
        lang: Option<String>,
    }
    let Some(languages) = languages else {
        return true;
    };
    serde_json::from_str::<Lang>(post)
        .is_ok_and(|post| languages.contains(post.lang.as_deref().unwrap_or(UNDETERMINED_LANGUAGE)))
}

/// Where a stream is: the last feed entry sent per channel, and events not sent yet.
struct Follow {
    speed: SpeedLayer,
    /// `None`: every channel.
    channel: Option<String>,
    languages: Languages,
    cursors: BTreeMap<String, String>,
    pending: VecDeque<Event>,
    refreshed: Instant,
    shutdown: CancellationToken,
    /// This stream's place under `api.max_streams`, given back when the stream ends.
    _open: OwnedSemaphorePermit,
}

/// Server-sent events of enriched posts as they arrive (`event: post`, the post as JSON in
/// `data`; `event: deleted`, `{"id": ...}`, when a post was deleted at its source;
/// `event: error` when a read fails and is retried).
#[utoipa::path(get, path = "/api/v1/stream", tag = "live", params(StreamParams), responses(
    (status = 200, description = "an endless event stream", content_type = "text/event-stream"),
    (status = 400, description = "a parameter is missing, malformed or out of range", body = ErrorBody), (status = 429, description = "over the client's rate", body = ErrorBody), (status = 503, description = "a store is down", body = ErrorBody)))]
pub async fn posts(
    State(state): State<ApiState>,
    Params(params): Params<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let backlog = params.backlog.unwrap_or(0);
    if backlog > MAX_BACKLOG {
        return Err(ApiError::bad_parameter(format!(
            "backlog is at most {MAX_BACKLOG}, not {backlog}"
        )));
    }
    let open = state.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(format!(
            "{} event streams are open, the most this server serves (api.max_streams)",
            state.config.max_streams
        ))
    })?;
    let languages: Languages = params
        .lang
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(crate::routes::posts::language)
                .collect()
        })
        .transpose()?;
    let channels = match &params.channel {
        Some(channel) => vec![channel.clone()],
        None => known_channels(&state.speed).await?,
    };
    let mut follow = Follow {
        speed: state.speed.clone(),
        channel: params.channel,
        languages,
        cursors: BTreeMap::new(),
        pending: VecDeque::new(),
        refreshed: Instant::now(),
        shutdown: state.shutdown.clone(),
        _open: open,
    };
    for channel in channels {
        // Newest first: the first entry is where following starts.
        let recent = state.speed.recent(&channel, backlog.max(1)).await?;
        let start = recent
            .first()
            .map_or_else(|| "0".to_string(), |(id, _)| id.clone());
        for (_, post) in recent.iter().take(backlog).rev() {
            if in_languages(&follow.languages, post) {
                follow.pending.push_back(post_event(post));
            }
        }
        follow.cursors.insert(channel, start);
    }
    let events = futures::stream::unfold(follow, |mut follow| async move {
        loop {
            if let Some(event) = follow.pending.pop_front() {
                return Some((Ok(event), follow));
            }
            tokio::select! {
                _ = follow.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(POLL) => {}
            }
            follow.poll().await;
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

impl Follow {
    /// Reads what the feeds gained; a failed read becomes an `error` event and is retried
    /// at the next poll.
    async fn poll(&mut self) {
        if self.channel.is_none() && self.refreshed.elapsed() >= CHANNEL_REFRESH {
            self.refreshed = Instant::now();
            match known_channels(&self.speed).await {
                // A channel that appeared after the stream began: all its feed is new.
                Ok(channels) => {
                    for channel in channels {
                        self.cursors.entry(channel).or_insert_with(|| "0".into());
                    }
                }
                Err(error) => self.pending.push_back(error_event(&error)),
            }
        }
        for (channel, cursor) in self.cursors.iter_mut() {
            match self.speed.feed_after(channel, cursor, READ).await {
                Ok(entries) => {
                    for (id, entry) in entries {
                        match entry {
                            FeedEntry::Post(post) if in_languages(&self.languages, &post) => {
                                self.pending.push_back(post_event(&post))
                            }
                            FeedEntry::Post(_) => {}
                            FeedEntry::Deleted(post_id) => {
                                self.pending.push_back(deleted_event(&post_id))
                            }
                        }
                        *cursor = id;
                    }
                }
                Err(error) => self.pending.push_back(error_event(&error.into())),
            }
        }
    }
}

async fn known_channels(speed: &SpeedLayer) -> Result<Vec<String>, ApiError> {
    Ok(speed
        .channels()
        .await?
        .into_iter()
        .map(|(channel, _)| channel)
        .collect())
}

fn post_event(post: &str) -> Event {
    Event::default().event("post").data(post)
}

/// A post deleted at its source: clients drop it from what they show.
fn deleted_event(post_id: &str) -> Event {
    let body = serde_json::json!({ "id": post_id });
    Event::default().event("deleted").data(body.to_string())
}

fn error_event(error: &ApiError) -> Event {
    let body = serde_json::json!({ "error": error.code, "detail": error.detail });
    Event::default().event("error").data(body.to_string())
}
