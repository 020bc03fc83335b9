//! From logits to enrichments: sentiment with its score, emotion probabilities, and entity
//! spans of BIO tags decoded per word and mapped back to characters of the original text.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use pulse_core::{Entity, EntityKind, Sentiment, SentimentLabel};
use regex::Regex;

/// Softmax of one row of logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|x| x / sum).collect()
}

/// Logistic function of each logit.
pub fn sigmoid(logits: &[f32]) -> Vec<f32> {
    logits.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect()
}

/// Where negative, neutral and positive are among a model's labels (`neg`, `Negative`,
/// `NEGATIVE` ... all count), or `None` when the labels are not exactly those three.
pub fn sentiment_order(labels: &[String]) -> Option<[usize; 3]> {
    if labels.len() != 3 {
        return None;
    }
    let mut order = [usize::MAX; 3];
    for (index, label) in labels.iter().enumerate() {
        let slot = match label.trim().to_ascii_lowercase().as_str() {
            "negative" | "neg" => 0,
            "neutral" | "neu" => 1,
            "positive" | "pos" => 2,
            _ => return None,
        };
        order[slot] = index;
    }
    order.iter().all(|&i| i != usize::MAX).then_some(order)
}

/// Sentiment from one row of logits; `order` comes from [`sentiment_order`].
pub fn sentiment(logits: &[f32], order: [usize; 3]) -> Sentiment {
    let probs = softmax(logits);
    let [negative, neutral, positive] = order.map(|i| probs.get(i).copied().unwrap_or(0.0));
    let label = if negative >= neutral && negative >= positive {
        SentimentLabel::Negative
    } else if positive > neutral {
        SentimentLabel::Positive
    } else {
        SentimentLabel::Neutral
    };
    Sentiment {
        label,
        score: (positive - negative).clamp(-1.0, 1.0),
        probs: BTreeMap::from([
            (SentimentLabel::Negative, negative),
            (SentimentLabel::Neutral, neutral),
            (SentimentLabel::Positive, positive),
        ]),
    }
}

/// Emotion probabilities by label: sigmoid for a multi-label model, softmax otherwise.
pub fn emotions(logits: &[f32], labels: &[String], multi_label: bool) -> BTreeMap<String, f32> {
    let probs = if multi_label {
        sigmoid(logits)
    } else {
        softmax(logits)
    };
    labels.iter().cloned().zip(probs).collect()
}

/// One BIO tag of an entity model, with the tag's kind mapped onto Pulse's kinds. Kinds
/// Pulse does not know (`MISC`, ...) read as outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Outside,
    Begin(EntityKind),
    Inside(EntityKind),
}

impl Tag {
    /// Parses `O`, `B-PER`, `I-organization`, `B-creative-work`, `S-LOC` (a single-token
    /// span reads as a beginning) ...
    pub fn parse(label: &str) -> Tag {
        let Some((prefix, kind)) = label.split_once(['-', '_']) else {
            return Tag::Outside;
        };
        let Some(kind) = entity_kind(kind) else {
            return Tag::Outside;
        };
        match prefix.to_ascii_uppercase().as_str() {
            "B" | "S" | "U" => Tag::Begin(kind),
            "I" | "E" | "L" => Tag::Inside(kind),
            _ => Tag::Outside,
        }
    }
}

/// Pulse's entity kind for a model's kind name, if it has one.
pub fn entity_kind(name: &str) -> Option<EntityKind> {
    let normalized = name.to_ascii_lowercase().replace(['-', ' '], "_");
    Some(match normalized.as_str() {
        "per" | "person" | "people" => EntityKind::Person,
        "org" | "organization" | "organisation" | "corporation" | "group" | "company" => {
            EntityKind::Organization
        }
        "loc" | "location" | "gpe" | "place" | "geo_loc" => EntityKind::Location,
        "product" | "prod" => EntityKind::Product,
        "creative_work" | "work_of_art" | "creativework" | "work" => EntityKind::CreativeWork,
        _ => return None,
    })
}

/// The byte offset of every character of `text`, then `text.len()`: character offsets (what
/// tokenizers report) to byte offsets, for slicing the original text.
pub fn char_boundaries(text: &str) -> Vec<usize> {
    text.char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(text.len()))
        .collect()
}

/// The tokens of one encoded text, as the entity decoder needs them.
pub struct TokenView<'a> {
    /// Word index of each token (`None` for special tokens).
    pub word_ids: &'a [Option<u32>],
    /// Character offsets of each token in the original text, end exclusive.
    pub offsets: &'a [(usize, usize)],
}

/// A word: its character range and the tag its first piece predicts, with that tag's
/// probability.
struct Word {
    start: usize,
    end: usize,
    tag: Tag,
    probability: f32,
}

/// What counts as one word of the original text: a link, or letters and digits joined by
/// apostrophes and hyphens (McDonald's, O'Leary, Coca-Cola, e-mail). The tokenizer's own
/// words split at every punctuation mark; an entity must not.
static WHOLE_WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:https?://|www\.)\S+|[\p{L}\p{N}\p{M}]+(?:['’‐-][\p{L}\p{N}\p{M}]+)*")
        .expect("the whole-word pattern is valid")
});

/// One whole word of the text: its character range, and whether it is a link.
#[derive(Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    link: bool,
}

/// The whole words of `text`, in character offsets, in order.
fn units(text: &str) -> Vec<Unit> {
    let mut chars = 0;
    let mut last = 0;
    let mut units = Vec::new();
    for found in WHOLE_WORD.find_iter(text) {
        chars += text[last..found.start()].chars().count();
        let start = chars;
        chars += found.as_str().chars().count();
        last = found.end();
        let lower = found
            .as_str()
            .get(..8)
            .unwrap_or(found.as_str())
            .to_ascii_lowercase();
        units.push(Unit {
            start,
            end: chars,
            link: ["http://", "https://", "www."]
                .iter()
                .any(|scheme| lower.starts_with(scheme)),
        });
    }
    units
}

/// Entity spans of `text` from per-token tag logits (`tag_logits(token)` is one row).
///
/// Decoding is per whole word: the tokenizer's words that make up one word of the text
/// (`McDonald`, `'`, `s`) are one word here, tagged by its first piece, so a span never
/// starts or ends inside a word, and its text is exactly the characters of the original text
/// from its first word's start to its last word's end. Links are never part of an entity.
/// An `I-` tag that does not continue a span of its kind starts one. A span's score is the
/// mean probability of its words' tags. Spans with fewer than two letters or digits (a
/// single letter, a lone possessive, only emoji or punctuation) are dropped.
pub fn entities<'l>(
    text: &str,
    tokens: &TokenView<'_>,
    tags: &[Tag],
    tag_logits: impl Fn(usize) -> &'l [f32],
) -> Vec<Entity> {
    let units = units(text);
    let unit_of = |char_offset: usize| {
        let after = units.partition_point(|u| u.start <= char_offset);
        after.checked_sub(1).filter(|&i| char_offset < units[i].end)
    };
    let mut words: Vec<Word> = Vec::new();
    let mut current_word: Option<u32> = None;
    let mut current_unit: Option<usize> = None;
    for (index, (word, &(start, end))) in tokens.word_ids.iter().zip(tokens.offsets).enumerate() {
        let Some(word) = *word else {
            current_word = None;
            current_unit = None;
            continue;
        };
        let unit = unit_of(start);
        if current_word == Some(word) || (unit.is_some() && unit == current_unit) {
            if let Some(last) = words.last_mut() {
                last.end = last.end.max(end);
            }
            current_word = Some(word);
            continue;
        }
        current_word = Some(word);
        current_unit = unit;
        if let Some(unit) = unit.map(|u| units[u]).filter(|u| u.link) {
            words.push(Word {
                start: unit.start,
                end: unit.end,
                tag: Tag::Outside,
                probability: 1.0,
            });
            continue;
        }
        let probs = softmax(tag_logits(index));
        let (best, probability) =
            probs
                .iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |acc, (i, p)| if p > acc.1 { (i, p) } else { acc },
                );
        words.push(Word {
            start,
            end,
            tag: tags.get(best).copied().unwrap_or(Tag::Outside),
            probability,
        });
    }

    let mut spans: Vec<(usize, usize, EntityKind, f32, usize)> = Vec::new();
    let mut open: Option<(usize, usize, EntityKind, f32, usize)> = None;
    for word in &words {
        match (word.tag, &mut open) {
            (Tag::Inside(kind), Some(span)) if span.2 == kind => {
                span.1 = word.end;
                span.3 += word.probability;
                span.4 += 1;
            }
            (Tag::Begin(kind) | Tag::Inside(kind), _) => {
                spans.extend(open.take());
                open = Some((word.start, word.end, kind, word.probability, 1));
            }
            (Tag::Outside, _) => spans.extend(open.take()),
        }
    }
    spans.extend(open);
    if spans.is_empty() {
        return Vec::new();
    }

    let bytes = char_boundaries(text);
    spans
        .into_iter()
        .filter_map(|(start, end, kind, total, count)| {
            let text = text.get(*bytes.get(start)?..*bytes.get(end)?)?;
            // A name has two letters or digits at least: spans of only emoji or punctuation
            // (unknown tokens to most vocabularies), one letter or a lone "'s" are noise.
            (text.chars().filter(|c| c.is_alphanumeric()).count() >= 2).then(|| Entity {
                text: text.to_string(),
                kind,
                start,
                end,
                score: total / count as f32,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sentiment_reads_any_label_order_and_scores_pos_minus_neg() {
        let order = sentiment_order(&labels(&["Positive", "neg", "NEUTRAL"])).unwrap();
        assert_eq!(order, [1, 2, 0]);
        let s = sentiment(&[2.0, 0.0, 0.0], order);
        assert_eq!(s.label, SentimentLabel::Positive);
        let p = &s.probs;
        assert!(
            (s.score - (p[&SentimentLabel::Positive] - p[&SentimentLabel::Negative])).abs() < 1e-6
        );
        assert!((p.values().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(sentiment_order(&labels(&["LABEL_0", "LABEL_1", "LABEL_2"])).is_none());
        assert!(sentiment_order(&labels(&["negative", "positive"])).is_none());
    }

    #[test]
    fn tags_map_onto_pulse_kinds() {
        assert_eq!(Tag::parse("O"), Tag::Outside);
        assert_eq!(Tag::parse("B-PER"), Tag::Begin(EntityKind::Person));
        assert_eq!(
            Tag::parse("I-creative-work"),
            Tag::Inside(EntityKind::CreativeWork)
        );
        assert_eq!(
            Tag::parse("B-corporation"),
            Tag::Begin(EntityKind::Organization)
        );
        assert_eq!(
            Tag::parse("I-creative_work"),
            Tag::Inside(EntityKind::CreativeWork)
        );
        assert_eq!(Tag::parse("B-MISC"), Tag::Outside);
        assert_eq!(Tag::parse("S-LOC"), Tag::Begin(EntityKind::Location));
    }

    /// Logit rows that make `tag` the winner.
    fn row(tag: usize, n: usize) -> Vec<f32> {
        (0..n).map(|i| if i == tag { 5.0 } else { 0.0 }).collect()
    }

    #[test]
    fn spans_follow_words_and_characters_of_the_original_text() {
        // "😀 Élodie Dupré visited São Paulo" as a BERT tokenizer splits it:
        // [CLS] [UNK] elodie dup ##re visited sao paulo [SEP]
        let text = "😀 Élodie Dupré visited São Paulo";
        let tags = [
            Tag::Outside,
            Tag::Begin(EntityKind::Person),
            Tag::Inside(EntityKind::Person),
            Tag::Begin(EntityKind::Location),
            Tag::Inside(EntityKind::Location),
        ];
        let word_ids = [
            None,
            Some(0),
            Some(1),
            Some(2),
            Some(2),
            Some(3),
            Some(4),
            Some(5),
            None,
        ];
        let offsets = [
            (0, 0),
            (0, 1),
            (2, 8),
            (9, 12),
            (12, 14),
            (15, 22),
            (23, 26),
            (27, 32),
            (0, 0),
        ];
        // The continuation piece "##re" predicts O: words take their first piece's tag. The
        // emoji's [UNK] predicts a person: a span without letters or digits is dropped.
        let predicted = [0, 1, 1, 2, 0, 0, 3, 4, 0];
        let rows: Vec<Vec<f32>> = predicted.iter().map(|&t| row(t, tags.len())).collect();
        let found = entities(
            text,
            &TokenView {
                word_ids: &word_ids,
                offsets: &offsets,
            },
            &tags,
            |i| &rows[i],
        );
        let spans: Vec<_> = found
            .iter()
            .map(|e| (e.text.as_str(), e.kind, e.start, e.end))
            .collect();
        assert_eq!(
            spans,
            [
                ("Élodie Dupré", EntityKind::Person, 2, 14),
                ("São Paulo", EntityKind::Location, 23, 32),
            ]
        );
        let chars: Vec<char> = text.chars().collect();
        for e in &found {
            assert_eq!(chars[e.start..e.end].iter().collect::<String>(), e.text);
            assert!(e.score > 0.9 && e.score <= 1.0);
        }
    }

    #[test]
    fn a_stray_inside_tag_starts_a_span_and_a_kind_change_splits() {
        let text = "ab cd ef";
        let tags = [
            Tag::Outside,
            Tag::Inside(EntityKind::Product),
            Tag::Inside(EntityKind::Person),
        ];
        let word_ids = [Some(0), Some(1), Some(2)];
        let offsets = [(0, 2), (3, 5), (6, 8)];
        let rows: Vec<Vec<f32>> = [1, 1, 2].iter().map(|&t| row(t, 3)).collect();
        let found = entities(
            text,
            &TokenView {
                word_ids: &word_ids,
                offsets: &offsets,
            },
            &tags,
            |i| &rows[i],
        );
        let spans: Vec<_> = found.iter().map(|e| (e.text.as_str(), e.kind)).collect();
        assert_eq!(
            spans,
            [("ab cd", EntityKind::Product), ("ef", EntityKind::Person)]
        );
    }

    /// Decodes `text` as the shipped tokenizer splits it, each piece tagged by `tag_of` from
    /// the characters it covers (so a test says "this piece predicts B-org").
    fn decode_pieces(
        text: &str,
        tag_of: impl Fn(&str) -> &'static str,
    ) -> Vec<(String, EntityKind)> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/pulse-minilm-multitask/tokenizer.json"
        );
        let mut tokenizer = tokenizers::Tokenizer::from_file(path).unwrap();
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).unwrap();
        let encoding = tokenizer.encode_char_offsets(text, true).unwrap();
        let names = [
            "O",
            "B-person",
            "I-person",
            "B-organization",
            "I-organization",
            "B-location",
            "I-location",
        ];
        let tags: Vec<Tag> = names.iter().map(|n| Tag::parse(n)).collect();
        let chars: Vec<char> = text.chars().collect();
        let rows: Vec<Vec<f32>> = encoding
            .get_offsets()
            .iter()
            .map(|&(start, end)| {
                let piece: String = chars[start..end].iter().collect();
                let wanted = names.iter().position(|n| *n == tag_of(&piece)).unwrap();
                row(wanted, names.len())
            })
            .collect();
        let view = TokenView {
            word_ids: encoding.get_word_ids(),
            offsets: encoding.get_offsets(),
        };
        entities(text, &view, &tags, |i| &rows[i])
            .into_iter()
            .map(|e| {
                assert_eq!(chars[e.start..e.end].iter().collect::<String>(), e.text);
                (e.text, e.kind)
            })
            .collect()
    }

    #[test]
    fn apostrophes_and_hyphens_belong_to_the_word() {
        use EntityKind::*;
        // The failure users saw: "s" after the apostrophe predicted its own organization.
        let found = decode_pieces("Lunch at McDonald's again", |piece| match piece {
            "McDonald" | "s" => "B-organization",
            _ => "O",
        });
        assert_eq!(found, [("McDonald's".to_string(), Organization)]);
        // "O" of O'Leary predicted a person of its own.
        let found = decode_pieces("Michael O'Leary flies again", |piece| match piece {
            "Michael" => "B-person",
            "O" => "I-person",
            "Leary" => "B-person",
            _ => "O",
        });
        assert_eq!(found, [("Michael O'Leary".to_string(), Person)]);
        let found = decode_pieces("Coca-Cola sends e-mail", |piece| match piece {
            "Coca" => "B-organization",
            "Cola" | "-" => "I-organization",
            "e" => "B-location",
            "mail" => "I-location",
            _ => "O",
        });
        // e-mail is one word whose first piece says location: a span of one word, kept whole.
        assert_eq!(
            found,
            [
                ("Coca-Cola".to_string(), Organization),
                ("e-mail".to_string(), Location)
            ]
        );
    }

    #[test]
    fn single_letters_possessives_links_emoji_and_hashtags() {
        use EntityKind::*;
        // A lone letter, a lone possessive after a space, emoji and links are never entities.
        let found = decode_pieces(
            "X said ' s 😀 see https://t.co/AbC now",
            |piece| match piece {
                "X" | "s" | "😀" | "t" | "co" | "AbC" | "Ab" | "C" => "B-organization",
                _ => "O",
            },
        );
        assert_eq!(found, []);
        // The hashtag sign is not part of the name; the name after it is.
        let found = decode_pieces("Loving #Rust and @ferris today", |piece| match piece {
            "Rust" => "B-organization",
            "ferris" => "B-person",
            _ => "O",
        });
        assert_eq!(
            found,
            [
                ("Rust".to_string(), Organization),
                ("ferris".to_string(), Person)
            ]
        );
        // Two-character names and names with digits stay.
        let found = decode_pieces("U2 played in LA", |piece| match piece {
            "U2" | "u2" => "B-organization",
            "LA" => "B-location",
            _ => "O",
        });
        assert_eq!(
            found,
            [
                ("U2".to_string(), Organization),
                ("LA".to_string(), Location)
            ]
        );
    }
}
