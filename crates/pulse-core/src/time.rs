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
        let Some(unit_at) = ago.char_indices().last().map(|(at, _)| at) else {
            return Err(format!("{text:?}: expected now-<number><m|h|d>"));
        };
        let (number, unit) = ago.split_at(unit_at);
        let n: u32 = number
            .parse()
            .ok()
            .filter(|_| number.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("{text:?}: expected now-<number><m|h|d>"))?;
        let per_unit: i64 = match unit {
            "m" => 1,
            "h" => 60,
            "d" => 1_440,
            _ => return Err(format!("{text:?}: the unit is m, h or d")),
        };
        // Far enough back overflows the calendar: an error, never a panic.
        return chrono::Duration::try_minutes(i64::from(n) * per_unit)
            .and_then(|ago| now.checked_sub_signed(ago))
            .ok_or_else(|| format!("{text:?} is too far back"));
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
        for bad in [
            "yesterday",
            "now-2w",
            "now-xh",
            "2026-13-01",
            "now-",
            "now--5d",
            "now-+5d",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn out_of_range_times_are_errors_not_panics() {
        for far in [
            "now-100000000d",
            "now-4294967295d",
            "now-99999999999999999999d",
            "now-5é",
        ] {
            assert!(parse_time(far).is_err(), "{far}");
        }
        assert!(parse_time("now-4294967295m").is_ok());
    }
}
