//! The configuration of one Bluesky source instance (`[sources.bluesky.<name>]`).

use pulse_core::config::SourceSection;
use serde::{Deserialize, Serialize};

use crate::live::{read_section, SourceError};

/// A channel of Bluesky posts: those matching any of its terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// The channel is `bluesky/<name>`.
    pub name: String,
    /// `#tag` matches the hashtag (whole tag, any case); other terms match as words or
    /// phrases (any case).
    pub terms: Vec<String>,
}

/// One Bluesky source instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlueskyConfig {
    /// The Jetstream endpoint (`/subscribe` is added).
    pub jetstream_url: String,
    /// Channels by terms; none: every post, in `bluesky/all`.
    pub channels: Vec<Channel>,
    /// Only posts in these languages (the record's `langs`); empty: any.
    pub langs: Vec<String>,
    /// No message for this long: the connection is stalled and is reopened.
    pub read_timeout_ms: u64,
    /// First wait after a failed connection; doubles up to `backoff_max_ms`, shortened by
    /// up to half at random.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Post URIs remembered to skip repeats (a resumed connection replays a little).
    pub seen_capacity: usize,
    /// Posts remembered with their channel so that their deletion can be told to the
    /// stores (each about 120 bytes of checkpoint); older deletions are missed.
    pub tracked_capacity: usize,
    /// Largest message read; larger ones are skipped.
    pub max_message_bytes: usize,
}

impl Default for BlueskyConfig {
    fn default() -> Self {
        Self {
            jetstream_url: "wss://jetstream2.us-east.bsky.network".into(),
            channels: Vec::new(),
            langs: Vec::new(),
            read_timeout_ms: 60_000,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            seen_capacity: 5_000,
            tracked_capacity: 2_000,
            max_message_bytes: 1 << 20,
        }
    }
}

impl BlueskyConfig {
    /// Reads the section of instance `name`, rejecting unknown keys with their name.
    pub fn from_section(name: &str, section: &SourceSection) -> Result<Self, SourceError> {
        let config: BlueskyConfig = read_section("bluesky", name, section)?;
        config.check(name)?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn check(&self, name: &str) -> Result<(), SourceError> {
        let invalid = |key: &str, reason: String| SourceError::Config {
            key: format!("sources.bluesky.{name}.{key}"),
            reason,
        };
        if !(self.jetstream_url.starts_with("ws://") || self.jetstream_url.starts_with("wss://")) {
            return Err(invalid(
                "jetstream_url",
                "must be a ws:// or wss:// url".into(),
            ));
        }
        for channel in &self.channels {
            let name_ok = !channel.name.is_empty()
                && channel
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
            if !name_ok {
                return Err(invalid(
                    "channels",
                    format!("`{}` must be letters, digits, _ or -", channel.name),
                ));
            }
            if channel
                .terms
                .iter()
                .all(|t| t.trim().trim_start_matches('#').is_empty())
            {
                return Err(invalid(
                    "channels",
                    format!("channel `{}` needs at least one term", channel.name),
                ));
            }
        }
        Ok(())
    }
}
