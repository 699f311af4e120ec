"""Token-weighted mixture: plan per-source token targets, check feasibility, sample records.

Semantics: `weights` are shares of output tokens. Source s has A_s tokens available (kept records) and
may be repeated up to E_s = `max_epochs` times, so the largest feasible total is min_s(A_s·E_s / w_s)
over sources with w_s > 0; without `total_tokens` the mixture is that large. Source s then gets
T_s = round(w_s · T) tokens: floor(T_s / A_s) whole passes over all its records, then a partial pass
over a seeded permutation that stops at the record boundary closest to T_s. So a source is off its
target by at most half of one record, a record never appears twice in one pass, and down-sampling
is without replacement.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from curate.config import MixtureSection
from curate.errors import FatalError


@dataclass
class SourcePlan:
    """One source's line of the plan."""

    source: str
    records: int
    available_tokens: int
    weight: float
    max_epochs: int
    target_tokens: int

    @property
    def epochs(self) -> float:
        """Passes over the source the target needs (1.5 = one whole pass and half of another)."""
        return self.target_tokens / self.available_tokens if self.available_tokens else 0.0


@dataclass
class MixturePlan:
    """Targets for every source and the feasibility limit."""

    total_tokens: int
    sources: list[SourcePlan]
    max_feasible_tokens: int
    binding_source: str | None
    weighted: bool

    def to_dict(self) -> dict:
        return {
            "total_tokens": self.total_tokens,
            "max_feasible_tokens": self.max_feasible_tokens,
            "binding_source": self.binding_source,
            "sources": [{**asdict(s), "epochs": round(s.epochs, 6)} for s in self.sources],
        }


def plan_mixture(available: pl.DataFrame, mixture: MixtureSection | None, names: list[str]) -> MixturePlan:
    """Targets from available tokens per source (`available` has columns source, records, tokens)."""
    by_source = {row["source"]: row for row in available.iter_rows(named=True)}
    records = {n: int(by_source.get(n, {}).get("records") or 0) for n in names}
    tokens = {n: int(by_source.get(n, {}).get("tokens") or 0) for n in names}
    if mixture is None:
        total = sum(tokens.values())
        lines = [SourcePlan(n, records[n], tokens[n], tokens[n] / total if total else 0.0, 1, tokens[n]) for n in names]
        return MixturePlan(total, lines, total, None, weighted=False)
    caps = {n: mixture.max_epochs.get(n, 1) for n in names}
    limits = {n: tokens[n] * caps[n] / mixture.weights[n] for n in names if mixture.weights[n] > 0}
    binding = min(limits, key=lambda n: (limits[n], n)) if limits else None
    max_total = math.floor(limits[binding]) if binding else 0
    total = mixture.total_tokens if mixture.total_tokens is not None else max_total
    lines = [
        SourcePlan(n, records[n], tokens[n], mixture.weights[n], caps[n], round(mixture.weights[n] * total))
        for n in names
    ]
    return MixturePlan(total, lines, max_total, binding, weighted=True)


def infeasibility(plan: MixturePlan) -> str | None:
    """Why a plan cannot be built (a message with a table), or None when it can."""
    over = [s for s in plan.sources if s.target_tokens > s.available_tokens * s.max_epochs]
    if not over and plan.total_tokens > 0:
        return None
    head = f"{'source':<20} {'available':>12} {'max_epochs':>10} {'weight':>8} {'target':>12} {'needs epochs':>12}"
    rows = [
        f"{s.source:<20} {s.available_tokens:>12,} {s.max_epochs:>10} {s.weight:>8.4g} {s.target_tokens:>12,} "
        f"{s.epochs if s.available_tokens else math.inf:>12.3g}"
        for s in plan.sources
    ]
    if plan.total_tokens <= 0:
        empty = [s.source for s in plan.sources if s.weight > 0 and s.available_tokens == 0]
        reason = f"the mixture would be empty: no tokens left in {', '.join(repr(n) for n in empty) or 'any source'}"
    else:
        reason = f"total_tokens = {plan.total_tokens:,} needs more repeats than max_epochs allows for " + ", ".join(
            repr(s.source) for s in over
        )
    return (
        f"infeasible mixture: {reason}.\n"
        + "\n".join([head, *rows])
        + f"\nlargest feasible total_tokens: {plan.max_feasible_tokens:,} (bound by source "
        f"{plan.binding_source!r}); lower total_tokens, raise max_epochs, add data or change the weights."
    )


def check_feasible(plan: MixturePlan) -> None:
    """Raise FatalError (before anything is written) when the plan cannot be met."""
    message = infeasibility(plan)
    if message:
        raise FatalError(message)


def _rng(seed: int, source: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(source.encode())])


def _partial_pass(tokens: np.ndarray, remainder: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a seeded permutation's prefix whose token sum is closest to `remainder`."""
    order = rng.permutation(len(tokens))
    cumulative = np.cumsum(tokens[order])
    take = int(np.searchsorted(cumulative, remainder, side="right"))  # records with cumsum <= remainder
    below = int(cumulative[take - 1]) if take else 0
    if take < len(order) and cumulative[take] - remainder < remainder - below:
        take += 1
    return order[:take]


def sample(rows: pl.DataFrame, plan: MixturePlan, seed: int) -> pl.DataFrame:
    """How often each kept row is sampled: columns `_row`, `times_sampled` (0 = not sampled).

    `rows` has `_row`, `source`, `n_tokens`. Without weights every row is sampled once.
    """
    if not plan.weighted:
        return rows.select("_row", pl.lit(1, pl.Int64).alias("times_sampled"))
    parts = []
    for line in plan.sources:
        group = rows.filter(pl.col("source") == line.source).sort("_row")
        counts = np.zeros(group.height, dtype=np.int64)
        if line.target_tokens > 0 and line.available_tokens > 0:
            full, remainder = divmod(line.target_tokens, line.available_tokens)
            counts += full
            counts[_partial_pass(group["n_tokens"].to_numpy(), remainder, _rng(seed, line.source))] += 1
        parts.append(group.select("_row").with_columns(pl.Series("times_sampled", counts)))
    return pl.concat(parts) if parts else pl.DataFrame(schema={"_row": pl.Int64, "times_sampled": pl.Int64})


def instance_order(times: pl.DataFrame, seed: int, shuffle: bool) -> pl.DataFrame:
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
        permutation = np.random.default_rng([seed, 0x5EED]).permutation(expanded.height)
        expanded = expanded.with_columns(pl.Series("_order", permutation)).sort("_order").drop("_order")
    return expanded
