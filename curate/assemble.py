"""Assembling output shards from the kept-row batch files with bounded memory.

The output order (input order, or the mixture's seeded shuffle with repeats) is known from narrow
columns alone. Records are then moved in two streaming steps, an external shuffle: each batch file is
read once and its rows are scattered into per-shard part files; each shard then reads only its parts,
sorts them into output order and is written in every format. Peak memory is about one batch plus one
shard, whatever the input size.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from curate.config import OutputSection
from curate.cores import available_cores
from curate.errors import FatalError
from curate.executor import REMOVED_SCHEMA, apply_decisions, largest_first
from curate.formats import TOKENIZED
from curate.formats.common import TOKEN_COLUMNS, token_columns, tokenize, tokenized_from_columns
from curate.output import shard_numbers, write_shard
from curate.record import RECORD_COLUMNS, RECORD_SCHEMA, public_columns
from curate.render import apply_render, render_frame
from curate.stages.base import DROP, ERROR

if TYPE_CHECKING:
    from curate.stages.base import Tasks

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
    present = pl.scan_parquet(files, glob=False).collect_schema().names()
    wanted = [*NARROW_COLUMNS, *(c for c in extra if c in present and c not in NARROW_COLUMNS)]
    narrow = pl.scan_parquet(files, glob=False).select(wanted).collect()
    gone = pl.DataFrame(schema=REMOVED_SCHEMA)
    if decisions is not None:
        narrow, gone = apply_decisions(narrow, decisions, barrier_name)
        narrow = narrow.drop(DROP, ERROR)
    return narrow, gone


@dataclass(frozen=True)
class ScatterTask:
    """Batch file `index` of the last pass, the scratch files of the plan (by `_row`) and the ids, and
    the output options (how records are rendered and tokenized)."""

    path: str
    index: int
    decisions: str | None
    barrier_name: str
    plan: str
    ids: str
    scratch: str
    output: OutputSection
    token_threads: int = 1


def prepare_records(records: pl.DataFrame, output: OutputSection, token_threads: int = 1) -> pl.DataFrame:
    """Records as the shards hold them (rendered), plus their tokens (`TOKEN_COLUMNS`) when a tokenized
    format is configured. Done per batch file, so rendering and tokenizing, the bulk of writing the
    output, spread over every worker instead of one task per shard."""
    tokenized = any(fmt in TOKENIZED for fmt in output.formats)
    # rendered once for both (`messages` renders differently for tokens: the contents joined by newlines)
    frame = render_frame(records, output.render, output.mask) if tokenized and output.render != "messages" else None
    rendered = apply_render(records, output.render, frame)
    if not tokenized:
        return rendered
    tok = tokenize(records, output.render, output.mask, output.tokenizer, threads=token_threads, frame=frame)
    # mds stores each document's rendered text: the records' `text`, except with `render = "messages"`
    with_text = "mds" in output.formats and output.render == "messages"
    return rendered.with_columns(token_columns(tok, with_text=with_text))


def _rows_between(path: str, low: int, high: int) -> pl.DataFrame:
    """The rows of a `_row`-sorted scratch file with `_row` in [low, high] (row groups pruned by statistics)."""
    return pl.scan_parquet(path, glob=False).filter(pl.col("_row").is_between(low, high)).collect()


def scatter_batch(task: ScatterTask) -> None:
    """Runs on a worker (or a thread): the planned instances of one batch file, rendered and tokenized
    (`prepare_records`), into one scratch file per (split, shard)."""
    path = Path(task.path)
    schema = pl.scan_parquet(path, glob=False).collect_schema()
    wanted_columns = [c for c in schema if c in LEDGER_KEYS or not c.startswith("_")]
    batch = pl.read_parquet(path, columns=wanted_columns, glob=False)
    if task.decisions is not None:
        batch, _ = apply_decisions(batch, Path(task.decisions), task.barrier_name)
    if batch.is_empty():
        return
    low, high = batch["_row"].min(), batch["_row"].max()
    wanted = _rows_between(task.plan, low, high)
    if wanted.is_empty():
        return
    batch = batch.drop("id", DROP, ERROR, strict=False).join(_rows_between(task.ids, low, high), on="_row", how="left")
    extra = [c for c in public_columns(batch) if c not in RECORD_COLUMNS]
    placed = wanted.join(batch, on="_row", how="inner").select("_pos", "split", "_shard", *RECORD_COLUMNS, *extra)
    placed = prepare_records(placed, task.output, task.token_threads)
    for (split, shard), part in placed.group_by("split", "_shard"):
        target = Path(task.scratch) / f"{split}-{shard:06d}"
        target.mkdir(parents=True, exist_ok=True)
        part.drop("split", "_shard").write_parquet(target / f"part-{task.index:06d}.parquet", compression="lz4")


@dataclass(frozen=True)
class ShardTask:
    """One output shard: its scratch parts, number, split, the shards folder, the output options and
    how many records the plan puts in it."""

    parts: str
    number: int
    split: str
    folder: str
    output: OutputSection
    planned: int


def write_planned_shard(task: ShardTask) -> list[dict[str, Any]]:
    """Runs on a worker: gather a shard's parts (rendered records, with their tokens when a tokenized
    format is configured; see `prepare_records`) into output order and write it in every format. A
    shard whose parts do not hold every record planned for it stops the build (FatalError)."""
    parts = sorted(Path(task.parts).glob("*.parquet"))
    records = pl.scan_parquet(parts, glob=False).sort("_pos").drop("_pos").collect() if parts else pl.DataFrame()
    if records.height != task.planned:
        raise FatalError(
            f"output shard {task.split} {task.number}: its parts in {task.parts} hold {records.height} of the "
            f"{task.planned} records planned for it; a worker wrote its part where this one does not see it (with "
            "the ray executor, every node must mount the output's parent folder at the same path); run the build "
            "again"
        )
    tokens = tokenized_from_columns(records, task.output.tokenizer) if TOKEN_COLUMNS[0] in records.columns else None
    records = records.drop(TOKEN_COLUMNS, strict=False)
    return write_shard(records, task.number, Path(task.folder), task.output, task.split, rendered=True, tokens=tokens)


def write_shards(
    files: list[Path],
    decisions: Path | None,
    barrier_name: str,
    plan: pl.DataFrame,
    ids: pl.DataFrame,
    folder: Path,
    output: OutputSection,
    tasks: Tasks | None = None,
    token_threads: int = 1,
) -> list[dict[str, Any]]:
    """Write the planned instances as shards into `folder` (and a scratch folder beside it), each split's
    shards numbered from 0 (`train-00000.parquet`, `validation-00000.parquet`).

    The scatter (one task per batch file, which also renders and tokenizes) and the shard writes (one
    task per shard) run on `tasks` (the executor's workers or Ray nodes, which then must see the output
    folder), each tokenizing on `token_threads` threads; without, the scatter runs on a few threads
    here (polars and tiktoken release the GIL), one tokenizer thread each, and the shards one after
    the other. The output does not depend on either: scratch files are named by batch and each shard
    is sorted by position."""
    scratch = folder.parent / ".scatter"
    scratch.mkdir(parents=True, exist_ok=True)
    plan_path, ids_path = scratch / "_plan.parquet", scratch / "_ids.parquet"
    plan.select("_row", "_pos", "split", "_shard").sort("_row").write_parquet(plan_path, row_group_size=65_536)
    ids.sort("_row").write_parquet(ids_path, row_group_size=65_536)
    decided = str(decisions) if decisions is not None else None
    threads = token_threads if tasks is not None else 1
    where = (str(plan_path), str(ids_path), str(scratch))
    scatter = [
        ScatterTask(str(files[i]), i, decided, barrier_name, *where, output, threads) for i in largest_first(files)
    ]
    if tasks is not None:
        tasks.run(scatter_batch, scatter)
    else:
        with ThreadPoolExecutor(min(4, available_cores())) as pool:
            list(pool.map(scatter_batch, scatter))
    folder.mkdir(parents=True, exist_ok=True)
    planned = plan.group_by("split", "_shard").len().sort("_shard")
    shard_tasks = [
        ShardTask(str(scratch / f"{split}-{shard:06d}"), shard, split, str(folder), output, count)
        for split in SPLITS
        for _, shard, count in planned.filter(pl.col("split") == split).iter_rows()
    ]
    written = (
        tasks.run(write_planned_shard, shard_tasks) if tasks is not None else map(write_planned_shard, shard_tasks)
    )
    shards = [row for rows in written for row in rows]
    shutil.rmtree(scratch, ignore_errors=True)
    return shards
