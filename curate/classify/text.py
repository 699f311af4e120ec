"""The text a fastText classifier sees: which part of a record (`field`), and how it is preprocessed.

Training (`train_classifier`) and inference (the `fasttext_classifier` stage) both call these two
functions, so a model always sees text prepared the same way.

Preprocessing (`classifier_text`), in this order:
1. cut to `max_chars` characters (the start of a text carries most of its style);
2. lower case (Unicode `str.lower`);
3. every digit becomes `0`, so "48 / 2 = 24" and "15 * 2 = 30" share the tokens of a calculation
   instead of teaching the model particular numbers;
4. punctuation and symbols become separate tokens ("24." → "00 ."; "$15" → "$ 00"), letters and
   digits (any script) stay together; CJK text stays as written (fastText splits on spaces only);
5. all white space (newlines included: fastText reads one example per line) becomes single spaces.
"""

from __future__ import annotations

import re
from typing import Literal

import polars as pl

from curate.record import training_text

Field = Literal["response", "prompt", "all"]
FIELDS: tuple[str, ...] = ("response", "prompt", "all")

_DIGIT = re.compile(r"\d")
_SYMBOL = re.compile(r"([^\w\s])")
_SPACE = re.compile(r"\s+")


def classifier_text(text: str | None, max_chars: int = 2000) -> str:
    """One line of preprocessed text (see the module docstring); empty for None or blank text."""
    if not text:
        return ""
    text = _DIGIT.sub("0", text[:max_chars].lower())
    text = _SYMBOL.sub(r" \1 ", text)
    return _SPACE.sub(" ", text).strip()


def _contents(roles: tuple[str, ...]) -> pl.Expr:
    turns = pl.element().filter(pl.element().struct.field("role").is_in(list(roles)))
    return pl.col("messages").list.eval(turns.struct.field("content")).list.join("\n")


def field_text(field: Field) -> pl.Expr:
    """Expression for the part of a record a classifier reads (a String column, null when absent).

    - `response`: the assistant turns of an instruction record, joined by newlines;
    - `prompt`: its system and user turns;
    - `all`: the training text (every turn, see `curate.record.training_text`).

    Pretrain records always give their `text`.
    """
    if field == "all":
        return training_text()
    roles = ("assistant",) if field == "response" else ("system", "user")
    return pl.when(pl.col("kind") == "pretrain").then(pl.col("text")).otherwise(_contents(roles))
