"""Assembling output shards from the kept-row batch files with bounded memory.

The output order (input order, or the mixture's seeded shuffle with repeats) is known from narrow
columns alone. Records are then moved in two streaming steps, an external shuffle: each batch file is
read once and its rows are scattered into per-shard part files; each shard then reads only its parts,
sorts them into output order and is written in every format. Peak memory is about one batch plus one
shard, whatever the input size.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from curate.config import OutputSection
from curate.executor import REMOVED_SCHEMA, apply_decisions
from curate.output import shard_numbers, write_shard
from curate.record import RECORD_COLUMNS, RECORD_SCHEMA, public_columns
from curate.stages.base import DROP, ERROR

SPLITS = ("train", "validation")


def output_plan(order: pl.DataFrame, narrow: pl.DataFrame, output: OutputSection) -> pl.DataFrame:
    """One row per output instance: `_row`, `_pos` (output position), `split`, `_shard` (numbered per
    split), `source`, `n_tokens`. `order` is in output order; without a `split` column all is train."""
    if "split" not in order.columns:
        order = order.with_columns(pl.lit("train").alias("split"))
    plan = order.with_row_index("_pos").join(
        narrow.select("_row", "source", "n_tokens"), on="_row", how="left", maintain_order="left"
    )
    parts = []
    for split in SPLITS:
        part = plan.filter(pl.col("split") == split)
        shards = shard_numbers(part["n_tokens"].to_numpy(), output.shard_max_records, output.shard_max_tokens)
        parts.append(part.with_columns(pl.Series("_shard", shards, pl.Int64)))
    return pl.concat(parts).with_columns(pl.col("_pos").cast(pl.Int64))


LEDGER_KEYS = ("_row", "_file", "_line")  # internal columns a removed row's ledger entry needs
NARROW_COLUMNS = ("_row", "_file", "_line", "id", "source", "n_tokens")


def read_kept(
    files: list[Path], decisions: Path | None, barrier_name: str, extra: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept rows, rows the trailing barrier removed): the narrow columns plus `extra` ones (those the
    mixture's groups read, `dup_cluster`) wherever the batch files or the barrier's decisions have them."""
    if not files:
        narrow = pl.DataFrame(schema={c: RECORD_SCHEMA[c] for c in NARROW_COLUMNS})
        return narrow.with_columns(pl.lit(None).alias(c) for c in extra), pl.DataFrame(schema=REMOVED_SCHEMA)
    present = pl.scan_parquet(files).collect_schema().names()
    wanted = [*NARROW_COLUMNS, *(c for c in extra if c in present and c not in NARROW_COLUMNS)]
    narrow = pl.scan_parquet(files).select(wanted).collect()
    gone = pl.DataFrame(schema=REMOVED_SCHEMA)
    if decisions is not None:
        narrow, gone = apply_decisions(narrow, decisions, barrier_name)
        narrow = narrow.drop(DROP, ERROR)
    return narrow, gone


def write_shards(
    files: list[Path],
    decisions: Path | None,
    barrier_name: str,
    plan: pl.DataFrame,
    ids: pl.DataFrame,
    folder: Path,
    output: OutputSection,
) -> list[dict[str, Any]]:
    """Write the planned instances as shards into `folder` (and a scratch folder beside it), each split's
    shards numbered from 0 (`train-00000.parquet`, `validation-00000.parquet`)."""
    scratch = folder.parent / ".scatter"
    by_row = plan.select("_row", "_pos", "split", "_shard").sort("_row")

    def scatter(index: int) -> None:
        """Batch file `index`: its planned instances, into one scratch file per (split, shard)."""
        path = files[index]
        wanted_columns = [c for c in pl.read_parquet_schema(path) if c in LEDGER_KEYS or not c.startswith("_")]
        batch = pl.read_parquet(path, columns=wanted_columns)
        if decisions is not None:
            batch, _ = apply_decisions(batch, decisions, barrier_name)
        if batch.is_empty():
            return
        rows = by_row["_row"]
        low, high = batch["_row"].min(), batch["_row"].max()
        start, stop = rows.search_sorted(low, side="left"), rows.search_sorted(high, side="right")
        wanted = by_row.slice(start, stop - start)
        if wanted.is_empty():
            return
        batch = batch.drop("id", DROP, ERROR, strict=False).join(ids, on="_row", how="left")
        extra = [c for c in public_columns(batch) if c not in RECORD_COLUMNS]
        placed = wanted.join(batch, on="_row", how="inner").select("_pos", "split", "_shard", *RECORD_COLUMNS, *extra)
        for (split, shard), part in placed.group_by("split", "_shard"):
            target = scratch / f"{split}-{shard:06d}"
            target.mkdir(parents=True, exist_ok=True)
            part.drop("split", "_shard").write_parquet(target / f"part-{index:06d}.parquet", compression="lz4")

    # Batches are independent and polars releases the GIL while it reads, joins and writes: scatter a few
    # at once (the scratch files are named by batch, and the gather below sorts by position, so the
    # output does not depend on the order they finish in).
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        list(pool.map(scatter, range(len(files))))
    shards: list[dict[str, Any]] = []
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for target in sorted(scratch.glob(f"{split}-*")) if scratch.exists() else []:
            number = int(target.name.rsplit("-", 1)[1])
            records = pl.scan_parquet(sorted(target.glob("*.parquet"))).sort("_pos").drop("_pos").collect()
            shards += write_shard(records, number, folder, output, split=split)
    shutil.rmtree(scratch, ignore_errors=True)
    return shards
