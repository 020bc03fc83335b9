//! Lines for the person at the terminal. A role must outlive its output: with stdout or
//! stderr closed (`pulse up | head`, a terminal closed after Ctrl-C) `println!` panics, and
//! a panicking `pulse up` no longer drains and stops on a signal. These write if they can.

use std::fmt::Display;
use std::io::Write;

/// `line` on stdout; a closed stdout is ignored.
pub fn out(line: impl Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// `line` on stderr; a closed stderr is ignored.
pub fn err(line: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
