//! Times as users write them on the command line and in query parameters.

use chrono::{DateTime, Utc};

/// A time as users write it (command line, query parameters): RFC 3339, a date (its midnight, UTC), `now`, or
/// `now-<n><m|h|d>`.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let now = Utc::now();
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix("now-") {
        let (number, unit) = ago.split_at(ago.len().saturating_sub(1));
        let n: i64 = number
            .parse()
            .map_err(|_| format!("{text:?}: expected now-<number><m|h|d>"))?;
        let minutes = match unit {
            "m" => n,
            "h" => n * 60,
            "d" => n * 1_440,
            _ => return Err(format!("{text:?}: the unit is m, h or d")),
        };
        return Ok(now - chrono::Duration::minutes(minutes));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
        .ok_or_else(|| format!("{text:?} is not a time: use RFC 3339, YYYY-MM-DD, now or now-48h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_users_write_them() {
        assert_eq!(
            parse_time("2026-11-01").unwrap(),
            "2026-11-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_time("2026-11-01T10:00:00+01:00").unwrap(),
            "2026-11-01T09:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let ago = Utc::now() - parse_time("now-2d").unwrap();
        assert!((ago.num_minutes() - 2_880).abs() <= 1, "{ago}");
        for bad in ["yesterday", "now-2w", "now-xh", "2026-13-01"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
