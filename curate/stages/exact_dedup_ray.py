"""`exact_dedup`'s barrier on a Ray cluster: a Ray Data shuffle groups the content hashes, and only
the dropped rows reach the driver.

1. *read* (a map over runs of the hash step's batch files): each record's `_row`, `id`, content hash
   (and `source` when the scope is per source), with a partition number taken from the hash alone:
   equal content (within a source, or across them) always shares it.
2. *group* (`groupby(partition).map_groups`, a sort-based shuffle): equal content lies in one
   partition, whose records get `later_copies` exactly as a local hash part does: every record but
   the first (lowest `_row`) of its content is dropped with `exact_duplicate_of:<first id>`.

The same rows and reasons as `exact_dedup._KeepFirst.decide`, whatever the partition count: the
partition only decides where a group is examined, never how.
A worker that dies is retried by Ray up to `MAX_RETRIES` times, then the build stops with a FatalError.
"""

from __future__ import annotations

from typing import Any, cast

import polars as pl
import pyarrow as pa

from curate.executors.ray_executor import (
    MAX_RETRIES,
    closing,
    curate_dataset,
    quiet_ray_data,
    reporting_file_errors,
    results_of,
    task_failures_as_fatal,
    with_retries,
)
from curate.stages.base import DROP
from curate.stages.exact_dedup import HASH_COLUMN, later_copies

_FILES_PER_PARTITION = 8  # batch files (of up to `batch_size` records) per hash partition


def partition_count(files: int, parallelism: int) -> int:
    """Hash partitions for `files` batch files: a few per CPU, and about one per 8 files."""
    return max(2 * parallelism, files // _FILES_PER_PARTITION + 1)


def read_hashes(batch: dict[str, Any], partitions: int, by_source: bool) -> pa.Table:
    """Step 1, per run of batch files: (`_row`, `id`, [`source`,] hash, `part`) of every record. The
    partition is the hash's first 8 bytes modulo `partitions` (BLAKE2b bytes are uniform; the same on
    every node, whatever its polars)."""
    columns = ["_row", "id", *(["source"] if by_source else []), HASH_COLUMN]
    rows = pl.concat(
        [pl.read_parquet(str(path), columns=columns, glob=False) for run in batch["files"] for path in run]
    )
    prefix = pl.col(HASH_COLUMN).bin.slice(0, 8).bin.reinterpret(dtype=pl.UInt64, endianness="little")
    return rows.with_columns((prefix % partitions).cast(pl.Int32).alias("part")).to_arrow()


def dropped_in_group(group: pa.Table, by_source: bool) -> pa.Table:
    """Step 2, one partition: `_row` and drop reason of each record whose content came earlier."""
    return later_copies(cast(pl.DataFrame, pl.from_arrow(group)).lazy(), by_source).to_arrow()


def ray_later_copies(files: list[str], by_source: bool, parallelism: int) -> pl.DataFrame:
    """`_row` and `DROP` reason of every later copy among the records of `files`, sorted by `_row`, on Ray.

    The map reads runs of consecutive files, one per partition at most: the sort-based shuffle makes
    (blocks x blocks) objects, so a block per batch file would not scale."""
    import ray

    from curate.minhash.ray_lsh import file_blocks

    empty = pl.DataFrame(schema={"_row": pl.Int64, DROP: pl.String})
    if not files:
        return empty
    partitions = partition_count(len(files), parallelism)
    runs = file_blocks(tuple(files), partitions)
    names = curate_dataset([{"files": list(run)} for run in runs], curate_errors=True)
    hashes = with_retries(
        names.map_batches,
        reporting_file_errors(read_hashes),
        batch_size=1,
        batch_format="numpy",
        fn_kwargs={"partitions": partitions, "by_source": by_source},
    )
    dropped = with_retries(
        hashes.groupby("part").map_groups, dropped_in_group, batch_format="pyarrow", fn_kwargs={"by_source": by_source}
    )
    found = [empty]
    with (
        quiet_ray_data(),
        closing(results_of(dropped, "pyarrow")) as batches,
        task_failures_as_fatal(ray, MAX_RETRIES),
    ):
        for batch in batches:
            found.append(cast(pl.DataFrame, pl.from_arrow(batch)).cast(dict(empty.schema)))
    return pl.concat(found, how="vertical").sort("_row")
