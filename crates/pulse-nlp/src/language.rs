//! The language of a post: the tag its source gave (Twitter/X, Bluesky), else detected from
//! the text with `whatlang`. Codes are ISO 639-1 (`en`, `pt`) where the language has one,
//! ISO 639-3 otherwise; `und` when neither the source nor the text tells.
//!
//! Detection answers only when it is confident: short posts, posts of links and handles, and
//! most mixed-language posts stay `und` rather than get a guess, because a wrong language
//! withholds a post's scores (see [`crate::Enricher`]).

use std::sync::LazyLock;

use regex::Regex;

/// The code of a post whose language is not known.
pub const UNDETERMINED: &str = pulse_core::UNDETERMINED_LANGUAGE;

/// Fewest letters (links, handles and hashtags aside) detection reads before answering.
const MIN_LETTERS: usize = 12;

/// Least `whatlang` confidence taken as an answer. On the 2,000 English tweets of TweetEval
/// validation, 0.7 calls 5 of them another language (two are half Javanese or Tagalog) and
/// leaves 355 undetermined; 0.5 calls 10 foreign, whatlang's own 0.9 leaves 457 undetermined.
const MIN_CONFIDENCE: f64 = 0.7;

/// Links, @handles and the `#` of hashtags: no language in them.
static NOISE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:https?://|www\.)\S+|@\w+|#").expect("the noise pattern is valid")
});

/// A source's language tag (`en`, `pt-BR`, `eng`, `EN_us`) as Pulse's code, or `None` when
/// it names no language (`und`, `zxx`, Twitter's `qme`/`qht`... and anything unparsable).
pub fn normalize(tag: &str) -> Option<String> {
    let primary = tag
        .trim()
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !primary.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let language = match primary.len() {
        2 => isolang::Language::from_639_1(&primary)?,
        3 => isolang::Language::from_639_3(&primary)?,
        _ => return None,
    };
    // Special codes (undetermined, no linguistic content, multiple) and private-use codes
    // say nothing about the text.
    if matches!(language.to_639_3(), "und" | "zxx" | "mul" | "mis") {
        return None;
    }
    Some(code(language))
}

/// The language of `text` when detection is reliable, else `None`.
pub fn detect(text: &str) -> Option<String> {
    let words = NOISE.replace_all(text, " ");
    if words.chars().filter(|c| c.is_alphabetic()).count() < MIN_LETTERS {
        return None;
    }
    let info = whatlang::detect(&words)?;
    if info.confidence() < MIN_CONFIDENCE {
        return None;
    }
    isolang::Language::from_639_3(info.lang().code()).map(code)
}

/// The language Pulse records for a post: its source's tag if it names one, else the
/// detected language, else [`UNDETERMINED`].
pub fn resolve(text: &str, source_tag: Option<&str>) -> String {
    source_tag
        .and_then(normalize)
        .or_else(|| detect(text))
        .unwrap_or_else(|| UNDETERMINED.to_string())
}

fn code(language: isolang::Language) -> String {
    language
        .to_639_1()
        .unwrap_or_else(|| language.to_639_3())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_tags_are_normalized() {
        assert_eq!(normalize("en").as_deref(), Some("en"));
        assert_eq!(normalize("pt-BR").as_deref(), Some("pt"));
        assert_eq!(normalize("EN_us").as_deref(), Some("en"));
        assert_eq!(normalize("eng").as_deref(), Some("en"));
        assert_eq!(normalize("yue").as_deref(), Some("yue"));
        for nothing in ["und", "zxx", "qme", "", "e", "english", "1a", "ü"] {
            assert_eq!(normalize(nothing), None, "{nothing:?}");
        }
    }

    #[test]
    fn detection_answers_only_when_sure() {
        assert_eq!(
            detect("The new release made me furious, nothing works anymore after the update")
                .as_deref(),
            Some("en")
        );
        assert_eq!(
            detect("El nuevo lanzamiento me puso furioso, ya nada funciona después de la actualización")
                .as_deref(),
            Some("es")
        );
        assert_eq!(
            detect("Die neue Version hat mich wütend gemacht, nach dem Update funktioniert nichts mehr")
                .as_deref(),
            Some("de")
        );
        assert_eq!(detect("lol ok"), None);
        assert_eq!(
            detect("@someone https://example.com/a/very/long/path #tag"),
            None
        );
        assert_eq!(detect("😀😀😀 !!! 12345"), None);
    }

    #[test]
    fn the_source_wins_over_detection() {
        let spanish = "El nuevo lanzamiento me puso furioso, ya nada funciona";
        assert_eq!(resolve(spanish, Some("en")), "en");
        assert_eq!(resolve(spanish, Some("und")), "es");
        assert_eq!(resolve("ok", None), UNDETERMINED);
    }
}
