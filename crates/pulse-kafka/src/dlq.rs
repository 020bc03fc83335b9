//! Dead letters: the original bytes of a record no stage can use, with headers naming the
//! stage, the error and where the record came from.

use std::collections::BTreeMap;

use pulse_core::DeadLetterKind;
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// Where a dead letter came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A record of a Kafka topic.
    Record {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// A line of an ingested file (`path:line`) or another non-Kafka location.
    Location(String),
}

/// Why and where a record was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The stage that rejected it: `ingest`, `enrich`, `sink-batch`, ...
    pub stage: String,
    /// Why: a stable name in the `pulse.error.kind` header.
    pub error_kind: DeadLetterKind,
    /// The error, for people.
    pub error: String,
    pub origin: Origin,
}

/// Header names; stable, part of the DLQ's contract.
pub mod header {
    pub const STAGE: &str = "pulse.stage";
    pub const ERROR_KIND: &str = "pulse.error.kind";
    pub const ERROR: &str = "pulse.error";
    pub const TOPIC: &str = "pulse.origin.topic";
    pub const PARTITION: &str = "pulse.origin.partition";
    pub const OFFSET: &str = "pulse.origin.offset";
    pub const LOCATION: &str = "pulse.origin.location";
    /// Set on a dead letter whose payload was cut short (the broker refused it whole):
    /// the original payload's size in bytes.
    pub const PAYLOAD_BYTES: &str = "pulse.payload.bytes";
    /// `true` on a dead letter whose payload was cut short.
    pub const PAYLOAD_TRUNCATED: &str = "pulse.payload.truncated";
}

impl DeadLetter {
    /// The Kafka headers carrying this dead letter's metadata.
    pub fn headers(&self) -> OwnedHeaders {
        let mut pairs: Vec<(&str, String)> = vec![
            (header::STAGE, self.stage.clone()),
            (header::ERROR_KIND, self.error_kind.as_str().to_string()),
            (header::ERROR, self.error.clone()),
        ];
        match &self.origin {
            Origin::Record {
                topic,
                partition,
                offset,
            } => {
                pairs.push((header::TOPIC, topic.clone()));
                pairs.push((header::PARTITION, partition.to_string()));
                pairs.push((header::OFFSET, offset.to_string()));
            }
            Origin::Location(location) => pairs.push((header::LOCATION, location.clone())),
        }
        pairs.iter().fold(
            OwnedHeaders::new_with_capacity(pairs.len()),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                })
            },
        )
    }
}

/// Reads headers back as text (lossily for non-UTF-8 values), for tools and tests.
pub fn headers_as_map(headers: &impl Headers) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|h| {
            (
                h.key.to_string(),
                h.value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_stage_error_and_origin() {
        let letter = DeadLetter {
            stage: "enrich".into(),
            error_kind: DeadLetterKind::NotJson,
            error: "payload is not json: expected value".into(),
            origin: Origin::Record {
                topic: "raw".into(),
                partition: 3,
                offset: 42,
            },
        };
        let map = headers_as_map(&letter.headers());
        assert_eq!(map[header::STAGE], "enrich");
        assert_eq!(map[header::ERROR_KIND], "not_json");
        assert_eq!(map[header::PARTITION], "3");
        assert_eq!(map[header::OFFSET], "42");
        assert!(!map.contains_key(header::LOCATION));
    }
}
