//! The casing of each token piece, read from the original text under the piece's offsets.
//!
//! The shipped encoder is uncased: "Apple" and "apple" reach it as the same ids. A model
//! whose manifest names a `case_ids` input gets one casing class per piece instead, which its
//! entity head reads. `scripts/pulse_casing.py` (`case_class`) computes the same classes for
//! training and the Python baseline: keep the two in step.

/// Casing class of a piece: no cased letter (digits, punctuation, uncased scripts, special
/// tokens).
pub const NONE: i64 = 0;
/// Only lower-case letters.
pub const LOWER: i64 = 1;
/// The first cased letter upper, the rest lower ("Paris"), or one capital alone ("I").
pub const CAPITALIZED: i64 = 2;
/// Two or more capitals and no lower-case letter ("NASA").
pub const UPPER: i64 = 3;
/// Lower first, capitals later ("iPhone").
pub const MIXED: i64 = 4;

/// The casing class of a piece's characters: by its cased letters only.
pub fn class(piece: &str) -> i64 {
    let upper = piece.chars().filter(|c| c.is_uppercase()).count();
    let lower = piece.chars().filter(|c| c.is_lowercase()).count();
    match (upper, lower) {
        (0, 0) => NONE,
        (0, _) => LOWER,
        (1, 0) => CAPITALIZED,
        (_, 0) => UPPER,
        _ => match piece.chars().find(|c| c.is_uppercase() || c.is_lowercase()) {
            Some(first) if first.is_uppercase() => CAPITALIZED,
            _ => MIXED,
        },
    }
}

/// One class per token: `offsets` are character offsets into `text` (end exclusive);
/// special tokens (`special[i] != 0`) and offsets outside the text are [`NONE`].
pub fn classes(text: &str, offsets: &[(usize, usize)], special: &[u32]) -> Vec<i64> {
    let bytes = crate::decode::char_boundaries(text);
    offsets
        .iter()
        .enumerate()
        .map(|(i, &(start, end))| {
            if special.get(i).is_some_and(|&s| s != 0) {
                return NONE;
            }
            match (bytes.get(start), bytes.get(end)) {
                (Some(&a), Some(&b)) if a <= b => text.get(a..b).map_or(NONE, class),
                _ => NONE,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_cased_letters_only() {
        assert_eq!(class("paris"), LOWER);
        assert_eq!(class("Paris"), CAPITALIZED);
        assert_eq!(class("I"), CAPITALIZED);
        assert_eq!(class("NASA"), UPPER);
        assert_eq!(class("iPhone"), MIXED);
        assert_eq!(class("McDonald"), CAPITALIZED);
        assert_eq!(class("2024"), NONE);
        assert_eq!(class("😀"), NONE);
        assert_eq!(class("東京"), NONE);
        assert_eq!(class("Élodie"), CAPITALIZED);
        assert_eq!(class("ÉTÉ"), UPPER);
        assert_eq!(class("#"), NONE);
    }

    #[test]
    fn pieces_are_read_by_character_offsets() {
        // "😀 Élodie NASA" with [CLS] and [SEP]: offsets count characters, not bytes.
        let text = "😀 Élodie NASA";
        let offsets = [(0, 0), (0, 1), (2, 8), (9, 13), (0, 0)];
        let special = [1, 0, 0, 0, 1];
        assert_eq!(
            classes(text, &offsets, &special),
            [NONE, NONE, CAPITALIZED, UPPER, NONE]
        );
        // Offsets past the text (a hostile or mismatched encoding) read as no casing.
        assert_eq!(classes("ab", &[(1, 9), (3, 2)], &[0, 0]), [NONE, NONE]);
    }
}
