//! An enriched record as the sinks read it from Kafka (anyone may produce to the topic):
//! any bytes are an enriched post or not one, and the batch store's refusal check of a post
//! never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulse_batch::BatchStore;
use pulse_core::EnrichedPost;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(post) = serde_json::from_slice::<EnrichedPost>(bytes) {
        let _ = BatchStore::refuses(&post);
    }
});
