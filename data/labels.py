"""Label maps: MIT-BIH beat symbols to AAMI EC57 classes, and the symbols that are not beats."""
from __future__ import annotations

# AAMI EC57 (ANSI/AAMI EC57:2012, table 1) classes from MIT-BIH beat annotation codes.
AAMI_CLASSES: dict[str, tuple[str, ...]] = {
    "N": ("N", "L", "R", "e", "j"),
    "S": ("A", "a", "J", "S"),
    "V": ("V", "E"),
    "F": ("F",),
    "Q": ("/", "f", "Q"),
}

AAMI_SYMBOL_TO_CLASS: dict[str, str] = {
    symbol: aami for aami, symbols in AAMI_CLASSES.items() for symbol in symbols
}

# Annotation codes that mark rhythm, signal quality or comments rather than a beat
# (PhysioNet "Table of annotation codes"); they are ignored, not counted as unknown.
NON_BEAT_SYMBOLS: frozenset[str] = frozenset(
    ["+", "~", "|", "x", "!", "[", "]", "(", ")", '"', "=", "p", "t", "u", "`", "'", "^", "s", "T", "*", "D", "@"]
)


def symbol_map(name_or_map: str | dict[str, str]) -> dict[str, str]:
    """Return a symbol → class map from a named map ("aami") or a user-given dict."""
    if isinstance(name_or_map, dict):
        return dict(name_or_map)
    if name_or_map == "aami":
        return dict(AAMI_SYMBOL_TO_CLASS)
    raise ValueError(f"unknown label map {name_or_map!r}; use 'aami' or a table of symbol = class")
