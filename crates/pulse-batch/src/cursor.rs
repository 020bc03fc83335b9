//! The opaque paging cursor: the position of the last post of a page in newest-first order,
//! (creation time in milliseconds, id). The next page holds what sorts strictly after it.

use std::cmp::Ordering;

use crate::BatchError;

/// Where a page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_ms: i64,
    pub id: String,
}

impl Cursor {
    /// The opaque token handed to clients.
    pub fn encode(&self) -> String {
        hex::encode(format!("{}:{}", self.created_ms, self.id))
    }

    /// Reads a token made by [`encode`](Self::encode).
    pub fn decode(token: &str) -> Result<Self, BatchError> {
        let invalid = || BatchError::Query(format!("cursor {token:?} is not one this api issued"));
        let bytes = hex::decode(token).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (ms, id) = text.split_once(':').ok_or_else(invalid)?;
        Ok(Self {
            created_ms: ms.parse().map_err(|_| invalid())?,
            id: id.to_string(),
        })
    }

    /// Whether a row at (`created_ms`, `id`) comes after this cursor, newest first.
    pub fn precedes(&self, created_ms: i64, id: &str) -> bool {
        newest_first((created_ms, id), (self.created_ms, &self.id)) == Ordering::Greater
    }
}

/// Newest-first order of (creation ms, id) positions: later times first, then larger ids.
pub(crate) fn newest_first(a: (i64, &str), b: (i64, &str)) -> Ordering {
    b.0.cmp(&a.0).then_with(|| b.1.cmp(a.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let cursor = Cursor {
            created_ms: 1_790_000_000_123,
            id: "reddit:t1_a:b".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        for bad in ["", "zz", &hex::encode("no-colon"), &hex::encode("x:id")] {
            assert!(
                matches!(Cursor::decode(bad), Err(BatchError::Query(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn orders_newest_first_then_by_id() {
        let cursor = Cursor {
            created_ms: 100,
            id: "m".into(),
        };
        assert!(cursor.precedes(99, "z"));
        assert!(cursor.precedes(100, "a"));
        assert!(!cursor.precedes(100, "m"));
        assert!(!cursor.precedes(100, "n"));
        assert!(!cursor.precedes(101, "a"));
    }
}
