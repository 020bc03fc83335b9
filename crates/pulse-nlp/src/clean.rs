//! Cleaning social text before keyword extraction: URLs and @mentions out, hashtags split
//! into words (`#RustLang` -> `Rust Lang`, `#rust_lang` -> `rust lang`).

use std::sync::LazyLock;

use regex::Regex;

static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:https?://|www\.)\S+").unwrap_or_else(|e| panic!("url pattern: {e}"))
});
static MENTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|\B)@\w+").unwrap_or_else(|e| panic!("mention pattern: {e}"))
});
static HASHTAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"#(\w+)").unwrap_or_else(|e| panic!("hashtag pattern: {e}")));

/// Returns `text` without URLs and @mentions and with hashtags split into words, keeping at
/// most `max_chars` characters of the input.
pub fn clean_for_keywords(text: &str, max_chars: usize) -> String {
    let bounded = match text.char_indices().nth(max_chars) {
        Some((cut, _)) => &text[..cut],
        None => text,
    };
    let without_urls = URL.replace_all(bounded, " ");
    let without_mentions = MENTION.replace_all(&without_urls, " ");
    let split = HASHTAG.replace_all(&without_mentions, |caps: &regex::Captures<'_>| {
        split_hashtag(&caps[1])
    });
    split.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits a hashtag body on underscores, lower-to-upper case changes and letter/digit
/// boundaries.
fn split_hashtag(tag: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for part in tag.split('_').filter(|p| !p.is_empty()) {
        let mut current = String::new();
        let mut previous: Option<char> = None;
        for c in part.chars() {
            let boundary = match previous {
                Some(p) => {
                    (p.is_lowercase() && c.is_uppercase())
                        || (p.is_alphabetic() != c.is_alphabetic())
                }
                None => false,
            };
            if boundary && !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            current.push(c);
            previous = Some(c);
        }
        if !current.is_empty() {
            words.push(current);
        }
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_mentions_go_hashtags_split() {
        assert_eq!(
            clean_for_keywords(
                "@ferris look: https://blog.rust-lang.org/x?y=1 #RustLang #async_await2024 www.a.io ok",
                1000
            ),
            "look: Rust Lang async await 2024 ok"
        );
    }

    #[test]
    fn emails_are_not_mentions_and_cut_is_on_a_char_boundary() {
        assert_eq!(clean_for_keywords("mail me@x.org", 100), "mail me@x.org");
        assert_eq!(clean_for_keywords("ééééé", 3), "ééé");
    }
}
