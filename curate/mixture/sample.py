"""Sampling records to meet a plan, and the output order of the sampled instances.

Cell c (a source within a group) with target T_c and A_c tokens available gets floor(T_c / A_c) whole
passes over all its records, then a partial pass over a seeded permutation that stops at the record
boundary closest to the remainder. So a cell is off its target by at most half of its largest record,
a record never appears twice in one pass, and down-sampling is without replacement.
"""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl

from curate.mixture.plan import MixturePlan


def cell_rng(seed: int, source: str, group: str | None = None) -> np.random.Generator:
    """The generator of one cell's partial pass (without groups: keyed by the source alone)."""
    key = source if group is None else f"{group}\x00{source}"
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def closest_prefix(tokens: np.ndarray, target: int) -> int:
    """How many leading items' token sum is closest to `target` (ties: the shorter prefix)."""
    cumulative = np.cumsum(tokens)
    take = int(np.searchsorted(cumulative, target, side="right"))  # items with cumsum <= target
    below = int(cumulative[take - 1]) if take else 0
    if take < len(tokens) and cumulative[take] - target < target - below:
        take += 1
    return take


def _partial_pass(tokens: np.ndarray, remainder: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a seeded permutation's prefix whose token sum is closest to `remainder`."""
    order = rng.permutation(len(tokens))
    return order[: closest_prefix(tokens[order], remainder)]


def cell_filter(source: str, group: str | None) -> pl.Expr:
    """Rows of one cell (`_group` is the group column; absent without groups)."""
    condition = pl.col("source") == source
    return condition if group is None else condition & (pl.col("_group") == group)


def sample(rows: pl.DataFrame, plan: MixturePlan, seed: int) -> pl.DataFrame:
    """How often each row is sampled: columns `_row`, `times_sampled` (0 = not sampled).

    `rows` has `_row`, `source`, `n_tokens` (and `_group` with groups). Without weights every row is
    sampled once.
    """
    if not plan.weighted:
        return rows.select("_row", pl.lit(1, pl.Int64).alias("times_sampled"))
    parts = []
    for cell in plan.cells:
        part = rows.filter(cell_filter(cell.source, cell.group)).sort("_row")
        counts = np.zeros(part.height, dtype=np.int64)
        if cell.target_tokens > 0 and cell.available_tokens > 0:
            full, remainder = divmod(cell.target_tokens, cell.available_tokens)
            counts += full
            rng = cell_rng(seed, cell.source, cell.group)
            counts[_partial_pass(part["n_tokens"].to_numpy(), remainder, rng)] += 1
        parts.append(part.select("_row").with_columns(pl.Series("times_sampled", counts)))
    schema = {"_row": pl.Int64, "times_sampled": pl.Int64}
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def instance_order(times: pl.DataFrame, seed: int, shuffle: bool, salt: int = 0x5EED) -> pl.DataFrame:
    """One row per output instance (`_row` repeated `times_sampled` times) in output order.

    With `shuffle`, the order is a seeded global permutation across sources; else input order.
    """
    expanded = (
        times.filter(pl.col("times_sampled") > 0)
        .sort("_row")
        .with_columns(pl.int_ranges(0, pl.col("times_sampled")).alias("_epoch"))
        .explode("_epoch")
        .select("_row", pl.col("_epoch").cast(pl.Int64))
    )
    if shuffle and expanded.height:
        permutation = np.random.default_rng([seed, salt]).permutation(expanded.height)
        expanded = expanded.with_columns(pl.Series("_order", permutation)).sort("_order").drop("_order")
    return expanded


def split_order(times: pl.DataFrame, seed: int, shuffle: bool) -> pl.DataFrame:
    """Output order of both splits: training instances (`instance_order`), then validation records in
    their own seeded order. Columns `_row`, `_epoch`, `split`."""
    if "split" not in times.columns:
        times = times.with_columns(pl.lit("train").alias("split"))
    train = instance_order(times.filter(pl.col("split") == "train"), seed, shuffle)
    validation = instance_order(times.filter(pl.col("split") == "validation"), seed, shuffle, salt=0x7A11D)
    return pl.concat(
        [
            train.with_columns(pl.lit("train").alias("split")),
            validation.with_columns(pl.lit("validation").alias("split")),
        ]
    )
