//! A raw record as `pulse enrich` receives it: any bytes are a post or a rejection with a
//! reason, never a panic; an accepted post passes the checks it was accepted by.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulse_core::config::EnrichConfig;
use pulse_core::validate::{check_post, decode_post};

fuzz_target!(|bytes: &[u8]| {
    let limits = EnrichConfig::default().post_limits();
    if let Ok(post) = decode_post(bytes, &limits) {
        assert!(check_post(&post, &limits).is_ok(), "{post:?}");
    }
});
