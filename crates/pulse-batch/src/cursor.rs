//! The opaque paging cursor of range reads: which query it continues (a fingerprint of the
//! query's channel or term and filters), the range as the first page resolved it (so
//! `from=now-1h` does not move while paging), the time bucket (hour or day partition) the
//! next page starts in, and the driver's paging state inside that partition, if the
//! previous page ended in its middle. The server resumes exactly after the last row read,
//! so a page never re-reads rows and never skips any, whatever was written meanwhile.

use sha2::{Digest, Sha256};

use crate::BatchError;

/// Where the next page of a range read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The query this cursor continues ([`fingerprint`]).
    pub query: u64,
    /// The range of the first page, in milliseconds: `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Start of the partition's time bucket, in milliseconds.
    pub partition_ms: i64,
    /// The driver's paging state in that partition; `None`: from its newest row.
    pub paging_state: Option<Vec<u8>>,
}

/// Version tag of the encoding, so old cursors are told apart from garbage.
const VERSION: &str = "p3";

impl Cursor {
    /// The opaque token handed to clients.
    pub fn encode(&self) -> String {
        let state = self
            .paging_state
            .as_deref()
            .map(hex::encode)
            .unwrap_or_default();
        hex::encode(format!(
            "{VERSION}:{:016x}:{}:{}:{}:{state}",
            self.query, self.from_ms, self.to_ms, self.partition_ms
        ))
    }

    /// Reads a token made by [`encode`](Self::encode).
    pub fn decode(token: &str) -> Result<Self, BatchError> {
        let invalid = || BatchError::Query("the cursor is not one this api issued".to_string());
        let bytes = hex::decode(token).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let parts: Vec<&str> = text.split(':').collect();
        let [VERSION, query, from, to, partition, state] = parts[..] else {
            return Err(invalid());
        };
        let (from_ms, to_ms): (i64, i64) = (
            from.parse().map_err(|_| invalid())?,
            to.parse().map_err(|_| invalid())?,
        );
        if from_ms >= to_ms {
            return Err(invalid());
        }
        Ok(Self {
            query: u64::from_str_radix(query, 16).map_err(|_| invalid())?,
            from_ms,
            to_ms,
            partition_ms: partition.parse().map_err(|_| invalid())?,
            paging_state: match state {
                "" => None,
                state => Some(hex::decode(state).map_err(|_| invalid())?),
            },
        })
    }

    /// Checks that this cursor continues the query with `fingerprint`.
    pub(crate) fn check(&self, fingerprint: u64) -> Result<(), BatchError> {
        if self.query == fingerprint {
            Ok(())
        } else {
            Err(BatchError::Query(
                "the cursor belongs to another query (channel or term and filters must stay \
                 the same while paging)"
                    .to_string(),
            ))
        }
    }
}

/// A stable fingerprint of a query's identity: what a cursor may continue.
pub(crate) fn fingerprint(parts: &[&str]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let cursor = Cursor {
            query: fingerprint(&["reddit/r/rust", "1", "2"]),
            from_ms: 1_789_000_000_000,
            to_ms: 1_791_000_000_000,
            partition_ms: 1_790_000_000_000,
            paging_state: Some(vec![0, 1, 2, 255]),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        let fresh = Cursor {
            paging_state: None,
            ..cursor.clone()
        };
        assert_eq!(Cursor::decode(&fresh.encode()).unwrap(), fresh);
        for bad in [
            "",
            "zz",
            &hex::encode("no-colon"),
            &hex::encode("p3:xyz:1:2:1:"),
            &hex::encode("p3:00:1:2:1:0g"),
            &hex::encode("p3:00:2:1:1:"),
            &hex::encode("p2:00:1:"),
            &hex::encode("p3:00:1:2:1::extra"),
        ] {
            assert!(
                matches!(Cursor::decode(bad), Err(BatchError::Query(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_cursor_only_continues_its_own_query() {
        let query = fingerprint(&["c", "1", "2"]);
        let cursor = Cursor {
            query,
            from_ms: 0,
            to_ms: 1,
            partition_ms: 0,
            paging_state: None,
        };
        assert!(cursor.check(query).is_ok());
        assert!(cursor.check(fingerprint(&["c", "1", "3"])).is_err());
        // Parts are length-prefixed: moving a boundary changes the fingerprint.
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}
