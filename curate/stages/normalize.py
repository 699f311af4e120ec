"""`normalize`: Unicode normalization, control characters and whitespace, on text and message contents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import polars as pl

from curate.params import param
from curate.stages.base import ERROR, Context, MapStep, Stage, mark

# C0 and C1 control characters except tab and newline, plus zero-width and BOM characters.
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200e\u200f\ufeff]"
_SPACE = r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]"
# Within a line, after a visible character: two or more spaces, or one space character other than " ".
# Leading indentation never matches (the run must follow a non-space character), so code keeps it.
_INNER_SPACES = rf"([^\s])(?:{_SPACE}{{2,}}|[\t\u00a0\u2000-\u200a\u202f\u205f\u3000])"
_TRAILING_SPACES = rf"{_SPACE}+\n"
_NON_ASCII = r"[^\x00-\x7f]"


@dataclass
class Normalize(Stage, MapStep):
    """Clean text in place. Reads/writes `text` and `messages[].content`; drops no rows.

    Rules, in order: `\\r\\n` and `\\r` become `\\n`; Unicode normalization (`form`); control characters
    removed (`control_chars`; tab and newline are kept); with `whitespace`: within a line, after its
    first visible character, a run of spaces/tabs (incl. no-break and ideographic spaces) becomes one
    space, while leading indentation is kept as it is (code stays valid); white space at line ends is
    removed; three or more newlines become two; white space at the start and end of the text is
    removed. A record left empty (an empty document, or a conversation whose user turns or final
    assistant turn are empty) is quarantined with reason `empty_after_normalize`.
    """

    name: ClassVar[str] = "normalize"
    reads: ClassVar[tuple[str, ...]] = ("text", "messages")
    writes: ClassVar[tuple[str, ...]] = ("text", "messages")

    form: Literal["NFC", "NFKC", "NFD", "NFKD", "none"] = param("NFC", "Unicode normalization form")
    control_chars: bool = param(True, "remove control and zero-width characters (tab and newline stay)")
    whitespace: bool = param(True, "collapse inner spaces (indentation kept), trim line ends, at most one blank line")

    def _clean(self, expr: pl.Expr) -> pl.Expr:
        expr = expr.str.replace_all("\r\n?", "\n")
        if self.form != "none":  # ASCII text is already in every normal form
            expr = pl.when(expr.str.contains(_NON_ASCII)).then(expr.str.normalize(self.form)).otherwise(expr)
        if self.control_chars:
            expr = expr.str.replace_all(_CONTROL, "")
        if self.whitespace:
            expr = (
                expr.str.replace_all(_INNER_SPACES, "${1} ")
                .str.replace_all(_TRAILING_SPACES, "\n")
                .str.replace_all(r"\n{3,}", "\n\n")
                .str.strip_chars_start()
                .str.strip_chars_end()
            )
        return expr

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        content = pl.element().struct.field("content")
        cleaned_messages = pl.col("messages").list.eval(
            pl.struct(pl.element().struct.field("role"), self._clean(content).alias("content"))
        )
        df = df.with_columns(
            self._clean(pl.col("text")).alias("text"),
            pl.when(pl.col("messages").is_not_null()).then(cleaned_messages).alias("messages"),
        )
        user_text = (
            pl.col("messages")
            .list.eval(pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content"))
            .list.join("")
        )
        last_answer = pl.col("messages").list.last().struct.field("content")
        empty = (
            pl.when(pl.col("kind") == "pretrain")
            .then(pl.col("text").fill_null("") == "")
            .otherwise((user_text.fill_null("") == "") | (last_answer.fill_null("") == ""))
        )
        return mark(df, ERROR, pl.when(empty).then(pl.lit("empty_after_normalize")))
