//! Pulse's natural-language processing: turns post texts into [`Enrichment`]s.
//!
//! Owns model directories (a manifest naming each task and language, or a Hugging Face export
//! of one task), their ONNX Runtime sessions and tokenizers, the decoders from logits to
//! sentiment, emotions and entity spans, a post's language, text cleaning and YAKE keywords,
//! and the [`Enricher`] the enrich stage and `pulse analyze` call. No Kafka, no stores: everything here is CPU work on
//! strings, to be run off the async runtime.
//!
//! [`Enrichment`]: pulse_core::Enrichment

pub mod casing;
pub mod clean;
pub mod decode;
pub mod enricher;
pub mod keywords;
pub mod language;
pub mod manifest;
pub mod model;
pub mod runtime;

pub use enricher::{Enriched, Enricher, PostText};
pub use keywords::KeywordExtractor;
pub use manifest::{Manifest, Task};
pub use model::{Model, ModelOptions};

/// What can go wrong loading or running models.
#[derive(Debug, thiserror::Error)]
pub enum NlpError {
    /// The ONNX Runtime library could not be loaded.
    #[error("onnx runtime: {0}")]
    Runtime(String),
    /// A model directory is missing, incomplete or inconsistent.
    #[error("model: {0}")]
    Model(String),
    /// A batch could not be tokenized or run.
    #[error("inference: {0}")]
    Inference(String),
}
