"""`exact_dedup`: remove records whose normalized content is identical to an earlier record's."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import polars as pl

from curate.params import param
from curate.stages.base import DROP, BarrierStep, Context, MapStep, Stage, Step, Tasks

HASH_COLUMN = "_exact_hash"


def content_key(casefold: bool, whitespace: bool) -> pl.Expr:
    """The string whose hash identifies a record's content: kind, roles and texts, with separators."""
    turns = pl.col("messages").list.eval(
        pl.concat_str(pl.element().struct.field("role"), pl.lit("\x1f"), pl.element().struct.field("content"))
    )
    key = (
        pl.when(pl.col("kind") == "pretrain")
        .then(pl.concat_str(pl.lit("P\x1e"), pl.col("text")))
        .otherwise(pl.concat_str(pl.lit("I\x1e"), turns.list.join("\x1e")))
    )
    if whitespace:
        key = key.str.replace_all(r"\s+", " ").str.strip_chars()
    if casefold:
        key = key.str.to_lowercase()
    return key


def _blake2b(keys: pl.Series) -> pl.Series:
    digests = [hashlib.blake2b(k.encode("utf-8"), digest_size=16).digest() for k in keys.to_list()]
    return pl.Series(keys.name, digests, dtype=pl.Binary)


@dataclass(frozen=True)
class _HashContent(MapStep):
    casefold: bool
    whitespace: bool
    stage_name: str = "exact_dedup"
    reads: tuple[str, ...] = ("kind", "text", "messages")
    writes: tuple[str, ...] = (HASH_COLUMN,)

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        keys = df.select(content_key(self.casefold, self.whitespace).alias(HASH_COLUMN)).to_series()
        return df.with_columns(_blake2b(keys))


@dataclass(frozen=True)
class _KeepFirst(BarrierStep):
    scope: str
    stage_name: str = "exact_dedup"
    reads: tuple[str, ...] = ("_row", "id", "source", HASH_COLUMN)

    def decide(self, rows: pl.LazyFrame, ctx: Context) -> pl.DataFrame:
        return later_copies(rows, self.scope == "source")

    def decide_in_tasks(self, rows: pl.LazyFrame, ctx: Context, files: list[Path], tasks: Tasks) -> pl.DataFrame:
        """Hash-partitioned: each task groups the records whose content hash falls in its part. On Ray,
        the parts are grouped by a Ray Data shuffle (`exact_dedup_ray`)."""
        names = tuple(str(f) for f in files)
        if tasks.on_ray:
            from curate.stages.exact_dedup_ray import ray_later_copies

            return ray_later_copies(list(names), self.scope == "source", tasks.parallelism)
        parts = max(1, tasks.parallelism)
        found = tasks.run(
            dropped_in_part, [HashPart(names, part, parts, self.scope == "source") for part in range(parts)]
        )
        return pl.concat(found, how="vertical").sort("_row")


@dataclass(frozen=True)
class HashPart:
    """Records of `files` whose content hash is in part `part` of `parts` (all of them when parts = 1)."""

    files: tuple[str, ...]
    part: int
    parts: int
    by_source: bool


def later_copies(rows: pl.LazyFrame, by_source: bool) -> pl.DataFrame:
    """`_row` and drop reason of every record whose content (per source when `by_source`) came before."""
    group = ["source", HASH_COLUMN] if by_source else [HASH_COLUMN]
    ranked = (
        rows.select("_row", "id", *group)
        .sort("_row")
        .with_columns(
            pl.col("_row").first().over(group).alias("_first_row"),
            pl.col("id").first().over(group).alias("_first_id"),
        )
    )
    dropped = ranked.filter(pl.col("_row") != pl.col("_first_row")).select(
        "_row", pl.concat_str(pl.lit("exact_duplicate_of:"), pl.col("_first_id")).alias(DROP)
    )
    return dropped.collect()


def dropped_in_part(task: HashPart) -> pl.DataFrame:
    """Runs on a worker: `later_copies` among the records of one hash part (equal content, equal part)."""
    rows = pl.scan_parquet(list(task.files), glob=False)
    if task.parts > 1:
        rows = rows.filter(pl.col(HASH_COLUMN).hash(seed=0) % task.parts == task.part)
    return later_copies(rows, task.by_source)


@dataclass
class ExactDedup(Stage):
    """Drop exact duplicates, keeping the first record. Reads `kind`, `text`, `messages`; drops rows.

    Two records are duplicates when their kind, roles and texts are equal after the stage's own
    folding (`whitespace`: runs of white space count as one space; `casefold`: case is ignored). The
    record kept is the first in input order (sources in config order, files sorted by name, then line
    order), so the result does not depend on worker count. Others are dropped with reason
    `exact_duplicate_of:<id of the kept record>`. `scope = "source"` compares within each source only.
    Expands into a streaming hash step (128-bit BLAKE2b) and a barrier that groups the hashes.
    """

    name: ClassVar[str] = "exact_dedup"
    reads: ClassVar[tuple[str, ...]] = ("kind", "text", "messages")
    drops_rows: ClassVar[bool] = True

    scope: Literal["global", "source"] = param("global", "compare across all sources or within each")
    casefold: bool = param(False, "ignore letter case when comparing")
    whitespace: bool = param(True, "treat any run of white space as one space when comparing")

    def steps(self) -> list[Step]:
        return [_HashContent(self.casefold, self.whitespace), _KeepFirst(self.scope)]
