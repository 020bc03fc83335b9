//! Pulse's natural-language processing: turns post texts into [`Enrichment`]s.
//!
//! Owns text cleaning and keyword extraction (YAKE) and the batch [`Enricher`] the enrich
//! stage calls. No Kafka, no stores: everything here is CPU work on strings, to be run off
//! the async runtime.

pub mod clean;
pub mod enricher;
pub mod keywords;

pub use enricher::Enricher;
pub use keywords::KeywordExtractor;
