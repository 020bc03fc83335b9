//! Pulse's batch layer on ScyllaDB/Cassandra: the full history of enriched posts and the
//! exact rollups computed from it.
//!
//! It owns the schema (`schema.cql`, applied by [`schema::apply`]), the idempotent writer the
//! batch sink uses, the historical reads (a channel's posts in a time range with filters and
//! cursor paging, a post by id, posts mentioning a term), the deletion of posts deleted at
//! their source, and `recompute`: exact hour and day rollups and top terms rebuilt from the
//! stored posts, then the batch watermark advanced.
//!
//! Partitions are bounded by time buckets; a range read enumerates the buckets it spans,
//! newest first, reads only the rows of the range from each (clustering order and range
//! predicates do the work on the server) and pages with the driver's paging state.

mod cursor;
mod delete;
mod read;
mod recompute;
pub mod schema;
mod session;
mod write;

pub use cursor::Cursor;
pub use delete::Deletion;
pub use read::{MentionQuery, PostPage, PostQuery, TermKind};
pub use recompute::{
    settled_end, RecomputeProgress, RecomputeReport, Rollup, RECOMPUTE_SETTLE, ROLLUPS_VIEW,
};
pub use session::BatchStore;
pub use write::WriteReport;

/// An error of the batch layer.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The configuration cannot work (bad keyspace name, unknown consistency, ...).
    #[error("invalid batch configuration: {0}")]
    Config(String),
    /// No contact point answered.
    #[error("cannot connect to cql nodes {nodes}: {detail}")]
    Connect { nodes: String, detail: String },
    /// A request failed (node down, timeout, schema missing, ...): worth retrying later.
    #[error("cql {action} failed: {detail}")]
    Cql {
        action: &'static str,
        detail: String,
    },
    /// The caller asked for something that cannot be answered (bad range, bad cursor).
    #[error("invalid query: {0}")]
    Query(String),
    /// The store refuses a value for good (a key over 64 KiB, a value it cannot hold):
    /// writing it again cannot succeed.
    #[error("cql {action} refused: {detail}")]
    Refused {
        action: &'static str,
        detail: String,
    },
}

/// A driver error, with what was being done.
pub(crate) fn cql(action: &'static str, error: impl std::fmt::Display) -> BatchError {
    BatchError::Cql {
        action,
        detail: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: T) {}

    /// Roles and API handlers run these on a multi-threaded runtime.
    #[allow(dead_code)]
    fn futures_are_send(store: &BatchStore, query: &PostQuery, mentions: &MentionQuery) {
        assert_send(store.write(&[]));
        assert_send(store.posts(query));
        assert_send(store.post("id"));
        assert_send(store.mentioning(mentions));
        assert_send(store.recompute(None, chrono::Utc::now(), &|_| {}));
        assert_send(store.rollups(
            "c",
            pulse_core::Granularity::Hour,
            chrono::Utc::now(),
            chrono::Utc::now(),
        ));
        assert_send(store.watermark());
    }
}
