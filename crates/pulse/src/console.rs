//! Lines for the person at the terminal and for the scripts reading a command's output.
//!
//! A role must outlive its output: with stdout or stderr closed (`pulse up | head`, a
//! terminal closed after Ctrl-C) `println!` panics, and a panicking `pulse up` no longer
//! drains and stops on a signal. [`out`] and [`err`] write if they can. A command whose
//! output is its result (`pulse batch rollups ... | head -n 1`) prints with [`print`]
//! instead: once its reader has gone, the command ends quietly with [`CLOSED_STDOUT`].

use std::fmt::Display;
use std::io::Write;

/// The status of a command whose standard output was closed by its reader: the one a
/// shell reports for a process ended by SIGPIPE (128 + 13), as `ls | head` gives.
pub const CLOSED_STDOUT: u8 = 141;

/// Standard output was closed by its reader: the command stops, quietly.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// `line` on stdout; a closed stdout is ignored.
pub fn out(line: impl Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// `line` on stderr; a closed stderr is ignored.
pub fn err(line: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `line` on stdout, the output a command exists for: fails with [`StdoutClosed`] once the
/// reader has gone, so that the command stops instead of working for nobody.
pub fn print(line: impl Display) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(write_error)
}

/// A failed write to stdout as the command's error: [`StdoutClosed`] for a closed pipe.
pub fn write_error(error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(error).context("cannot write to standard output")
    }
}

/// How a command prints its results: readable text for a person, or `--json`: one JSON
/// value per line, for scripts (`jq`, a pipeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

impl Output {
    /// `--json` given or not.
    pub fn from_flag(json: bool) -> Self {
        if json {
            Output::Json
        } else {
            Output::Text
        }
    }

    /// One result: `value` as a JSON line, or `text` (built only when printed).
    pub fn result<T: serde::Serialize, D: Display>(
        self,
        value: &T,
        text: impl FnOnce() -> D,
    ) -> anyhow::Result<()> {
        match self {
            Output::Json => print(serde_json::to_string(value)?),
            Output::Text => print(text()),
        }
    }
}

/// `text` cut to `chars` characters on one line (newlines shown as spaces), for tables.
pub fn snippet(text: &str, chars: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}
