//! Line-oriented readers: JSON lines (Pulse posts or Reddit/Pushshift dump records) and
//! plain text.

use std::io::BufRead;

use pulse_core::validate::{check_post, post_from_value};
use pulse_core::{DeadLetterKind, Post, Rejection};
use serde_json::{Map, Value};

use super::lines::{read_line, Line};
use super::{FileContext, FileError};
use crate::reddit::thing::{reddit_post, RedditFallback};
use crate::SourceItem;

/// What the line reader found next.
enum NextLine {
    /// A non-blank line and its number.
    Line(u64, Vec<u8>),
    /// An item that replaces the line (an overlong line) or a read error.
    Item(Box<Result<SourceItem, FileError>>),
}

/// Reads lines, skipping blank ones; turns read errors into a final [`FileError`].
struct LineReader {
    reader: Box<dyn BufRead + Send>,
    context: FileContext,
    line: u64,
    finished: bool,
}

impl LineReader {
    /// The next non-blank line with its number, or the item that replaces it.
    fn next_line(&mut self) -> Option<NextLine> {
        while !self.finished {
            self.line += 1;
            match read_line(&mut *self.reader, self.context.max_line_bytes) {
                Ok(None) => self.finished = true,
                Err(source) => {
                    self.finished = true;
                    return Some(NextLine::Item(Box::new(Err(FileError::Read {
                        path: self.context.display.clone(),
                        line: self.line,
                        source,
                    }))));
                }
                Ok(Some(Line::TooLong { bytes, prefix })) => {
                    return Some(NextLine::Item(Box::new(Ok(malformed(
                        &self.context,
                        self.line,
                        DeadLetterKind::LineTooLong,
                        format!(
                            "line is {bytes} bytes, over the limit of {}; its first {} bytes are kept",
                            self.context.max_line_bytes,
                            prefix.len()
                        ),
                        prefix,
                    )))))
                }
                Ok(Some(Line::Bytes(bytes))) => {
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Some(NextLine::Line(self.line, bytes));
                }
            }
        }
        None
    }
}

fn malformed(
    context: &FileContext,
    line: u64,
    kind: DeadLetterKind,
    error: String,
    raw: Vec<u8>,
) -> SourceItem {
    SourceItem::Malformed {
        location: context.location(line),
        kind,
        error,
        raw,
    }
}

fn rejected(context: &FileContext, line: u64, rejection: Rejection, raw: Vec<u8>) -> SourceItem {
    malformed(context, line, rejection.kind(), rejection.to_string(), raw)
}

/// Records of a line-oriented file: each non-blank line is parsed by `parse`.
pub(super) struct LineRecords {
    lines: LineReader,
    parse: fn(&FileContext, u64, Vec<u8>) -> SourceItem,
}

impl LineRecords {
    /// JSON lines: Pulse posts (missing id, source, channel and created_at derived) or
    /// Reddit/Pushshift dump records (comments and submissions).
    pub(super) fn json(reader: Box<dyn BufRead + Send>, context: FileContext) -> Self {
        Self::new(reader, context, json_item)
    }

    /// Plain text: every non-blank line is the text of one post.
    pub(super) fn text(reader: Box<dyn BufRead + Send>, context: FileContext) -> Self {
        Self::new(reader, context, text_item)
    }

    fn new(
        reader: Box<dyn BufRead + Send>,
        context: FileContext,
        parse: fn(&FileContext, u64, Vec<u8>) -> SourceItem,
    ) -> Self {
        Self {
            lines: LineReader {
                reader,
                context,
                line: 0,
                finished: false,
            },
            parse,
        }
    }
}

impl Iterator for LineRecords {
    type Item = Result<SourceItem, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.lines.next_line()? {
            NextLine::Line(line, bytes) => Some(Ok((self.parse)(&self.lines.context, line, bytes))),
            NextLine::Item(item) => Some(*item),
        }
    }
}

fn json_item(context: &FileContext, line: u64, bytes: Vec<u8>) -> SourceItem {
    let location = context.location(line);
    let post = std::str::from_utf8(&bytes)
        .map_err(|e| Rejection::InvalidUtf8(e.to_string()))
        .and_then(|text| {
            serde_json::from_str::<Value>(text).map_err(|e| Rejection::NotJson(e.to_string()))
        })
        .and_then(|value| match value {
            Value::Object(object) if is_dump_record(&object) => dump_post(context, line, object),
            Value::Object(object) => pulse_post(context, line, object),
            _ => Err(Rejection::NotAnObject),
        });
    match post {
        Ok(post) => SourceItem::Post {
            post: Box::new(post),
            location,
        },
        Err(rejection) => rejected(context, line, rejection, bytes),
    }
}

fn pulse_post(
    context: &FileContext,
    line: u64,
    mut object: Map<String, Value>,
) -> Result<Post, Rejection> {
    let mut default = |field: &str, value: Value| {
        if matches!(object.get(field), None | Some(Value::Null)) {
            object.insert(field.to_string(), value);
        }
    };
    default("id", Value::String(context.derived_id(line)));
    default("source", Value::String("file".into()));
    default("channel", Value::String(context.channel.clone()));
    default(
        "created_at",
        Value::String(context.derived_time(line).to_rfc3339()),
    );
    post_from_value(Value::Object(object), &context.limits)
}

/// A Reddit/Pushshift dump record: a comment (`body`) or a submission (`title`).
fn is_dump_record(object: &Map<String, Value>) -> bool {
    object.contains_key("subreddit")
        && object.contains_key("created_utc")
        && (object.contains_key("body") || object.contains_key("title"))
}

fn dump_post(
    context: &FileContext,
    line: u64,
    record: Map<String, Value>,
) -> Result<Post, Rejection> {
    let fallback = RedditFallback {
        id: context.derived_id(line),
        channel: context.channel.clone(),
    };
    reddit_post(&record, &fallback, &context.limits)
}

fn text_item(context: &FileContext, line: u64, bytes: Vec<u8>) -> SourceItem {
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let reason = e.utf8_error().to_string();
            return rejected(
                context,
                line,
                Rejection::InvalidUtf8(reason),
                e.into_bytes(),
            );
        }
    };
    let post = Post {
        id: context.derived_id(line),
        source: "file".into(),
        channel: context.channel.clone(),
        author: None,
        text,
        created_at: context.derived_time(line),
        url: None,
        lang: None,
        parent_id: None,
        meta: Map::new(),
        extra: Map::new(),
    };
    match check_post(&post, &context.limits) {
        Ok(()) => SourceItem::Post {
            post: Box::new(post),
            location: context.location(line),
        },
        Err(rejection) => rejected(context, line, rejection, post.text.into_bytes()),
    }
}
