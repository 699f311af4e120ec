"""`filter_length`: drop records whose training text is too short or too long."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import polars as pl

from curate.params import below_minimum, param
from curate.record import training_text
from curate.stages.base import DROP, Context, MapStep, Stage, mark


@dataclass
class FilterLength(Stage, MapStep):
    """Drop records outside token/character bounds. Reads `n_tokens`, `text`, `messages`; drops rows.

    Bounds are inclusive and apply to the training text (`text`, or the message contents joined by
    newlines). `kinds` limits the stage to pretrain or instruction records; others pass untouched. For
    different bounds per kind, use the stage twice. Drop reasons: `too_few_tokens`, `too_many_tokens`,
    `too_few_chars`, `too_many_chars`.
    """

    name: ClassVar[str] = "filter_length"
    reads: ClassVar[tuple[str, ...]] = ("n_tokens", "text", "messages", "kind")
    drops_rows: ClassVar[bool] = True

    min_tokens: int | None = param(None, "drop records with fewer tokens")
    max_tokens: int | None = param(None, "drop records with more tokens")
    min_chars: int | None = param(None, "drop records with fewer characters")
    max_chars: int | None = param(None, "drop records with more characters")
    kinds: list[Literal["pretrain", "instruction"]] = param(
        factory=lambda: ["pretrain", "instruction"], doc="record kinds the bounds apply to"
    )

    def problems(self, where: str) -> list[str]:
        out = []
        bounds = (self.min_tokens, self.max_tokens, self.min_chars, self.max_chars)
        if all(b is None for b in bounds):
            out.append(f"{where}: set at least one of min_tokens, max_tokens, min_chars, max_chars")
        out += below_minimum(where, self, min_tokens=0, max_tokens=0, min_chars=0, max_chars=0)
        for low, high in (("min_tokens", "max_tokens"), ("min_chars", "max_chars")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                out.append(f"{where}.{high}: {hi} is below {low} = {lo}")
        if not self.kinds:
            out.append(f"{where}.kinds: must name at least one kind")
        return out

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        applies = pl.col("kind").is_in(self.kinds)
        chars = training_text().str.len_chars()
        checks = [
            (self.min_tokens, pl.col("n_tokens") < (self.min_tokens or 0), "too_few_tokens"),
            (self.max_tokens, pl.col("n_tokens") > (self.max_tokens or 0), "too_many_tokens"),
            (self.min_chars, chars < (self.min_chars or 0), "too_few_chars"),
            (self.max_chars, chars > (self.max_chars or 0), "too_many_chars"),
        ]
        for bound, fails, reason in checks:
            if bound is not None:
                df = mark(df, DROP, pl.when(applies & fails).then(pl.lit(reason)))
        return df
