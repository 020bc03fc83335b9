//! The batch enricher: one call per batch of post texts, in input order.

use pulse_core::config::EnrichConfig;
use pulse_core::Enrichment;

use crate::KeywordExtractor;

/// Turns texts into enrichments. Created once per process and shared by reference.
#[derive(Debug, Clone)]
pub struct Enricher {
    keywords: KeywordExtractor,
}

impl Enricher {
    /// An enricher configured by the `[enrich]` section.
    pub fn new(config: &EnrichConfig) -> Self {
        Self {
            keywords: KeywordExtractor::new(
                config.keywords_per_post,
                config.keyword_ngrams,
                config.keyword_text_chars,
            ),
        }
    }

    /// `name@version` of what produces the enrichments, recorded on every enriched post.
    ///
    /// Without a model directory only keywords are computed, and the name says so.
    pub fn model_name(&self) -> String {
        "keywords-only@1".to_string()
    }

    /// Enriches a batch of texts; the result has one entry per text, in the same order.
    ///
    /// Blocking CPU work: call it from `spawn_blocking` or a dedicated thread.
    pub fn enrich(&self, texts: &[&str]) -> Vec<Enrichment> {
        texts
            .iter()
            .map(|text| Enrichment {
                keywords: self.keywords.extract(text),
                ..Enrichment::default()
            })
            .collect()
    }
}
