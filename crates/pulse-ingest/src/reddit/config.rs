//! The configuration of one Reddit source instance (`[sources.reddit.<name>]`).

use pulse_core::config::SourceSection;
use serde::{Deserialize, Serialize};

use crate::live::{read_section, SourceError};

/// How the source obtains its OAuth2 token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// A script app acting as its developer's account: client id, secret, username,
    /// password.
    Password,
    /// App-only access: client id and secret.
    ClientCredentials,
    /// An installed app: client id (no secret) and a device id.
    InstalledClient,
}

/// Which listing of the subreddits to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Listing {
    /// New submissions (`/r/{subs}/new`).
    Submissions,
    /// New comments (`/r/{subs}/comments`).
    Comments,
}

impl Listing {
    pub fn path(self) -> &'static str {
        match self {
            Listing::Submissions => "new",
            Listing::Comments => "comments",
        }
    }
}

/// One Reddit source instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedditConfig {
    /// Subreddits followed, without `r/` (joined with `+` in one listing request).
    pub subreddits: Vec<String>,
    pub listings: Vec<Listing>,
    pub grant: Grant,
    pub client_id: String,
    /// Secret of a script or web app (not needed by an installed app).
    pub client_secret: String,
    /// The account of a script app (password grant).
    pub username: String,
    pub password: String,
    /// Device id of the installed-client grant.
    pub device_id: String,
    /// Sent with every request; Reddit requires `<platform>:<app id>:<version> (by /u/<user>)`.
    /// Empty: built from the client id and `reddit_user`.
    pub user_agent: String,
    /// The Reddit account named in the default user agent.
    pub reddit_user: String,
    /// Where tokens come from (Reddit: https://www.reddit.com).
    pub auth_url: String,
    /// Where API calls go (Reddit: https://oauth.reddit.com).
    pub api_url: String,
    /// Wait between polls of the listings once caught up.
    pub poll_interval_ms: u64,
    /// Own cap per client id; Reddit allows 100 a minute, so higher values are lowered.
    pub max_requests_per_minute: u32,
    /// Pages of 100 read back per listing per poll before giving up on reaching a seen
    /// item (a burst larger than that is partly missed, and counted).
    pub max_pages: u32,
    /// Pages read on the very first poll (no checkpoint yet).
    pub first_pages: u32,
    /// Fullnames remembered to skip items already handed out.
    pub seen_capacity: usize,
    /// Items younger than this are rechecked for edits and deletions (0: never).
    pub recheck_age_secs: u64,
    /// Wait between two rechecks of the tracked items.
    pub recheck_interval_ms: u64,
    /// Most items tracked for rechecks; the oldest are dropped beyond it. Each costs about
    /// 100 bytes of checkpoint, which must stay under `kafka.max_record_bytes`.
    pub recheck_max: usize,
    /// First wait after a 5xx, a 429 without reset header or a network error; it doubles
    /// up to `backoff_max_ms`, shortened by up to half at random.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub request_timeout_ms: u64,
    /// Largest response body read; a larger one is skipped as a bad response.
    pub max_body_bytes: usize,
}

impl Default for RedditConfig {
    fn default() -> Self {
        Self {
            subreddits: Vec::new(),
            listings: vec![Listing::Submissions, Listing::Comments],
            grant: Grant::ClientCredentials,
            client_id: String::new(),
            client_secret: String::new(),
            username: String::new(),
            password: String::new(),
            device_id: "DO_NOT_TRACK_THIS_DEVICE".into(),
            user_agent: String::new(),
            reddit_user: String::new(),
            auth_url: "https://www.reddit.com".into(),
            api_url: "https://oauth.reddit.com".into(),
            poll_interval_ms: 15_000,
            max_requests_per_minute: 100,
            max_pages: 10,
            first_pages: 1,
            seen_capacity: 5_000,
            recheck_age_secs: 36 * 3_600,
            recheck_interval_ms: 300_000,
            recheck_max: 5_000,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 300_000,
            request_timeout_ms: 30_000,
            max_body_bytes: 16 << 20,
        }
    }
}

impl RedditConfig {
    /// Reads the section of instance `name`, rejecting unknown keys and incomplete
    /// credentials with the key they concern.
    pub fn from_section(name: &str, section: &SourceSection) -> Result<Self, SourceError> {
        let config: RedditConfig = read_section("reddit", name, section)?;
        config.check(name)?;
        Ok(config)
    }

    /// Checks what serde cannot: required keys for the grant, subreddit names.
    pub fn check(&self, name: &str) -> Result<(), SourceError> {
        let missing = |key: &str, why: &str| SourceError::Config {
            key: format!("sources.reddit.{name}.{key}"),
            reason: format!("must be set {why}"),
        };
        if self.subreddits.is_empty() {
            return Err(missing("subreddits", "(the subreddits to follow)"));
        }
        if let Some(bad) = self.subreddits.iter().find(|s| !valid_subreddit(s)) {
            return Err(SourceError::Config {
                key: format!("sources.reddit.{name}.subreddits"),
                reason: format!("`{bad}` is not a subreddit name (letters, digits, _; 2-21)"),
            });
        }
        if self.listings.is_empty() {
            return Err(missing("listings", "(submissions, comments or both)"));
        }
        if self.client_id.is_empty() {
            return Err(missing("client_id", "(the id of your Reddit app)"));
        }
        match self.grant {
            Grant::Password | Grant::ClientCredentials if self.client_secret.is_empty() => {
                return Err(missing("client_secret", "for this grant"))
            }
            Grant::Password if self.username.is_empty() || self.password.is_empty() => {
                return Err(missing("username and password", "for the password grant"))
            }
            _ => {}
        }
        if self.user_agent.is_empty() && self.reddit_user.is_empty() && self.username.is_empty() {
            return Err(missing(
                "user_agent or reddit_user",
                "(Reddit requires a user agent naming your account)",
            ));
        }
        Ok(())
    }

    /// The user agent sent with every request.
    pub fn user_agent(&self) -> String {
        if !self.user_agent.is_empty() {
            return self.user_agent.clone();
        }
        let user = if self.reddit_user.is_empty() {
            &self.username
        } else {
            &self.reddit_user
        };
        format!(
            "linux:pulse.{}:{} (by /u/{user})",
            self.client_id,
            env!("CARGO_PKG_VERSION")
        )
    }
}

fn valid_subreddit(name: &str) -> bool {
    (2..=21).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(value: serde_json::Value) -> SourceSection {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn errors_name_their_key() {
        let ok = json!({"subreddits": ["rust"], "client_id": "id", "client_secret": "s", "reddit_user": "me"});
        let config = RedditConfig::from_section("main", &section(ok.clone())).unwrap();
        assert_eq!(
            config.user_agent(),
            format!("linux:pulse.id:{} (by /u/me)", env!("CARGO_PKG_VERSION"))
        );
        let mut typo = ok.clone();
        typo["subredits"] = json!(["x"]);
        let err = RedditConfig::from_section("main", &section(typo))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sources.reddit.main") && err.contains("subredits"),
            "{err}"
        );
        let mut password = ok.clone();
        password["grant"] = json!("password");
        let err = RedditConfig::from_section("main", &section(password))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sources.reddit.main.username and password"),
            "{err}"
        );
        let mut bad = ok;
        bad["subreddits"] = json!(["rust", "r/rust"]);
        let err = RedditConfig::from_section("main", &section(bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`r/rust`"), "{err}");
    }
}
