//! CSV with a header row: known columns (`id`, `source`, `channel`, `author`, `text`,
//! `created_at`, `url`, `lang`, `parent_id`) become post fields, other columns are kept as
//! extra string fields.

use std::collections::VecDeque;
use std::io::BufRead;

use pulse_core::validate::post_from_value;
use pulse_core::DeadLetterKind;
use serde_json::{Map, Value};

use super::lines::{read_line, Line};
use super::{FileContext, FileError};
use crate::SourceItem;

/// The rows of a CSV file. Records are cut from the input here, not by the csv crate, so
/// that a record is bounded like a line (`--max-line-bytes`): a quoted field may span
/// lines, but a record that grows past the bound (a huge field, or a quote never closed)
/// is reported at its first line and reading resumes at its second, so one bad quote
/// costs one row, not the rest of the file.
pub(super) struct CsvRows {
    lines: Box<dyn BufRead + Send>,
    /// Lines read ahead and given back by a record that was cut short, with their numbers.
    pending: VecDeque<(u64, Line)>,
    /// The number of the next line read from the input.
    next_line: u64,
    header: Vec<String>,
    context: FileContext,
    finished: bool,
}

/// What the input holds next.
enum Record {
    /// A whole record (one or more lines) starting at `line`.
    Rows { line: u64, bytes: Vec<u8> },
    /// A record over the bound, or a quote still open at the end of the input: its first
    /// line, which is reported; the lines after it are read again.
    Unbounded {
        line: u64,
        first: Vec<u8>,
        kind: DeadLetterKind,
        reason: String,
    },
}

impl CsvRows {
    pub(super) fn new(
        reader: Box<dyn BufRead + Send>,
        context: FileContext,
    ) -> Result<Self, FileError> {
        let mut rows = Self {
            lines: reader,
            pending: VecDeque::new(),
            next_line: 1,
            header: Vec::new(),
            context,
            finished: false,
        };
        let header_error = |context: &FileContext, reason: String| FileError::Header {
            path: context.display.clone(),
            reason,
        };
        let header = match rows.next_record() {
            Ok(Some(Record::Rows { bytes, .. })) => {
                parse(&bytes).map_err(|error| header_error(&rows.context, error))?
            }
            Ok(Some(Record::Unbounded { reason, .. })) => {
                return Err(header_error(&rows.context, reason))
            }
            Ok(None) => return Err(header_error(&rows.context, "the file is empty".into())),
            Err(error) => return Err(error),
        };
        rows.header = header
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim().to_ascii_lowercase())
            .collect();
        if !rows.header.iter().any(|h| h == "text") {
            return Err(FileError::NoTextColumn {
                path: rows.context.display.clone(),
                columns: printable(&rows.header.join(","), 200),
            });
        }
        Ok(rows)
    }

    /// The next line, from those given back first; `None` at the end of the input.
    fn line(&mut self) -> Result<Option<(u64, Line)>, FileError> {
        if let Some(given_back) = self.pending.pop_front() {
            return Ok(Some(given_back));
        }
        let number = self.next_line;
        match read_line(&mut *self.lines, self.context.max_line_bytes) {
            Ok(Some(line)) => {
                self.next_line += 1;
                Ok(Some((number, line)))
            }
            Ok(None) => Ok(None),
            Err(source) => Err(FileError::Read {
                path: self.context.display.clone(),
                line: number,
                source,
            }),
        }
    }

    /// The next record: lines joined while a quote is open, at most `max_line_bytes`.
    fn next_record(&mut self) -> Result<Option<Record>, FileError> {
        let max = self.context.max_line_bytes;
        let mut lines: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut size = 0usize;
        let mut open_quote = false;
        while let Some((number, line)) = self.line()? {
            let bytes = match line {
                Line::Bytes(bytes) => bytes,
                Line::TooLong { bytes, prefix } => {
                    let reason = format!("a line of {bytes} bytes, over the limit of {max}");
                    if lines.is_empty() {
                        return Ok(Some(Record::Unbounded {
                            line: number,
                            first: prefix,
                            kind: DeadLetterKind::LineTooLong,
                            reason,
                        }));
                    }
                    // The quoted record so far is cut short and read again from its second
                    // line; this line is given back too (after those), to be reported by
                    // itself.
                    self.pending
                        .push_front((number, Line::TooLong { bytes, prefix }));
                    let reason =
                        format!("a quoted record that runs into {reason} at line {number}");
                    return Ok(Some(self.cut_short(lines, reason)));
                }
            };
            if lines.is_empty() && bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            size += bytes.len() + 1;
            open_quote = quote_open_after(&bytes, open_quote);
            lines.push((number, bytes));
            if !open_quote {
                break;
            }
            if size > max {
                let reason = format!("a quoted record over {max} bytes (a quote never closed?)");
                return Ok(Some(self.cut_short(lines, reason)));
            }
        }
        let Some(&(line, _)) = lines.first() else {
            return Ok(None);
        };
        if open_quote {
            return Ok(Some(self.cut_short(
                lines,
                "a quote still open at the end of the file".to_string(),
            )));
        }
        let bytes = lines
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect::<Vec<_>>()
            .join(&b'\n');
        Ok(Some(Record::Rows { line, bytes }))
    }

    /// Reports the first of `lines` and gives the others back to be read again.
    fn cut_short(&mut self, mut lines: Vec<(u64, Vec<u8>)>, reason: String) -> Record {
        let (line, first) = lines.remove(0);
        for (number, bytes) in lines.into_iter().rev() {
            self.pending.push_front((number, Line::Bytes(bytes)));
        }
        Record::Unbounded {
            line,
            first,
            kind: DeadLetterKind::InvalidCsv,
            reason,
        }
    }
}

/// Whether a quoted field is still open after `line`, given whether one was open before
/// it. As the csv crate reads: a quote opens a field only at the field's start, `""` inside
/// a quoted field is a quote, and a quote inside an unquoted field is a plain character.
fn quote_open_after(line: &[u8], open_before: bool) -> bool {
    let mut quoted = open_before;
    let mut at_field_start = !open_before;
    let mut bytes = line.iter().peekable();
    while let Some(&byte) = bytes.next() {
        if quoted {
            if byte == b'"' {
                if bytes.peek() == Some(&&b'"') {
                    bytes.next();
                } else {
                    quoted = false;
                }
            }
        } else if byte == b'"' && at_field_start {
            quoted = true;
            at_field_start = false;
        } else {
            at_field_start = byte == b',';
        }
    }
    quoted
}

/// The fields of one record, cut from the input by [`CsvRows::next_record`].
fn parse(bytes: &[u8]) -> Result<csv::ByteRecord, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    reader
        .read_byte_record(&mut record)
        .map_err(|error| error.to_string())?;
    // The cut follows the csv crate's quoting, so this holds; if it did not, the record
    // goes to the DLQ whole rather than losing what the parser left.
    let mut rest = csv::ByteRecord::new();
    match reader.read_byte_record(&mut rest) {
        Ok(false) => Ok(record),
        _ => Err("the record holds more than one row".to_string()),
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
        let (line, bytes) = match self.next_record() {
            Ok(Some(Record::Rows { line, bytes })) => (line, bytes),
            Ok(Some(Record::Unbounded {
                line,
                first,
                kind,
                reason,
            })) => {
                return Some(Ok(SourceItem::Malformed {
                    location: self.context.location(line),
                    kind,
                    error: format!(
                        "invalid csv record: {reason}; reading resumes at the next line"
                    ),
                    raw: first,
                }));
            }
            Ok(None) => {
                self.finished = true;
                return None;
            }
            Err(error) => {
                self.finished = true;
                return Some(Err(error));
            }
        };
        let context = &self.context;
        let malformed = |kind: DeadLetterKind, error: String, raw: Vec<u8>| {
            Some(Ok(SourceItem::Malformed {
                location: context.location(line),
                kind,
                error,
                raw,
            }))
        };
        let record = match parse(&bytes) {
            Ok(record) => record,
            Err(error) => {
                return malformed(
                    DeadLetterKind::InvalidCsv,
                    format!("invalid csv record: {error}"),
                    bytes,
                )
            }
        };
        if record.len() != self.header.len() {
            return malformed(
                DeadLetterKind::InvalidCsv,
                format!(
                    "invalid csv record: {} fields where the header has {}",
                    record.len(),
                    self.header.len()
                ),
                bytes,
            );
        }
        let raw = bytes;
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
