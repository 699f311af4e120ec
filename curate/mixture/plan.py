"""Token targets per cell (a source within a group), the feasibility limit and why a plan cannot be met.

A cell c gets the share f_c of the training tokens: w_s for plain `weights`; W_g · p_s|g with groups,
where p_s|g is the group's explicit `weights` or p ∝ n^(1/T) over the tokens n available in the cell
(temperature T, default 1 = proportional). With A_c tokens available and a repeat cap E_c, the largest
feasible total is min_c(A_c·E_c / f_c) over cells with f_c > 0; cell c's target is round(f_c · T).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from curate.errors import FatalError
from curate.mixture.section import MixtureSection

EXACTNESS_RULE = (
    "|realized - target| <= m_c / 2 tokens for every cell c (a source within a group; m_c its largest record; "
    "target round(share_c x total_tokens)), so a source is within half a record per group it is in; shares: "
    "|realized share - target share| <= (2E + C) / (T - E), E = sum of m_c / 2, C = number of cells, T = total"
)


@dataclass
class CellPlan:
    """One source's records within one group (group None without groups)."""

    group: str | None
    source: str
    records: int
    available_tokens: int
    share: float
    max_epochs: int
    target_tokens: int
    max_record_tokens: int = 0

    @property
    def epochs(self) -> float:
        return self.target_tokens / self.available_tokens if self.available_tokens else 0.0


@dataclass
class SourcePlan:
    """One source's line of the plan (its cells summed)."""

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
class GroupPlan:
    """One group's line of the plan, with its definition as configured."""

    group: str
    weight: float
    records: int
    available_tokens: int
    target_tokens: int
    definition: dict[str, Any]

    @property
    def epochs(self) -> float:
        return self.target_tokens / self.available_tokens if self.available_tokens else 0.0


@dataclass
class MixturePlan:
    """Targets for every source, group and cell, and the feasibility limit."""

    total_tokens: int
    sources: list[SourcePlan]
    max_feasible_tokens: int
    binding_source: str | None
    weighted: bool
    groups: list[GroupPlan] = field(default_factory=list)
    cells: list[CellPlan] = field(default_factory=list)
    binding_group: str | None = None
    validation_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "total_tokens": self.total_tokens,
            "max_feasible_tokens": self.max_feasible_tokens,
            "binding_source": self.binding_source,
            "sources": [{**asdict(s), "epochs": round(s.epochs, 6)} for s in self.sources],
        }
        if self.groups:
            out["binding_group"] = self.binding_group
            out["groups"] = [{**asdict(g), "epochs": round(g.epochs, 6)} for g in self.groups]
            out["cells"] = [{**asdict(c), "epochs": round(c.epochs, 6)} for c in self.cells]
        if self.validation_tokens:
            out["validation_tokens"] = self.validation_tokens
        return out

    def binding(self) -> str:
        """`source 'a'`, `source 'a' in group 'g'` or `group 'g'` (no tokens in it)."""
        if self.binding_source is None:
            return f"group {self.binding_group!r}, which has no tokens" if self.binding_group else "nothing"
        return f"source {self.binding_source!r}" + (f" in group {self.binding_group!r}" if self.binding_group else "")


def _cells_by_key(available: pl.DataFrame, owner: dict[str, str]) -> dict[tuple[str | None, str], dict[str, int]]:
    """Available records and tokens per (group, source); without a `group` column a source is in the
    source group listing it (`owner`), if any."""
    has_group = "group" in available.columns
    out = {}
    for row in available.iter_rows(named=True):
        key = (row["group"] if has_group else owner.get(row["source"]), row["source"])
        out[key] = {
            "records": int(row.get("records") or 0),
            "tokens": int(row.get("tokens") or 0),
            "max": int(row.get("max_tokens") or 0),
        }
    return out


def within_group_shares(
    members: list[str], tokens: dict[str, int], weights: dict[str, float], temperature: float | None
) -> dict[str, float]:
    """p_s|g: explicit weights, or p ∝ n^(1/T) over the members' available tokens (T defaults to 1)."""
    if weights:
        return {s: float(weights.get(s, 0.0)) for s in members}
    t = temperature or 1.0
    raw = {s: (tokens[s] ** (1.0 / t) if tokens[s] > 0 else 0.0) for s in members}
    total = sum(raw.values())
    return {s: (v / total if total else 0.0) for s, v in raw.items()}


def plan_mixture(available: pl.DataFrame, mixture: MixtureSection | None, names: list[str]) -> MixturePlan:
    """Targets from available tokens: `available` has source, records, tokens (and with groups `group`;
    optionally `max_tokens`, the largest record, for the exactness bound)."""
    groups = mixture.parsed_groups() if mixture is not None and mixture.groups else {}
    found = _cells_by_key(available, {s: name for name, g in groups.items() for s in g.sources})
    empty = {"records": 0, "tokens": 0, "max": 0}
    if mixture is None:
        cells = [found.get((None, n), empty) for n in names]
        total = sum(c["tokens"] for c in cells)
        lines = [
            SourcePlan(n, c["records"], c["tokens"], c["tokens"] / total if total else 0.0, 1, c["tokens"])
            for n, c in zip(names, cells, strict=True)
        ]
        return MixturePlan(total, lines, total, None, weighted=False)
    specs: list[tuple[str | None, str, float, int]] = []  # group, source, share, cap
    if not groups:
        specs = [(None, n, mixture.weights.get(n, 0.0), mixture.max_epochs.get(n, 1)) for n in names]
    for gname, g in groups.items():
        present = {s for (grp, s) in found if grp == gname}
        members = [n for n in names if n in present or n in g.sources or g.weights.get(n, 0) > 0]
        tokens = {s: found.get((gname, s), empty)["tokens"] for s in members}
        shares = within_group_shares(members, tokens, g.weights, g.temperature)
        for s in members:
            caps = [c for c in (g.max_epochs, mixture.max_epochs.get(s)) if c is not None]
            specs.append((gname, s, g.weight * shares[s], min(caps) if caps else 1))
    limits: dict[tuple[str | None, str | None], float] = {}
    for grp, s, share, cap in specs:
        if share > 0:
            limits[(grp, s)] = found.get((grp, s), empty)["tokens"] * cap / share
    for gname, g in groups.items():
        if g.weight > 0 and not any(share > 0 for grp, _, share, _ in specs if grp == gname):
            limits[(gname, None)] = 0.0
    binding = min(limits, key=lambda k: (limits[k], str(k[0]), str(k[1]))) if limits else None
    max_total = math.floor(limits[binding] + 1e-6) if binding else 0
    total = mixture.total_tokens if mixture.total_tokens is not None else max_total
    cells = []
    for grp, s, share, cap in specs:
        c = found.get((grp, s), empty)
        cells.append(CellPlan(grp, s, c["records"], c["tokens"], share, cap, round(share * total), c["max"]))
    lines = []
    for n in names:
        mine = [c for c in cells if c.source == n]
        lines.append(
            SourcePlan(
                n,
                sum(c.records for c in mine),
                sum(c.available_tokens for c in mine),
                sum(c.share for c in mine),
                mixture.max_epochs.get(n, 1),
                sum(c.target_tokens for c in mine),
            )
        )
    group_lines = []
    for gname, g in groups.items():
        mine = [c for c in cells if c.group == gname]
        definition = {k: v for k, v in mixture.groups[gname].items()}
        group_lines.append(
            GroupPlan(
                gname,
                g.weight,
                sum(c.records for c in mine),
                sum(c.available_tokens for c in mine),
                sum(c.target_tokens for c in mine),
                definition,
            )
        )
    return MixturePlan(
        total,
        lines,
        max_total,
        binding[1] if binding else None,
        weighted=True,
        groups=group_lines,
        cells=cells,
        binding_group=binding[0] if binding else None,
    )


def infeasibility(plan: MixturePlan) -> str | None:
    """Why a plan cannot be built (a message with a table), or None when it can."""
    over = [c for c in plan.cells if c.target_tokens > c.available_tokens * c.max_epochs]
    if not over and plan.total_tokens > 0:
        return None
    grouped = bool(plan.groups)
    head = (f"{'group':<14} " if grouped else "") + (
        f"{'source':<20} {'available':>12} {'max_epochs':>10} {'weight':>8} {'target':>12} {'needs epochs':>12}"
    )
    rows = [
        (f"{c.group or '-':<14} " if grouped else "")
        + f"{c.source:<20} {c.available_tokens:>12,} {c.max_epochs:>10} {c.share:>8.4g} {c.target_tokens:>12,} "
        f"{c.epochs if c.available_tokens else math.inf:>12.3g}"
        for c in plan.cells
    ]
    if plan.total_tokens <= 0 or plan.max_feasible_tokens <= 0:
        reason = f"the mixture would be empty: no tokens available for {plan.binding()}"
    else:
        where = ", ".join(repr(c.source) + (f" in group {c.group!r}" if c.group else "") for c in over)
        reason = f"total_tokens = {plan.total_tokens:,} needs more repeats than max_epochs allows for {where}"
    if plan.validation_tokens:
        reason += f" (after {plan.validation_tokens:,} tokens were held out for validation)"
    return (
        f"infeasible mixture: {reason}.\n"
        + "\n".join([head, *rows])
        + f"\nlargest feasible total_tokens: {plan.max_feasible_tokens:,} (bound by {plan.binding()}); "
        "lower total_tokens, raise max_epochs, add data or change the weights."
    )


def check_feasible(plan: MixturePlan) -> None:
    """Raise FatalError (before anything is written) when the plan cannot be met."""
    message = infeasibility(plan)
    if message:
        raise FatalError(message)
