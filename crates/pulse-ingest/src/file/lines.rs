//! Reading lines with a bound on their length, so one huge line cannot exhaust memory.

use std::io::{self, BufRead};

/// The longest line read by default, by every command that reads lines (`pulse ingest
/// file`, `pulse analyze`): 1 MiB, the size of Kafka's default largest record, which a
/// longer post could not be published as anyway.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// One line of a file, without its line terminator.
pub enum Line {
    Bytes(Vec<u8>),
    /// Longer than allowed; its bytes were skipped.
    TooLong {
        bytes: usize,
        prefix: Vec<u8>,
    },
}

/// Reads the next line of at most `max` bytes; `None` at the end of the input.
pub fn read_line(reader: &mut dyn BufRead, max: usize) -> io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut total = 0usize;
    let mut saw_any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        saw_any = true;
        let (chunk, found_newline) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        total += chunk.len();
        let used = chunk.len() + usize::from(found_newline);
        reader.consume(used);
        if found_newline {
            break;
        }
    }
    if !saw_any {
        return Ok(None);
    }
    if line.last() == Some(&b'\r') && total <= max {
        line.pop();
        total -= 1;
    }
    if total > max {
        line.truncate(256);
        return Ok(Some(Line::TooLong {
            bytes: total,
            prefix: line,
        }));
    }
    Ok(Some(Line::Bytes(line)))
}
