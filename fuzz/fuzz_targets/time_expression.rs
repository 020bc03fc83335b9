//! Time expressions of the CLI and the API (`now-48h`, dates, RFC 3339): any text is a time
//! or an error, never a panic (out-of-range arithmetic included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulse_core::time::parse_time;

fuzz_target!(|text: &str| {
    let _ = parse_time(text);
});
