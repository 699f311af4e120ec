"""Expanding stages into steps, and running steps on one frame (shared by executor and notebooks)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from curate.stages.base import DROP, ERROR, BarrierStep, Context, MapStep, Stage, Step
from curate.stages.tokens import CountTokens

CONTENT = {"text", "messages"}


def expand(stages: Sequence[Stage]) -> list[Step]:
    """The steps of a pipeline, with token counts inserted where `n_tokens` is needed.

    Records arrive without `n_tokens`; a step that rewrites `text`/`messages` makes it stale again. A
    count goes in before any step that reads `n_tokens` while it is stale, and, so that every output
    record has a correct count, right after the last step that changes content (counting early keeps
    the count in the same streaming pass as the change, instead of re-reading all data after a barrier).
    """
    steps: list[Step] = []
    fresh = False
    stale_since = 0  # position right after the last content change (0: the records as read)
    for stage in stages:
        for step in stage.steps():
            if not step.stage_name:
                step.stage_name = stage.name
            if "n_tokens" in step.reads and not fresh:
                steps.append(CountTokens())
                fresh = True
            steps.append(step)
            if CONTENT & set(step.writes):
                fresh = False
                stale_since = len(steps)
    if not fresh:
        steps.insert(stale_since, CountTokens())
    return steps


def with_marks(df: pl.DataFrame) -> pl.DataFrame:
    """Add empty `_drop` / `_error` columns if missing."""
    missing = [pl.lit(None, pl.String).alias(c) for c in (DROP, ERROR) if c not in df.columns]
    return df.with_columns(missing) if missing else df


def split_marked(df: pl.DataFrame, stage_name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a frame into (kept rows, removed rows with ledger columns `_stage`, `_drop`, `_error`)."""
    removed_mask = pl.col(DROP).is_not_null() | pl.col(ERROR).is_not_null()
    removed = df.filter(removed_mask).with_columns(pl.lit(stage_name).alias("_stage"))
    kept = df.filter(~removed_mask)
    return kept, removed


def join_decisions(df: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    """Apply a barrier's decision table (keyed by `_row`) to a batch."""
    df = df.drop([c for c in decisions.columns if c != "_row" and c in df.columns and c != DROP])
    joined = df.join(
        decisions.rename({DROP: "_decided"}) if DROP in decisions.columns else decisions,
        on="_row",
        how="left",
        maintain_order="left",
    )
    if "_decided" in joined.columns:
        joined = joined.with_columns(pl.coalesce(DROP, "_decided").alias(DROP)).drop("_decided")
    return joined


def run_steps_in_memory(steps: Sequence[Step], df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """Run steps on one in-memory frame. Returns every row: kept ones, and removed ones with reasons."""
    if "_row" not in df.columns:
        df = df.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
    df = with_marks(df)
    removed_parts = []
    for step in steps:
        if isinstance(step, MapStep):
            df = with_marks(step.apply(df, ctx))
        elif isinstance(step, BarrierStep):
            df = join_decisions(df, step.decide(df.lazy(), ctx))
        df, removed = split_marked(df, step.stage_name)
        removed_parts.append(removed)
    out = pl.concat([df, *removed_parts], how="diagonal_relaxed").sort("_row")
    if "n_tokens" in out.columns and any(CONTENT & set(s.writes) for s in steps):
        out = CountTokens().apply(out, ctx)  # the in-memory run keeps counts true to the new text
    return out
