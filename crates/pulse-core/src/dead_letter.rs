//! Why a record went to the DLQ: one kind per reason, with the stable name that is written in
//! the `pulse.error.kind` header and used as the `reason` label of
//! `pulse_records_dead_lettered_total`. Both are a public contract: names never change.

use std::fmt;

use serde::{Serialize, Serializer};

/// The reason a record was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeadLetterKind {
    /// A record with no payload.
    EmptyRecord,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// Text that is not JSON.
    NotJson,
    /// JSON that is not an object.
    NotAnObject,
    /// A required field of a post is absent.
    MissingField,
    /// A field of a post has the wrong type or an unacceptable value.
    InvalidField,
    /// A post whose text has nothing in it.
    EmptyText,
    /// A post whose text is over `enrich.max_text_bytes`.
    TextTooLong,
    /// A post whose `source` is not in `enrich.sources`.
    UnknownSource,
    /// A file line longer than `--max-line-bytes` (read no further).
    LineTooLong,
    /// A CSV record that cannot be read (bad quoting, wrong field count, over the size limit).
    InvalidCsv,
    /// A dump entry whose text was deleted or removed at the source.
    DeletedPost,
    /// A record on the enriched topic that is not an enriched post.
    NotEnrichedPost,
    /// An enriched post that cannot be serialized.
    Unserializable,
    /// A record over `kafka.max_record_bytes`, refused before it was sent (for the enrich
    /// stage: the post grew past the limit once enriched).
    RecordTooLarge,
    /// A record the broker refused for good (too large or invalid for its topic).
    RefusedByBroker,
    /// A post a store refuses for good: a key or value the batch layer cannot hold, a channel
    /// too long for an archive folder name.
    InvalidForStore,
}

impl DeadLetterKind {
    /// Every kind, in declaration order.
    pub const ALL: [DeadLetterKind; 17] = [
        DeadLetterKind::EmptyRecord,
        DeadLetterKind::InvalidUtf8,
        DeadLetterKind::NotJson,
        DeadLetterKind::NotAnObject,
        DeadLetterKind::MissingField,
        DeadLetterKind::InvalidField,
        DeadLetterKind::EmptyText,
        DeadLetterKind::TextTooLong,
        DeadLetterKind::UnknownSource,
        DeadLetterKind::LineTooLong,
        DeadLetterKind::InvalidCsv,
        DeadLetterKind::DeletedPost,
        DeadLetterKind::NotEnrichedPost,
        DeadLetterKind::Unserializable,
        DeadLetterKind::RecordTooLarge,
        DeadLetterKind::RefusedByBroker,
        DeadLetterKind::InvalidForStore,
    ];

    /// The stable name (header value, metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::EmptyRecord => "empty_record",
            DeadLetterKind::InvalidUtf8 => "invalid_utf8",
            DeadLetterKind::NotJson => "not_json",
            DeadLetterKind::NotAnObject => "not_an_object",
            DeadLetterKind::MissingField => "missing_field",
            DeadLetterKind::InvalidField => "invalid_field",
            DeadLetterKind::EmptyText => "empty_text",
            DeadLetterKind::TextTooLong => "text_too_long",
            DeadLetterKind::UnknownSource => "unknown_source",
            DeadLetterKind::LineTooLong => "line_too_long",
            DeadLetterKind::InvalidCsv => "invalid_csv",
            DeadLetterKind::DeletedPost => "deleted_post",
            DeadLetterKind::NotEnrichedPost => "not_enriched_post",
            DeadLetterKind::Unserializable => "unserializable",
            DeadLetterKind::RecordTooLarge => "record_too_large",
            DeadLetterKind::RefusedByBroker => "refused_by_broker",
            DeadLetterKind::InvalidForStore => "invalid_for_store",
        }
    }

    /// The kind with this stable name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DeadLetterKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_round_trip() {
        let names: std::collections::BTreeSet<&str> =
            DeadLetterKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), DeadLetterKind::ALL.len());
        for kind in DeadLetterKind::ALL {
            assert_eq!(DeadLetterKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(DeadLetterKind::from_name("no_such_kind"), None);
    }
}
