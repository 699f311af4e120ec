"""Which group each record is in, checked on the data after the stages ran and before anything is written.

A record is in a source group when its source is listed, in a `where` group when the condition holds
(null counts as not matching), and in the `rest = true` group when it is in no other group. A record in
two groups is an error (counts per pair of groups, example ids); a record in no group is an error
unless `ungrouped = "drop"`, which drops it with ledger reason `not_in_group` (stage `mixture`).
"""

from __future__ import annotations

import itertools

import polars as pl

from curate.errors import FatalError
from curate.expr import ExprError
from curate.mixture.section import GroupSection, MixtureSection, parse_where

EXAMPLES = 3


def mixture_columns(mixture: MixtureSection | None) -> list[str]:
    """Columns beyond the narrow ones the mixture needs: those the groups' conditions read, and
    `dup_cluster` for a validation split (used where a `minhash_dedup` stage wrote it)."""
    if mixture is None:
        return []
    names = {c for g in mixture.parsed_groups().values() if g.where for c in parse_where(g.where).columns}
    if mixture.validation:
        names.add("dup_cluster")
    return sorted(names)


def _member(name: str, g: GroupSection, schema: pl.Schema) -> pl.Expr:
    if g.sources:
        return pl.col("source").is_in(g.sources)
    if g.where:
        try:
            return parse_where(g.where).compile(schema).fill_null(False)
        except ExprError as exc:
            raise FatalError(f"mixture.groups.{name}.where: {exc}") from exc
    return pl.lit(False)


def _examples(rows: pl.DataFrame) -> str:
    shown = rows.sort("_row").head(EXAMPLES).select(pl.concat_str("source", pl.lit(":"), "id"))
    return ", ".join(shown.to_series().to_list())


def assign_groups(rows: pl.DataFrame, mixture: MixtureSection) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows in a group with a `_group` column, rows in no group that `ungrouped = "drop"` drops).

    Raises FatalError listing every overlap, and the ungrouped records unless they are to be dropped.
    """
    groups = mixture.parsed_groups()
    flags = rows.select(
        "_row", "source", "id", *[_member(name, g, rows.schema).alias(name) for name, g in groups.items() if not g.rest]
    )
    named = [n for n, g in groups.items() if not g.rest]
    problems = []
    for a, b in itertools.combinations(named, 2):
        both = flags.filter(pl.col(a) & pl.col(b))
        if both.height:
            problems.append(f"groups {a!r} and {b!r}: {both.height:,} record(s) in both, e.g. {_examples(both)}")
    if problems:
        raise FatalError(
            "mixture groups overlap (a record may be in one group only); make the conditions exclusive, "
            "e.g. add 'and not (...)':\n  " + "\n  ".join(problems)
        )
    group = pl.lit(None, pl.String)
    for name in reversed(named):
        group = pl.when(pl.col(name)).then(pl.lit(name)).otherwise(group)
    rest = next((n for n, g in groups.items() if g.rest), None)
    if rest is not None:
        group = group.fill_null(pl.lit(rest))
    assigned = flags.select("_row", group.alias("_group"))
    rows = rows.join(assigned, on="_row", how="left", maintain_order="left")
    outside = rows.filter(pl.col("_group").is_null())
    if outside.height and mixture.ungrouped == "error":
        per_source = outside.group_by("source").len().sort("source")
        lines = [
            f"{r['source']}: {r['len']:,} record(s), e.g. {_examples(outside.filter(pl.col('source') == r['source']))}"
            for r in per_source.iter_rows(named=True)
        ]
        raise FatalError(
            f"{outside.height:,} record(s) are in no mixture group; add a group with rest = true, widen the "
            'groups, or set mixture.ungrouped = "drop" to drop them (ledger reason not_in_group):\n  '
            + "\n  ".join(lines)
        )
    return rows.filter(pl.col("_group").is_not_null()), outside
