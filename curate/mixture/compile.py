"""From the kept rows to what each record contributes: groups, validation split, plan, samples."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from curate.errors import FatalError
from curate.mixture.groups import assign_groups
from curate.mixture.plan import MixturePlan, check_feasible, plan_mixture
from curate.mixture.sample import sample
from curate.mixture.section import MixtureSection
from curate.mixture.validation import select_validation, validation_target

TIMES_SCHEMA = {"_row": pl.Int64, "times_sampled": pl.Int64, "split": pl.String, "reason": pl.String}


@dataclass
class CompiledMixture:
    """The plan and, per kept row, `times_sampled`, `split` ('train', 'validation' or null) and a `reason`
    when it is not used (`not_sampled`, `not_in_group`)."""

    plan: MixturePlan
    times: pl.DataFrame
    groups: pl.DataFrame | None = None  # `_row`, `group` of every grouped row (None without groups)


def available_tokens(rows: pl.DataFrame) -> pl.DataFrame:
    """Records, tokens and largest record per source (and per `_group` when present)."""
    keys = ["source", "_group"] if "_group" in rows.columns else ["source"]
    out = rows.group_by(keys).agg(
        pl.len().alias("records"),
        pl.col("n_tokens").sum().alias("tokens"),
        pl.col("n_tokens").max().alias("max_tokens"),
    )
    return out.rename({"_group": "group"}) if "_group" in keys else out


def compile_mixture(
    rows: pl.DataFrame, mixture: MixtureSection | None, names: list[str], seed: int, plan_only: bool = False
) -> CompiledMixture:
    """Plan and sample. `rows`: `_row`, `id`, `source`, `n_tokens` and the columns groups read (and
    `dup_cluster` for the validation split). Raises FatalError for an infeasible plan, overlapping groups or
    ungrouped records; with `plan_only`, an infeasible plan is returned as it is and nothing is sampled."""
    outside = rows.clear()
    groups = None
    if mixture is not None and mixture.groups:
        rows, outside = assign_groups(rows, mixture)
        groups = rows.select("_row", pl.col("_group").alias("group"))
    plan = plan_mixture(available_tokens(rows), mixture, names)
    held = pl.Series("_row", [], pl.Int64)
    if mixture is not None and mixture.validation:
        held = select_validation(rows, plan, validation_target(mixture.validation, plan), seed)
        validation_tokens = int(rows.filter(pl.col("_row").is_in(held.implode()))["n_tokens"].sum())
        rows = rows.filter(~pl.col("_row").is_in(held.implode()))
        plan = plan_mixture(available_tokens(rows), mixture, names)
        plan.validation_tokens = validation_tokens
    if plan_only:
        return CompiledMixture(plan, pl.DataFrame(schema=TIMES_SCHEMA), groups)
    if mixture is not None:
        check_feasible(plan)
    sampled = sample(rows, plan, seed)
    if mixture is not None and plan.total_tokens > 0 and not (sampled["times_sampled"] > 0).any():
        smallest = int(rows["n_tokens"].min()) if rows.height else 0
        raise FatalError(
            f"the mixture samples no record: every source's share of total_tokens = {plan.total_tokens:,} "
            f"is closer to 0 than to a whole record (the smallest has {smallest:,} tokens); raise total_tokens"
        )
    used = pl.col("times_sampled") > 0
    parts = [
        sampled.select(
            "_row",
            "times_sampled",
            pl.when(used).then(pl.lit("train")).alias("split"),
            pl.when(used).then(pl.lit(None, pl.String)).otherwise(pl.lit("not_sampled")).alias("reason"),
        ),
        _fixed(held, 1, "validation", None),
        _fixed(outside["_row"], 0, None, "not_in_group"),
    ]
    return CompiledMixture(plan, pl.concat([p.cast(TIMES_SCHEMA) for p in parts]).sort("_row"), groups)


def _fixed(rows: pl.Series, times: int, split: str | None, reason: str | None) -> pl.DataFrame:
    return rows.to_frame("_row").select(
        "_row",
        pl.lit(times, pl.Int64).alias("times_sampled"),
        pl.lit(split, pl.String).alias("split"),
        pl.lit(reason, pl.String).alias("reason"),
    )
