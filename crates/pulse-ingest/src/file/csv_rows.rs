//! CSV with a header row: known columns (`id`, `source`, `channel`, `author`, `text`,
//! `created_at`, `url`, `lang`, `parent_id`) become post fields, other columns are kept as
//! extra string fields.

use std::io::BufRead;

use pulse_core::validate::post_from_value;
use pulse_core::DeadLetterKind;
use serde_json::{Map, Value};

use super::{FileContext, FileError};
use crate::SourceItem;

pub(super) struct CsvRows {
    rows: csv::Reader<Box<dyn BufRead + Send>>,
    header: Vec<String>,
    context: FileContext,
    finished: bool,
}

impl CsvRows {
    pub(super) fn new(
        reader: Box<dyn BufRead + Send>,
        context: FileContext,
    ) -> Result<Self, FileError> {
        let mut rows = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(reader);
        let header: Vec<String> = rows
            .byte_headers()
            .map_err(|e| FileError::Header {
                path: context.display.clone(),
                reason: e.to_string(),
            })?
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim().to_ascii_lowercase())
            .collect();
        if !header.iter().any(|h| h == "text") {
            return Err(FileError::NoTextColumn {
                path: context.display.clone(),
                columns: printable(&header.join(","), 200),
            });
        }
        Ok(Self {
            rows,
            header,
            context,
            finished: false,
        })
    }
}

/// `text` cut to `most` characters with control characters escaped, for an error message
/// that names what a file holds without writing raw bytes to a terminal.
fn printable(text: &str, most: usize) -> String {
    let mut shown: String = text
        .chars()
        .take(most)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(most).is_some() {
        shown.push_str("...");
    }
    shown
}

impl Iterator for CsvRows {
    type Item = Result<SourceItem, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let mut record = csv::ByteRecord::new();
        let read = self.rows.read_byte_record(&mut record);
        let line = record
            .position()
            .map(|p| p.line())
            .unwrap_or_else(|| self.rows.position().line());
        let context = &self.context;
        let malformed = |kind: DeadLetterKind, error: String, raw: Vec<u8>| {
            Some(Ok(SourceItem::Malformed {
                location: context.location(line),
                kind,
                error,
                raw,
            }))
        };
        match read {
            Ok(false) => {
                self.finished = true;
                return None;
            }
            Ok(true) => {}
            Err(error) => {
                if let csv::ErrorKind::Io(_) = error.kind() {
                    self.finished = true;
                    let source = std::io::Error::other(error.to_string());
                    return Some(Err(FileError::Read {
                        path: context.display.clone(),
                        line,
                        source,
                    }));
                }
                let line = error.position().map(|p| p.line()).unwrap_or(line);
                return Some(Ok(SourceItem::Malformed {
                    location: context.location(line),
                    kind: DeadLetterKind::InvalidCsv,
                    error: format!("invalid csv record: {error}"),
                    raw: record.as_slice().to_vec(),
                }));
            }
        }
        let raw = record.iter().collect::<Vec<_>>().join(&b","[..]);
        let mut object = Map::new();
        for (column, field) in self.header.iter().zip(record.iter()) {
            let Ok(field) = std::str::from_utf8(field) else {
                return malformed(
                    DeadLetterKind::InvalidUtf8,
                    format!("column `{column}` is not valid utf-8"),
                    raw,
                );
            };
            if field.is_empty() && column != "text" {
                continue;
            }
            object.insert(column.clone(), Value::String(field.to_string()));
        }
        let mut default = |field: &str, value: String| {
            object
                .entry(field.to_string())
                .or_insert(Value::String(value));
        };
        default("id", context.derived_id(line));
        default("source", "file".into());
        default("channel", context.channel.clone());
        default("created_at", context.derived_time(line).to_rfc3339());
        match post_from_value(Value::Object(object), &context.limits) {
            Ok(post) => Some(Ok(SourceItem::Post {
                post: Box::new(post),
                location: context.location(line),
            })),
            Err(rejection) => malformed(rejection.kind(), rejection.to_string(), raw),
        }
    }
}
