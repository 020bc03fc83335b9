//! The opaque paging cursor of `/api/v1/posts` and `/api/v1/mentions`, which clients send
//! back: any token decodes or is refused, never a panic; a decoded cursor encodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulse_batch::Cursor;

fuzz_target!(|token: &str| {
    if let Ok(cursor) = Cursor::decode(token) {
        let again = cursor.encode();
        assert!(Cursor::decode(&again).is_ok(), "{again}");
    }
});
