//! Time buckets: the hours and days that the batch layer partitions and rolls up by.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The size of a rollup bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    /// Every granularity, finest first.
    pub const ALL: [Granularity; 2] = [Granularity::Hour, Granularity::Day];

    /// The name used in storage and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    fn millis(self) -> i64 {
        match self {
            Granularity::Hour => HOUR_MS,
            Granularity::Day => DAY_MS,
        }
    }

    /// Start of the bucket holding `time`.
    pub fn floor(self, time: DateTime<Utc>) -> DateTime<Utc> {
        let ms = time.timestamp_millis();
        from_millis(ms - ms.rem_euclid(self.millis()))
    }

    /// Start of the bucket after the one starting at `start`.
    pub fn next(self, start: DateTime<Utc>) -> DateTime<Utc> {
        from_millis(start.timestamp_millis() + self.millis())
    }

    /// How many buckets overlap `[from, to)`, computed without listing them (so a range of
    /// ten thousand years is refused before any work).
    pub fn count(self, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
        if from >= to {
            return 0;
        }
        let span =
            i128::from(to.timestamp_millis()) - i128::from(self.floor(from).timestamp_millis());
        let millis = i128::from(self.millis());
        u64::try_from((span + millis - 1) / millis).unwrap_or(u64::MAX)
    }

    /// Starts of the buckets overlapping `[from, to)`, oldest first.
    pub fn buckets(self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut starts = Vec::new();
        if from >= to {
            return starts;
        }
        let mut start = self.floor(from);
        while start < to {
            starts.push(start);
            start = self.next(start);
        }
        starts
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A granularity name that is neither `hour` nor `day`.
#[derive(Debug, thiserror::Error)]
#[error("granularity is hour or day, not {0:?}")]
pub struct UnknownGranularity(String);

impl FromStr for Granularity {
    type Err = UnknownGranularity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hour" => Ok(Granularity::Hour),
            "day" => Ok(Granularity::Day),
            other => Err(UnknownGranularity(other.to_string())),
        }
    }
}

/// Start of the calendar month (UTC) holding `time`.
pub fn month_of(time: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(time.year(), time.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(time)
}

/// Starts of the calendar months overlapping `[from, to)`, oldest first.
pub fn months(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut starts = Vec::new();
    if from >= to {
        return starts;
    }
    let mut start = month_of(from);
    while start < to {
        starts.push(start);
        let (year, month) = if start.month() == 12 {
            (start.year() + 1, 1)
        } else {
            (start.year(), start.month() + 1)
        };
        match Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single() {
            Some(next) => start = next,
            None => break,
        }
    }
    starts
}

/// A time from milliseconds since the epoch, clamped to what chrono can represent.
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn floors_and_spans() {
        let t = at("2026-11-23T13:45:12.345Z");
        assert_eq!(Granularity::Hour.floor(t), at("2026-11-23T13:00:00Z"));
        assert_eq!(Granularity::Day.floor(t), at("2026-11-23T00:00:00Z"));
        let hours =
            Granularity::Hour.buckets(at("2026-11-23T22:30:00Z"), at("2026-11-24T01:00:00Z"));
        assert_eq!(
            hours,
            vec![
                at("2026-11-23T22:00:00Z"),
                at("2026-11-23T23:00:00Z"),
                at("2026-11-24T00:00:00Z")
            ]
        );
        assert!(Granularity::Day.buckets(t, t).is_empty());
        assert_eq!("day".parse::<Granularity>().unwrap(), Granularity::Day);
        assert!("week".parse::<Granularity>().is_err());
    }

    #[test]
    fn counts_equal_the_listed_buckets_without_listing_them() {
        let edges = [
            "2026-11-23T22:30:00Z",
            "2026-11-23T23:00:00Z",
            "2026-11-24T00:00:00Z",
            "2026-11-24T00:00:00.001Z",
            "2026-11-26T13:59:59.999Z",
            "1969-12-31T23:30:00Z",
        ];
        for from in edges {
            for to in edges {
                for granularity in [Granularity::Hour, Granularity::Day] {
                    let (from, to) = (at(from), at(to));
                    let listed = granularity.buckets(from, to).len() as u64;
                    assert_eq!(granularity.count(from, to), listed, "{from} {to}");
                }
            }
        }
        let (first, last) = (at("0000-01-01T00:00:00Z"), at("9999-12-31T00:00:00Z"));
        assert_eq!(Granularity::Day.count(first, last), 3_652_424);
        assert_eq!(Granularity::Hour.count(first, last), 3_652_424 * 24);
    }

    #[test]
    fn months_cross_years() {
        assert_eq!(
            months(at("2026-11-30T00:00:00Z"), at("2027-01-01T00:00:01Z")),
            vec![
                at("2026-11-01T00:00:00Z"),
                at("2026-12-01T00:00:00Z"),
                at("2027-01-01T00:00:00Z")
            ]
        );
        assert_eq!(
            month_of(at("1969-12-31T23:59:59Z")),
            at("1969-12-01T00:00:00Z")
        );
    }
}
