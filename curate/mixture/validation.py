"""The held-out validation split, drawn before the training mixture.

Size: `validation = 0.01` is a share of `total_tokens` (of the largest feasible total when that is not
set, measured before the split); an integer is a token count. Per cell (a source within a group) the
split takes round(f_c · V) tokens, f_c being the cell's share of the training mixture, so validation
has the mixture's proportions. Units are records, or whole near-duplicate clusters when the rows carry
`dup_cluster` (a `minhash_dedup` stage ran): units are taken in a seeded random order of their ids
until the cell's token count is closest to its target, and a cluster chosen in one cell takes its
records in every other cell too (that cell's validation then overshoots by them). Validation records are
used once and never in training, so no record and no cluster is in both splits.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from curate.errors import FatalError
from curate.mixture.plan import MixturePlan
from curate.mixture.sample import cell_filter, closest_prefix

SALT = 0x7A11D


def validation_target(validation: int | float, plan: MixturePlan) -> int:
    """Validation tokens V: a count as given, or a share of the training total."""
    if isinstance(validation, float):
        return round(validation * plan.total_tokens)
    return int(validation)


def unit_keys(rows: pl.DataFrame) -> pl.Expr:
    """A record's unit: its near-duplicate cluster when there is one, else the record itself."""
    own = pl.concat_str(pl.lit("\x00row:"), pl.col("_row").cast(pl.String))
    if "dup_cluster" in rows.columns:
        return pl.coalesce(pl.col("dup_cluster").cast(pl.String), own)
    return own


def select_validation(rows: pl.DataFrame, plan: MixturePlan, tokens: int, seed: int) -> pl.Series:
    """The `_row`s of the validation split (`rows`: `_row`, `source`, `n_tokens`, maybe `_group`,
    `dup_cluster`)."""
    units = rows.with_columns(unit_keys(rows).alias("_unit"))
    keys = units["_unit"].unique().sort()
    priority = pl.DataFrame({"_unit": keys, "_priority": np.random.default_rng([seed, SALT]).permutation(len(keys))})
    units = units.join(priority, on="_unit", how="left")
    chosen: list[pl.Series] = []
    for cell in plan.cells:
        want = round(cell.share * tokens)
        if want <= 0:
            continue
        mine = (
            units.filter(cell_filter(cell.source, cell.group))
            .group_by("_unit", "_priority")
            .agg(pl.col("n_tokens").sum())
            .sort("_priority")
        )
        have = int(mine["n_tokens"].sum())
        if want > have:
            where = f"source {cell.source!r}" + (f" in group {cell.group!r}" if cell.group else "")
            raise FatalError(
                f"validation needs {want:,} tokens from {where}, which has {have:,}; lower mixture.validation"
            )
        chosen.append(mine["_unit"].head(closest_prefix(mine["n_tokens"].to_numpy(), want)))
    if not chosen:
        return pl.Series("_row", [], pl.Int64)
    taken = pl.concat(chosen)
    return units.filter(pl.col("_unit").is_in(taken.implode()))["_row"]
