"""The token-count step the executor inserts wherever `n_tokens` is needed and stale."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from curate.record import training_text
from curate.stages.base import Context, MapStep
from curate.tokens import count_tokens


@dataclass(frozen=True)
class CountTokens(MapStep):
    """Writes `n_tokens`: the tiktoken count of the training text (see `curate.record.training_text`)."""

    stage_name: str = "count_tokens"
    reads: tuple[str, ...] = ("text", "messages", "kind")
    writes: tuple[str, ...] = ("n_tokens",)

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        texts = df.select(training_text().fill_null("")).to_series().to_list()
        counts = count_tokens(texts, ctx.tokenizer, ctx.token_threads)
        return df.with_columns(pl.Series("n_tokens", counts, dtype=pl.Int64))
