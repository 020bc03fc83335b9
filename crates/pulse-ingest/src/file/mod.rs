//! Posts from files: format detection, decompression, and one reader per format.
//!
//! Ids of records that carry none are derived from the file's name and the line number, so
//! ingesting the same file again produces the same ids (and idempotent sinks ignore it).

mod csv_rows;
pub mod lines;
mod records;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use pulse_core::PostLimits;
use sha2::{Digest, Sha256};

use crate::SourceItem;

/// How the records of a file are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line: Pulse posts or Reddit/Pushshift dump records.
    JsonLines,
    /// CSV with a header row that has a `text` column.
    Csv,
    /// One post text per line.
    Text,
}

impl FileFormat {
    /// Guesses the format from the file name, ignoring a `.gz`/`.zst` suffix. Reddit
    /// archives are JSON lines under names without an extension: the monthly `RC_2024-01`
    /// and `RS_2024-01`, and the per-subreddit `<sub>_comments` and `<sub>_submissions`.
    pub fn detect(path: &Path) -> FileFormat {
        let name = uncompressed_name(path).to_ascii_lowercase();
        let reddit_archive = name.starts_with("rc_")
            || name.starts_with("rs_")
            || name.ends_with("_comments")
            || name.ends_with("_submissions");
        if reddit_archive
            || name.ends_with(".jsonl")
            || name.ends_with(".ndjson")
            || name.ends_with(".json")
        {
            FileFormat::JsonLines
        } else if name.ends_with(".csv") {
            FileFormat::Csv
        } else {
            FileFormat::Text
        }
    }
}

/// A file that cannot be ingested (as opposed to a bad record in it).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: cannot read: {source}")]
    Read {
        path: String,
        line: u64,
        source: std::io::Error,
    },
    #[error("{path}: csv header has no `text` column (columns: {columns})")]
    NoTextColumn { path: String, columns: String },
    #[error("{path}: invalid csv header: {reason}")]
    Header { path: String, reason: String },
}

/// Settings of a file ingest.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// Channel of records that name none; defaults to `file/<name>`.
    pub channel: Option<String>,
    /// Overrides format detection.
    pub format: Option<FileFormat>,
    /// Records must respect these to be posts.
    pub limits: PostLimits,
    /// Longest accepted line (or CSV record), in bytes; longer ones are reported, not read.
    pub max_line_bytes: usize,
    /// Incremented by the bytes read from disk (compressed bytes for compressed files),
    /// for progress reporting.
    pub bytes_read: Option<Arc<AtomicU64>>,
}

/// What every reader needs to know about the file to build posts.
#[derive(Debug, Clone)]
struct FileContext {
    display: String,
    /// Stable per file name: the basis of derived ids.
    file_key: String,
    channel: String,
    /// Creation time of records without one: the file's modification time, plus the line
    /// number in milliseconds so that order is kept.
    base_time: DateTime<Utc>,
    limits: PostLimits,
    max_line_bytes: usize,
}

impl FileContext {
    fn location(&self, line: u64) -> String {
        format!("{}:{line}", self.display)
    }

    fn derived_id(&self, line: u64) -> String {
        format!("file:{}:{line}", self.file_key)
    }

    fn derived_time(&self, line: u64) -> DateTime<Utc> {
        self.base_time + chrono::Duration::milliseconds(line as i64)
    }
}

/// The items of one file, in file order.
pub struct FileSource {
    reader: Box<dyn Iterator<Item = Result<SourceItem, FileError>> + Send>,
}

impl FileSource {
    /// Opens `path`; decompression and format follow its name unless `options.format` says.
    pub fn open(path: &Path, options: &FileOptions) -> Result<Self, FileError> {
        let display = path.display().to_string();
        let file = File::open(path).map_err(|source| FileError::Open {
            path: display.clone(),
            source,
        })?;
        let modified = file
            .metadata()
            .and_then(|m| m.modified())
            .map(DateTime::<Utc>::from)
            .unwrap_or_else(|_| Utc::now());
        let name = uncompressed_name(path);
        let context = FileContext {
            display: display.clone(),
            file_key: hex::encode(&Sha256::digest(name.as_bytes())[..8]),
            channel: options
                .channel
                .clone()
                .unwrap_or_else(|| format!("file/{name}")),
            base_time: DateTime::from_timestamp(modified.timestamp(), 0).unwrap_or(modified),
            limits: options.limits.clone(),
            max_line_bytes: options.max_line_bytes,
        };
        let counted = CountingReader {
            inner: file,
            bytes_read: options.bytes_read.clone(),
        };
        let decoded = skip_bom(decompress(path, counted));
        let format = options.format.unwrap_or_else(|| FileFormat::detect(path));
        let reader: Box<dyn Iterator<Item = Result<SourceItem, FileError>> + Send> = match format {
            FileFormat::JsonLines => Box::new(records::LineRecords::json(decoded, context)),
            FileFormat::Text => Box::new(records::LineRecords::text(decoded, context)),
            FileFormat::Csv => Box::new(csv_rows::CsvRows::new(decoded, context)?),
        };
        Ok(Self { reader })
    }
}

impl Iterator for FileSource {
    type Item = Result<SourceItem, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.reader.next()
    }
}

/// The largest zstd window accepted, as a power of two: 2 GiB. The Reddit archives
/// (Pushshift and Arctic Shift RC_/RS_ files) are made with `zstd --long=31`, whose frames
/// the decoder's default limit (128 MiB) refuses at the first byte. Decoding such a frame
/// takes up to the window in memory, as `zstd -d --long=31` does.
const ZSTD_WINDOW_LOG_MAX: u32 = 31;

fn zstd_decoder(
    file: CountingReader,
) -> std::io::Result<zstd::stream::read::Decoder<'static, BufReader<CountingReader>>> {
    let mut decoder = zstd::stream::read::Decoder::new(file)?;
    decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
    Ok(decoder)
}

/// The file name without directories and without a compression suffix.
fn uncompressed_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for suffix in [".gz", ".zst", ".zstd"] {
        if let Some(stripped) = name.strip_suffix(suffix) {
            return stripped.to_string();
        }
    }
    name
}

/// Counts the bytes read from the file for progress reporting.
struct CountingReader {
    inner: File,
    bytes_read: Option<Arc<AtomicU64>>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        if let Some(counter) = &self.bytes_read {
            counter.fetch_add(read as u64, Ordering::Relaxed);
        }
        Ok(read)
    }
}

fn decompress(path: &Path, file: CountingReader) -> Box<dyn BufRead + Send> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let raw: Box<dyn Read + Send> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        match zstd_decoder(file) {
            Ok(decoder) => Box::new(decoder),
            // Reported as a read error on the first line by the reader.
            Err(error) => Box::new(FailingReader(Some(error))),
        }
    } else {
        Box::new(file)
    };
    Box::new(BufReader::with_capacity(256 * 1024, raw))
}

/// The reader past a UTF-8 byte order mark at the start of the text, which editors on
/// Windows write and which would otherwise make the first line invalid JSON.
fn skip_bom(mut reader: Box<dyn BufRead + Send>) -> Box<dyn BufRead + Send> {
    match reader.fill_buf() {
        Ok(start) if start.starts_with(b"\xEF\xBB\xBF") => {
            reader.consume(3);
            reader
        }
        Ok(_) => reader,
        // A decoder reports a corrupt start once, then reads as an empty stream (flate2 does):
        // the error is kept for the format's reader to report on line 1, so a corrupt archive
        // is an error naming the file, not an empty file.
        Err(error) => Box::new(BufReader::new(FailingReader(Some(error)))),
    }
}

/// A reader that fails once with a stored error (a decoder that could not start).
struct FailingReader(Option<std::io::Error>);

impl Read for FailingReader {
    fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("decoder unavailable")))
    }
}

#[cfg(test)]
mod tests;
