//! The key layout. Every key of a channel carries the hash tag `{<channel>}`; braces and
//! percent signs in channel names are percent-encoded so the tag is always the channel.

use chrono::{DateTime, Utc};

/// Minutes since the Unix epoch of a time.
pub fn minute_of(time: DateTime<Utc>) -> i64 {
    time.timestamp().div_euclid(60)
}

/// Builds the speed layer's keys under a prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    fn channel(&self, channel: &str) -> String {
        let tag = channel
            .replace('%', "%25")
            .replace('{', "%7B")
            .replace('}', "%7D");
        format!("{}:{{{tag}}}", self.prefix)
    }

    /// Marks a post as applied.
    pub fn seen(&self, channel: &str, post_id: &str) -> String {
        format!("{}:seen:{post_id}", self.channel(channel))
    }

    /// Counters of one minute.
    pub fn minute(&self, channel: &str, minute: i64) -> String {
        format!("{}:m:{minute}", self.channel(channel))
    }

    /// Counters of one hour (the same fields as a minute's): long windows read 24 of these
    /// instead of 1,440 minutes.
    pub fn hour(&self, channel: &str, hour: i64) -> String {
        format!("{}:h:{hour}", self.channel(channel))
    }

    /// Keywords of one minute / hour.
    pub fn minute_keywords(&self, channel: &str, minute: i64) -> String {
        format!("{}:mk:{minute}", self.channel(channel))
    }
    pub fn hour_keywords(&self, channel: &str, hour: i64) -> String {
        format!("{}:hk:{hour}", self.channel(channel))
    }

    /// Entities (`kind:text`) of one minute / hour.
    pub fn minute_entities(&self, channel: &str, minute: i64) -> String {
        format!("{}:me:{minute}", self.channel(channel))
    }
    pub fn hour_entities(&self, channel: &str, hour: i64) -> String {
        format!("{}:he:{hour}", self.channel(channel))
    }

    /// Recent posts of the channel (a capped stream).
    pub fn feed(&self, channel: &str) -> String {
        format!("{}:feed", self.channel(channel))
    }

    /// Where the speed layer is in the log, per channel: field `<topic>:<partition>`, value
    /// the highest offset applied to this channel. Written by the script that applies the
    /// post, so it is exactly as durable as the counts it covers.
    pub fn positions(&self, channel: &str) -> String {
        format!("{}:pos", self.channel(channel))
    }

    /// A scratch key in the channel's slot for merging term sets. One key serves every
    /// reader: it is written, read and deleted inside one atomic script.
    pub fn scratch(&self, channel: &str) -> String {
        format!("{}:tmp", self.channel(channel))
    }

    /// The registry of channels: member = channel, score = last-seen time (ms).
    pub fn channels(&self) -> String {
        format!("{}:channels", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_channel_has_the_same_hash_tag() {
        let keys = Keys::new("p");
        assert_eq!(keys.minute("reddit/r/rust", 5), "p:{reddit/r/rust}:m:5");
        assert_eq!(keys.seen("a{b}%", "x"), "p:{a%7Bb%7D%25}:seen:x");
        assert_eq!(
            minute_of(DateTime::from_timestamp(-1, 0).unwrap_or_default()),
            -1
        );
    }
}
