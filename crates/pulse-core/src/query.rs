//! The words of a query that the API, the CLI and both stores share: how far a live window
//! reaches, which series it carries, and a counted term. (A rollup's granularity is in
//! [`crate::bucket`].) The `openapi` feature derives their OpenAPI schemas.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How far back a live window reaches from now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Window {
    #[default]
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 3] = [Window::FiveMinutes, Window::Hour, Window::Day];

    /// Its length in minutes.
    pub fn minutes(self) -> i64 {
        match self {
            Window::FiveMinutes => 5,
            Window::Hour => 60,
            Window::Day => 1_440,
        }
    }

    /// The name queries use: `5m`, `1h` or `24h`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::FiveMinutes => "5m",
            Window::Hour => "1h",
            Window::Day => "24h",
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A window name that is not one of [`Window::ALL`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("window is 5m, 1h or 24h, not {0:?}")]
pub struct UnknownWindow(String);

impl FromStr for Window {
    type Err = UnknownWindow;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Window::ALL
            .into_iter()
            .find(|window| window.as_str() == name)
            .ok_or_else(|| UnknownWindow(name.to_string()))
    }
}

/// The buckets of a window's series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Series {
    /// One entry per minute: a read of every minute's counters.
    #[default]
    Minute,
    /// One entry per clock hour (the first and last may be partial): whole hours are read
    /// from hour counters, so a day takes 24 reads.
    Hour,
    /// No series, totals and terms only (read as for `hour`).
    None,
}

/// A term (a keyword, or an entity as `kind:text`) and the number of posts that had it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TermCount {
    /// The keyword, or the entity as `kind:text`.
    pub term: String,
    /// Posts that had the term.
    pub count: u64,
}

impl TermCount {
    /// Orders `terms` as every answer lists them: most posts first, then by term.
    pub fn rank(terms: &mut [TermCount]) {
        terms.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.term.cmp(&b.term)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_round_trip_through_their_names() {
        for window in Window::ALL {
            assert_eq!(window.as_str().parse::<Window>(), Ok(window));
            let json = serde_json::to_string(&window).unwrap();
            assert_eq!(json, format!("\"{window}\""));
            assert_eq!(serde_json::from_str::<Window>(&json).unwrap(), window);
        }
        assert_eq!(
            "2h".parse::<Window>().unwrap_err().to_string(),
            "window is 5m, 1h or 24h, not \"2h\""
        );
        assert_eq!(Window::Day.minutes(), 1_440);
    }

    #[test]
    fn terms_rank_by_posts_then_term() {
        let term = |term: &str, count| TermCount {
            term: term.into(),
            count,
        };
        let mut terms = vec![term("b", 2), term("c", 5), term("a", 2)];
        TermCount::rank(&mut terms);
        assert_eq!(terms, vec![term("c", 5), term("a", 2), term("b", 2)]);
    }
}
