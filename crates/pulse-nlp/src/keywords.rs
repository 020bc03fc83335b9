//! Keyword extraction with YAKE on cleaned text, with the stopwords of the post's language.

use std::collections::HashMap;

use pulse_core::Keyword;
use yake_rust::{Config, StopWords};

use crate::clean::clean_for_keywords;

/// yake-rust's stopword lists by Pulse's language code ([`crate::language`]), English aside
/// (it is also the fallback): yake-rust names Czech `cz` and has one Norwegian list; its `br`
/// is Brazilian Portuguese, not Breton, so Breton gets none.
const STOPWORD_LISTS: &[(&str, &str)] = &[
    ("ar", "ar"),
    ("bg", "bg"),
    ("cs", "cz"),
    ("da", "da"),
    ("de", "de"),
    ("el", "el"),
    ("es", "es"),
    ("et", "et"),
    ("fa", "fa"),
    ("fi", "fi"),
    ("fr", "fr"),
    ("hi", "hi"),
    ("hr", "hr"),
    ("hu", "hu"),
    ("hy", "hy"),
    ("id", "id"),
    ("it", "it"),
    ("ja", "ja"),
    ("lt", "lt"),
    ("lv", "lv"),
    ("nb", "no"),
    ("nl", "nl"),
    ("nn", "no"),
    ("no", "no"),
    ("pl", "pl"),
    ("pt", "pt"),
    ("ro", "ro"),
    ("ru", "ru"),
    ("sk", "sk"),
    ("sl", "sl"),
    ("sv", "sv"),
    ("tr", "tr"),
    ("uk", "uk"),
    ("zh", "zh"),
];

/// Extracts the most relevant key phrases of a post.
#[derive(Debug, Clone)]
pub struct KeywordExtractor {
    /// Stopwords by language code, English aside.
    stop_words: HashMap<&'static str, StopWords>,
    /// For English posts, and for posts of an undetermined language or one without a list:
    /// most such posts are short English ones, and in other scripts English stopwords match
    /// nothing.
    english: StopWords,
    config: Config,
    per_post: usize,
    max_chars: usize,
}

impl KeywordExtractor {
    /// `per_post` keywords of at most `ngrams` words, from the first `max_chars` characters.
    pub fn new(per_post: usize, ngrams: usize, max_chars: usize) -> Self {
        Self {
            stop_words: STOPWORD_LISTS
                .iter()
                .filter_map(|&(lang, list)| Some((lang, StopWords::predefined(list)?)))
                .collect(),
            english: StopWords::predefined("en").unwrap_or_default(),
            config: Config {
                ngrams: ngrams.max(1),
                ..Config::default()
            },
            per_post,
            max_chars,
        }
    }

    /// Keywords of `text`, in language `lang` (a code of [`crate::language`]), most
    /// relevant first.
    ///
    /// YAKE scores are "lower is better" and unbounded; they are mapped to `1 / (1 + s)`,
    /// so a keyword's score is in `(0, 1]` and higher means more relevant.
    pub fn extract(&self, text: &str, lang: &str) -> Vec<Keyword> {
        let cleaned = clean_for_keywords(text, self.max_chars);
        if cleaned.is_empty() || self.per_post == 0 {
            return Vec::new();
        }
        let stop_words = self.stop_words.get(lang).unwrap_or(&self.english);
        // yake-rust sorts with partial_cmp().unwrap(); a NaN score on odd input would panic.
        let ranked = std::panic::catch_unwind(|| {
            yake_rust::get_n_best(self.per_post, &cleaned, stop_words, &self.config)
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
            "en",
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
    fn every_language_with_a_list_has_it_compiled_in() {
        let extractor = KeywordExtractor::new(5, 2, 4_000);
        assert_eq!(extractor.stop_words.len(), STOPWORD_LISTS.len());
        assert!(extractor.stop_words["cs"].contains("ale"));
        assert!(extractor.stop_words["nb"].contains("og"));
        assert!(extractor.english.contains("the"));
    }

    #[test]
    fn no_keyword_starts_or_ends_with_a_stopword_of_the_post_s_language() {
        let extractor = KeywordExtractor::new(10, 3, 4_000);
        let posts = [
            (
                "de",
                "Die neue Bahnstrecke zwischen Berlin und Hamburg ist seit Montag wegen eines \
                 Unwetters gesperrt, und niemand kann sagen, wann der Zug wieder fährt.",
            ),
            (
                "fr",
                "Depuis lundi, la nouvelle ligne entre Paris et Lyon est fermée à cause \
                 d'une tempête, et personne ne sait quand les trains pourront enfin rouler.",
            ),
            (
                "es",
                "Desde el lunes la nueva línea entre Madrid y Sevilla está cerrada por una \
                 tormenta, y nadie sabe cuándo volverán a circular los trenes otra vez.",
            ),
        ];
        for (lang, text) in posts {
            // YAKE keeps stopwords inside a phrase ("berlin und hamburg"), never at its ends.
            let stop_words = &extractor.stop_words[lang];
            let stopword_in = |keywords: &[Keyword]| {
                keywords.iter().any(|k| {
                    let mut words = k.term.split(' ');
                    let first = words.next().unwrap_or_default();
                    let last = words.next_back().unwrap_or(first);
                    stop_words.contains(first) || stop_words.contains(last)
                })
            };
            let own = extractor.extract(text, lang);
            assert!(!own.is_empty(), "{lang}");
            assert!(!stopword_in(&own), "{lang}: {own:?}");
            // English stopwords let this post's function words through: the test can fail.
            let english = extractor.extract(text, "en");
            assert!(stopword_in(&english), "{lang}: {english:?}");
        }
    }

    #[test]
    fn posts_of_no_known_list_get_english_stopwords() {
        let extractor = KeywordExtractor::new(5, 2, 4_000);
        let text = "The new Rust compiler release is fast and the compiler beats everything";
        for lang in ["und", "br", "ko", ""] {
            assert_eq!(extractor.extract(text, lang), extractor.extract(text, "en"));
        }
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
            let keywords = extractor.extract(text, "en");
            assert!(
                keywords.iter().all(|k| !k.term.is_empty()),
                "{text:?}: {keywords:?}"
            );
        }
        let huge = "word ".repeat(200_000);
        assert!(extractor.extract(&huge, "en").len() <= 5);
    }
}
