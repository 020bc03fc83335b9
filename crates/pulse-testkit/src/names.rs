//! Names no other test, test binary or earlier run uses, so that tests run in parallel
//! against one shared stack without seeing each other's topics, keyspaces or keys.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;

/// Names made by this process so far: two calls in one nanosecond still differ.
static MADE: AtomicU64 = AtomicU64::new(0);

/// `test` followed by this process's id, a per-process count and the clock's nanoseconds:
/// unique among concurrent processes (ids) and across runs (a reused id has moved on in
/// time). Keeps `test` as given; see [`keyspace`] for a CQL-safe form.
pub fn unique(test: &str) -> String {
    let count = MADE.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{test}_{}_{count}_{nanos}", std::process::id())
}

/// A fresh Cassandra keyspace name for `test`: lowercase letters, digits and `_`, starting
/// with `t_`, within CQL's 48 characters (`test` is shortened to 16 to stay inside them).
pub fn keyspace(test: &str) -> String {
    let stem: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(16)
        .collect();
    let count = MADE.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_subsec_nanos();
    format!("t_{stem}_{}_{count}_{nanos}", std::process::id())
}

/// A fresh Redis key prefix for `test`, under `pulse-test:` so that a developer can clear
/// every test's keys at once.
pub fn key_prefix(test: &str) -> String {
    format!("pulse-test:{}", unique(test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_and_keyspaces_are_valid_cql_identifiers() {
        let test = "A very-long test name/with ünicode and spaces";
        let names: std::collections::BTreeSet<String> =
            (0..1_000).map(|_| keyspace(test)).collect();
        assert_eq!(names.len(), 1_000);
        for name in &names {
            assert!(name.len() <= 48, "{name}");
            assert!(name.starts_with("t_a_very_long_te"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
        assert_ne!(unique("x"), unique("x"));
        assert!(key_prefix("speed").starts_with("pulse-test:speed_"));
    }
}
