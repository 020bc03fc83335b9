//! The configuration of one X (Twitter) source instance (`[sources.x.<name>]`).

use pulse_core::config::SourceSection;
use serde::{Deserialize, Serialize};

use crate::live::{read_section, SourceError};

/// How the source reads X.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The filtered stream, with rules synced from `rules`; gaps after a reconnect are
    /// filled by recent search.
    Stream,
    /// Recent search polled with `since_id`, one query per rule (for access levels
    /// without the stream).
    Search,
}

/// A filtered-stream rule: its query and the tag that names its channel (`x/<tag>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub tag: String,
    pub value: String,
}

/// One X source instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XConfig {
    pub mode: Mode,
    /// The app's bearer token (App-only authentication).
    pub bearer_token: String,
    pub rules: Vec<Rule>,
    /// Where API calls go.
    pub api_url: String,
    /// No byte (not even a keep-alive newline, sent every 20 s) for this long: the stream
    /// is stalled and is reconnected.
    pub read_timeout_ms: u64,
    /// Wait between two polls in search mode.
    pub poll_interval_ms: u64,
    /// Pages of recent search read per rule when filling a gap or polling.
    pub max_search_pages: u32,
    /// Own cap of recent-search requests in X's 15-minute window, a ceiling over what
    /// X's `x-rate-limit-*` headers allow (lower it to your access level's limit).
    pub max_search_requests: u32,
    /// Ids remembered to skip posts already handed out (the stream and the search that
    /// fills its gaps overlap).
    pub seen_capacity: usize,
    /// Multiplies every documented backoff wait (1 in production; tests shrink it).
    pub backoff_scale: f64,
    pub request_timeout_ms: u64,
    /// Longest line of the stream, or body of a search answer; longer ones are skipped.
    pub max_line_bytes: usize,
}

impl Default for XConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Stream,
            bearer_token: String::new(),
            rules: Vec::new(),
            api_url: "https://api.x.com".into(),
            read_timeout_ms: 30_000,
            poll_interval_ms: 60_000,
            max_search_pages: 10,
            max_search_requests: 450,
            seen_capacity: 10_000,
            backoff_scale: 1.0,
            request_timeout_ms: 30_000,
            max_line_bytes: 4 << 20,
        }
    }
}

impl XConfig {
    /// Reads the section of instance `name`, rejecting unknown keys and missing ones with
    /// the key they concern.
    pub fn from_section(name: &str, section: &SourceSection) -> Result<Self, SourceError> {
        let config: XConfig = read_section("x", name, section)?;
        config.check(name)?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn check(&self, name: &str) -> Result<(), SourceError> {
        let invalid = |key: &str, reason: &str| SourceError::Config {
            key: format!("sources.x.{name}.{key}"),
            reason: reason.into(),
        };
        if self.bearer_token.is_empty() {
            return Err(invalid(
                "bearer_token",
                "must be set (the app's bearer token)",
            ));
        }
        if self.rules.is_empty() {
            return Err(invalid("rules", "must name at least one { tag, value }"));
        }
        let mut tags: Vec<&str> = self.rules.iter().map(|r| r.tag.as_str()).collect();
        tags.sort_unstable();
        if tags.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("rules", "two rules share a tag"));
        }
        for rule in &self.rules {
            let tag_ok = !rule.tag.is_empty()
                && rule.tag.len() <= 64
                && rule
                    .tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-#".contains(c));
            if !tag_ok {
                return Err(invalid(
                    "rules",
                    &format!("tag `{}` must be 1-64 letters, digits, _, - or #", rule.tag),
                ));
            }
            if rule.value.trim().is_empty() || rule.value.len() > 1_024 {
                return Err(invalid(
                    "rules",
                    &format!("the value of rule `{}` must be 1-1024 characters", rule.tag),
                ));
            }
        }
        if !(self.backoff_scale > 0.0 && self.backoff_scale.is_finite()) {
            return Err(invalid("backoff_scale", "must be a positive number"));
        }
        Ok(())
    }
}
