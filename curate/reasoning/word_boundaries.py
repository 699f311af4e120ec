"""Word boundaries that polars' regex engine can run fast.

With a Unicode `\\b`, the engine cannot use its DFA on non-ASCII text and runs about ten times slower.
An ASCII `(?-u:\\b)` gives the same matches on any text without non-ASCII word characters (accented or
CJK letters, non-ASCII digits): there, ASCII and Unicode word characters coincide. Curly quotes, dashes
and other non-ASCII punctuation do not change that.
"""

from __future__ import annotations

import re

#: A character that is a word character for Unicode `\b` but not for ASCII `(?-u:\b)`.
NON_ASCII_WORD_CHAR = r"[\w&&[^\x00-\x7F]]"


def ascii_word_boundaries(pattern: str) -> str:
    """`pattern` with every `\\b` (not an escaped backslash followed by `b`) as `(?-u:\\b)`."""
    return re.sub(r"(?<!\\)((?:\\\\)*)\\b", r"\1(?-u:\\b)", pattern)
