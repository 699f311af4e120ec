"""`[mixture]` as configured: source weights or groups, epochs caps, the validation split — and every
check that can be made before data is read (unknown sources, overlapping source groups, bad `where`
expressions, shares not summing to 1). Checks that need the data live in `groups.py`."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from curate.expr import ExprError, Expression
from curate.params import check_params, did_you_mean, param
from curate.record import RECORD_SCHEMA, public_columns

Ungrouped = Literal["error", "drop"]


@dataclass
class GroupSection:
    """`[mixture.groups.<name>]`: a set of records (by source, by condition, or the rest) and its share."""

    weight: float = param(doc="share of output tokens of the group's records")
    sources: list[str] = param(factory=list, doc="the group's sources (give sources, where or rest)")
    where: str = param("", "condition selecting the group's records, e.g. \"cot and kind == 'instruction'\"")
    rest: bool = param(False, "the group holds every record no other group holds")
    weights: dict[str, float] = param(factory=dict, doc="shares within the group per source; must sum to 1")
    temperature: float | None = param(None, "within the group, p_i ∝ n_i^(1/T) over available tokens n_i")
    max_epochs: int | None = param(None, "repeat cap of the group's records (default: the source's, else 1)")


@dataclass
class MixtureSection:
    """`[mixture]`: token shares per source, or per group of records."""

    weights: dict[str, float] = param(factory=dict, doc="share of output tokens per source; must sum to 1")
    total_tokens: int | None = param(None, "training tokens (default: the largest the caps allow)")
    max_epochs: dict[str, int] = param(factory=dict, doc="repeat cap per source (default 1)")
    groups: dict[str, dict[str, Any]] = param(
        factory=dict, doc="[mixture.groups.<name>] tables: weight, sources/where/rest, weights or temperature"
    )
    ungrouped: Ungrouped = param("error", "records in no group: stop before building, or drop them (ledger)")
    validation: int | float | None = param(None, "held-out split: a share of total_tokens (< 1) or a token count")

    def parsed_groups(self) -> dict[str, GroupSection]:
        """The valid group tables as GroupSection objects (problems are reported by `check_mixture`)."""
        out = {}
        for name, table in self.groups.items():
            if isinstance(table, dict):
                kwargs, problems = check_params(GroupSection, table, f"mixture.groups.{name}")
                if not problems:
                    out[name] = GroupSection(**kwargs)
        return out


@functools.cache
def parse_where(text: str) -> Expression:
    """A group's condition, parsed once."""
    return Expression.parse(text)


def check_mixture(m: MixtureSection, names: list[str], columns: set[str]) -> list[str]:
    """Every problem of `[mixture]`; `columns` are those that exist after the last stage."""
    out: list[str] = []
    if m.weights and m.groups:
        out.append("mixture: give either weights = {...} or [mixture.groups.<name>] tables, not both")
    elif not m.weights and not m.groups:
        out.append("mixture: needs weights = {source = share, ...} or [mixture.groups.<name>] tables")
    if m.weights:
        out += _check_weights(m.weights, names, "mixture.weights", every_source=True)
        if m.ungrouped != "error":
            out.append("mixture.ungrouped: only used with [mixture.groups]")
    if m.groups:
        out += _check_groups(m, names, columns)
    for key, value in m.max_epochs.items():
        if key not in names:
            out.append(f"mixture.max_epochs.{key}: no source named {key!r}{did_you_mean(key, names)}")
        if value < 1:
            out.append(f"mixture.max_epochs.{key}: must be >= 1, got {value}")
    if m.total_tokens is not None and m.total_tokens <= 0:
        out.append(f"mixture.total_tokens: must be > 0, got {m.total_tokens}")
    v = m.validation
    if isinstance(v, float) and not 0 < v < 1:
        out.append(f"mixture.validation: a share must be > 0 and < 1 (or give a token count), got {v}")
    if isinstance(v, int) and v < 1:
        out.append(f"mixture.validation: a token count must be >= 1, got {v}")
    return out


def _check_weights(weights: dict[str, float], names: list[str], where: str, every_source: bool) -> list[str]:
    out = []
    for key, value in weights.items():
        if key not in names:
            out.append(f"{where}.{key}: no source named {key!r}{did_you_mean(key, names)}")
        if value < 0 or not math.isfinite(value):
            out.append(f"{where}.{key}: must be a finite number >= 0, got {value}")
    if every_source:
        out += [f"{where}: source {n!r} has no weight (give it 0 to leave it out)" for n in names if n not in weights]
    total = sum(weights.values())
    if weights and abs(total - 1.0) > 1e-6:
        out.append(f"{where}: sum is {total:.6g}, must be 1")
    return out


def _check_groups(m: MixtureSection, names: list[str], columns: set[str]) -> list[str]:
    out: list[str] = []
    owner: dict[str, str] = {}
    rest = []
    parsed = m.parsed_groups()
    for name, table in m.groups.items():
        where = f"mixture.groups.{name}"
        if not isinstance(table, dict):
            out.append(f"{where}: must be a table [{where}], got {type(table).__name__}")
            continue
        if name in names:
            out.append(f"{where}: a group cannot have the name of a source")
        out += check_params(GroupSection, table, where)[1]
        g = parsed.get(name)
        if g is None:
            continue
        given = [k for k, on in (("sources", bool(g.sources)), ("where", bool(g.where)), ("rest", g.rest)) if on]
        if len(given) != 1:
            found = f"got {' and '.join(given)}" if given else "got none"
            out.append(f"{where}: give exactly one of sources = [...], where = '...' or rest = true ({found})")
        if g.weight < 0 or not math.isfinite(g.weight):
            out.append(f"{where}.weight: must be a finite number >= 0, got {g.weight}")
        for i, src in enumerate(g.sources):
            if src not in names:
                out.append(f"{where}.sources[{i}]: no source named {src!r}{did_you_mean(src, names)}")
            elif src in owner:
                out.append(f"{where}.sources[{i}]: {src!r} is already in group {owner[src]!r}; groups must not overlap")
            else:
                owner[src] = name
        if g.rest:
            rest.append(name)
        if g.where:
            out += _check_where(g.where, f"{where}.where", columns)
        if g.weights and g.temperature is not None:
            out.append(f"{where}: give weights or temperature, not both")
        if g.weights:
            out += _check_weights(g.weights, names, f"{where}.weights", every_source=False)
            out += [
                f"{where}.weights.{k}: {k!r} is not one of the group's sources {g.sources}"
                for k in g.weights
                if g.sources and k in names and k not in g.sources
            ]
            out += [f"{where}.weights: source {s!r} has no weight (give it 0)" for s in g.sources if s not in g.weights]
        if g.temperature is not None and not (g.temperature > 0 and math.isfinite(g.temperature)):
            out.append(f"{where}.temperature: must be a finite number > 0, got {g.temperature}")
        if g.max_epochs is not None and g.max_epochs < 1:
            out.append(f"{where}.max_epochs: must be >= 1, got {g.max_epochs}")
    if len(rest) > 1:
        out.append(f"mixture.groups: only one group may have rest = true ({', '.join(rest)} do)")
    if len(parsed) == len(m.groups):
        total = sum(g.weight for g in parsed.values())
        if abs(total - 1.0) > 1e-6:
            parts = " + ".join(f"{n} {g.weight:g}" for n, g in parsed.items())
            out.append(f"mixture.groups: the groups' weight values sum to {total:.6g} ({parts}), must be 1")
    by_source = not rest and all(g.sources for g in parsed.values())
    missing = [n for n in names if n not in owner]
    if by_source and len(parsed) == len(m.groups) and missing and m.ungrouped == "error":
        out.append(
            f"mixture.groups: source(s) {', '.join(map(repr, missing))} are in no group; add them to a group, "
            'add a group with rest = true, or set mixture.ungrouped = "drop" to drop their records'
        )
    return out


def _check_where(text: str, where: str, columns: set[str]) -> list[str]:
    try:
        expr = parse_where(text)
    except ExprError as exc:
        return [f"{where}: {exc}"]
    out = []
    for name, pos in expr.column_positions():
        if name not in columns:
            hint = f"columns: {', '.join(sorted(columns))}"
            err = ExprError(f"no column {name!r} after the last stage{did_you_mean(name, columns)}", text, pos, hint)
            out.append(f"{where}: {err}")
    if out:
        return out
    known = {c: RECORD_SCHEMA[c] for c in public_columns(pl.DataFrame(schema=RECORD_SCHEMA))}
    try:
        expr.compile({c: known.get(c, pl.Null()) for c in columns})
    except ExprError as exc:
        out.append(f"{where}: {exc}")
    return out
