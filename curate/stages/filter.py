"""`filter`: keep or drop rows on a condition over columns (see `curate.expr` for the language)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar, Literal

import polars as pl

from curate.errors import FatalError
from curate.expr import ExprError, Expression, check_columns
from curate.params import did_you_mean, param
from curate.record import RECORD_SCHEMA, public_columns
from curate.stages.base import DROP, Context, MapStep, Stage, mark


@functools.cache
def _parse(source: str) -> Expression:
    return Expression.parse(source)


@dataclass
class Filter(Stage, MapStep):
    """Keep (or drop) the rows where a condition holds. Reads the columns named in `where`; writes
    nothing; drops rows.

    `where` is a safe expression over columns — comparisons, `and`/`or`/`not`, `in`, `is null`:
    `reasoning_depth >= 0.3 or kind == 'pretrain'`. Columns are the canonical ones and those added by
    earlier stages; both are checked before any data is read. A row whose condition is null (e.g. a
    score missing for that record) counts as not matching.

    A dropped row's ledger reason is the condition it failed. With `action = "keep"` (the default) that is
    the first top-level `and` clause it failed (the whole condition when it is not an `and`), e.g.
    `reasoning_depth >= 0.3`; with `action = "drop"`, rows matching `where` are dropped with reason
    `not (<where>)`. The manifest counts drops per condition.
    """

    name: ClassVar[str] = "filter"
    drops_rows: ClassVar[bool] = True

    where: str = param(doc="condition over columns, e.g. \"reasoning_depth >= 0.3 or kind == 'pretrain'\"")
    action: Literal["keep", "drop"] = param("keep", "keep the rows matching `where`, or drop them")

    @property
    def reads(self) -> tuple[str, ...]:  # type: ignore[override]
        try:
            return tuple(_parse(self.where).columns)
        except ExprError:
            return ()

    def problems(self, where: str) -> list[str]:
        try:
            _parse(self.where)
        except ExprError as exc:
            return [f"{where}.where: {exc}"]
        return []

    def pipeline_problems(self, where: str, available: set[str]) -> list[str]:
        try:
            expr = _parse(self.where)
        except ExprError:
            return []  # reported by problems()
        out = []
        for name, pos in check_columns(expr, available):
            err = ExprError(
                f"no column {name!r} at this point{did_you_mean(name, available)}",
                self.where,
                pos,
                f"columns: {', '.join(sorted(available))}",
            )
            out.append(f"{where}.where: {err}")
        if out:
            return out
        known = {c: RECORD_SCHEMA[c] for c in public_columns(pl.DataFrame(schema=RECORD_SCHEMA))}
        schema = {c: known.get(c, pl.Null()) for c in available}  # types of added columns: unknown here
        try:
            expr.compile(schema)
        except ExprError as exc:
            out.append(f"{where}.where: {exc}")
        return out

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        expr = _parse(self.where)
        try:
            if self.action == "drop":
                matched = expr.compile(df.schema).fill_null(False)
                return mark(df, DROP, pl.when(matched).then(pl.lit(f"not ({expr.text(expr.tree)})")))
            reason = pl.lit(None, pl.String)
            for clause in reversed(expr.clauses):  # the first failing clause wins
                ok = expr.compile(df.schema, clause).fill_null(False)
                reason = pl.when(~ok).then(pl.lit(expr.text(clause))).otherwise(reason)
            return mark(df, DROP, reason)
        except ExprError as exc:
            raise FatalError(f"filter: where: {exc}") from exc
