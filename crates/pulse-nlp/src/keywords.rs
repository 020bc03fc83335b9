//! Keyword extraction with YAKE on cleaned text.

use pulse_core::Keyword;
use yake_rust::{Config, StopWords};

use crate::clean::clean_for_keywords;

/// Extracts the most relevant key phrases of a post.
#[derive(Debug, Clone)]
pub struct KeywordExtractor {
    stop_words: StopWords,
    config: Config,
    per_post: usize,
    max_chars: usize,
}

impl KeywordExtractor {
    /// `per_post` keywords of at most `ngrams` words, from the first `max_chars` characters.
    pub fn new(per_post: usize, ngrams: usize, max_chars: usize) -> Self {
        Self {
            // The "en" list is compiled in (crate feature), so this cannot be absent.
            stop_words: StopWords::predefined("en")
                .unwrap_or_else(|| StopWords::custom(Default::default())),
            config: Config {
                ngrams: ngrams.max(1),
                ..Config::default()
            },
            per_post,
            max_chars,
        }
    }

    /// Keywords of `text`, most relevant first.
    ///
    /// YAKE scores are "lower is better" and unbounded; they are mapped to `1 / (1 + s)`,
    /// so a keyword's score is in `(0, 1]` and higher means more relevant.
    pub fn extract(&self, text: &str) -> Vec<Keyword> {
        let cleaned = clean_for_keywords(text, self.max_chars);
        if cleaned.is_empty() || self.per_post == 0 {
            return Vec::new();
        }
        // yake-rust sorts with partial_cmp().unwrap(); a NaN score on odd input would panic.
        let ranked = std::panic::catch_unwind(|| {
            yake_rust::get_n_best(self.per_post, &cleaned, &self.stop_words, &self.config)
        });
        match ranked {
            Ok(items) => items
                .into_iter()
                .filter(|item| item.score.is_finite())
                .map(|item| Keyword {
                    term: item.keyword,
                    score: (1.0 / (1.0 + item.score.max(0.0))) as f32,
                })
                .collect(),
            Err(_) => {
                tracing::warn!(
                    chars = cleaned.chars().count(),
                    "keyword extraction panicked; post keeps no keywords"
                );
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_come_from_cleaned_text_best_first() {
        let extractor = KeywordExtractor::new(5, 2, 4_000);
        let keywords = extractor.extract(
            "The new Rust compiler release is fast. @someone says the Rust compiler beats \
             everything https://example.com/rust #RustLang",
        );
        assert!(!keywords.is_empty());
        assert!(
            keywords.iter().any(|k| k.term.contains("rust")),
            "{keywords:?}"
        );
        assert!(keywords
            .iter()
            .all(|k| !k.term.contains("someone") && !k.term.contains("example")));
        assert!(keywords.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(keywords.iter().all(|k| k.score > 0.0 && k.score <= 1.0));
    }

    #[test]
    fn odd_input_gives_no_keywords_and_no_panic() {
        let extractor = KeywordExtractor::new(5, 2, 4_000);
        for text in [
            "",
            "   ",
            "😀😀😀",
            "\u{200b}\u{200b}",
            "\u{0}\u{1}\u{7f}",
            "@a @b https://x.y",
            "#",
        ] {
            let keywords = extractor.extract(text);
            assert!(
                keywords.iter().all(|k| !k.term.is_empty()),
                "{text:?}: {keywords:?}"
            );
        }
        let huge = "word ".repeat(200_000);
        assert!(extractor.extract(&huge).len() <= 5);
    }
}
