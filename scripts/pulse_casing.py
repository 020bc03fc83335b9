"""The casing class of a token piece, as pulse-nlp computes it (crates/pulse-nlp/src/casing.rs):
shared by the training script and the Python baseline of scripts/bench-enrich."""

CASE_CLASSES = ["none", "lower", "capitalized", "upper", "mixed"]


def case_class(piece: str) -> int:
    """The casing class of one piece's text: by its cased letters only (uncased scripts and
    digits are "none"), so Python and Rust agree on every character."""
    upper = sum(1 for c in piece if c.isupper())
    lower = sum(1 for c in piece if c.islower())
    if upper == 0 and lower == 0:
        return 0
    if upper == 0:
        return 1
    if lower == 0:
        return 3 if upper >= 2 else 2
    first = next(c for c in piece if c.isupper() or c.islower())
    return 2 if first.isupper() else 4
