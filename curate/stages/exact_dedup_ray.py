"""`exact_dedup`'s barrier on a Ray cluster: a Ray Data shuffle groups the content hashes, and only
the dropped rows reach the driver.

1. *read* (a map over the hash step's batch files): each file's `_row`, `id`, `source` and content
   hash, with a partition number taken from the hash (per source when `by_source`, the source is in
   the key as well).
2. *group* (`groupby(partition).map_groups`, a sort-based shuffle): equal content lies in one
   partition, whose records get `later_copies` exactly as a local hash part does: every record but
   the first (lowest `_row`) of its content is dropped with `exact_duplicate_of:<first id>`.

The same rows and reasons as `exact_dedup._KeepFirst.decide`, whatever the partition count: the
partition only decides where a group is examined, never how.
A worker that dies is retried by Ray up to `MAX_RETRIES` times, then the build stops with a FatalError.
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import polars as pl
import pyarrow as pa

from curate.executors.ray_executor import quiet_ray_data, strict_dataset, worker_deaths_as_fatal
from curate.stages.base import DROP
from curate.stages.exact_dedup import HASH_COLUMN, later_copies

MAX_RETRIES = 3
COLUMNS = ("_row", "id", "source")


def read_hashes(batch: dict[str, Any], partitions: int, by_source: bool) -> pa.Table:
    """Step 1, per batch file: (`_row`, `id`, `source`, hash, `part`) of every record."""
    rows = pl.concat([pl.read_parquet(str(path), columns=[*COLUMNS, HASH_COLUMN]) for path in batch["file"]])
    key = pl.struct("source", HASH_COLUMN) if by_source else pl.col(HASH_COLUMN)
    return rows.with_columns((key.hash(seed=0) % partitions).cast(pl.Int32).alias("part")).to_arrow()


def dropped_in_group(group: pa.Table, by_source: bool) -> pa.Table:
    """Step 2, one partition: `_row` and drop reason of each record whose content came earlier."""
    return later_copies(cast(pl.DataFrame, pl.from_arrow(group)).lazy(), by_source).to_arrow()


def ray_later_copies(files: list[str], by_source: bool, partitions: int) -> pl.DataFrame:
    """`_row` and `DROP` reason of every later copy among the records of `files`, sorted by `_row`, on Ray."""
    import ray
    import ray.data
    from ray.data.context import ShuffleStrategy

    empty = pl.DataFrame(schema={"_row": pl.Int64, DROP: pl.String})
    if not files:
        return empty
    names = ray.data.from_items([{"file": f} for f in files], override_num_blocks=len(files))
    strict_dataset(names)
    names.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED  # plain tasks (see ray_lsh)
    remote = {"num_cpus": 1, "max_retries": MAX_RETRIES}
    found = [empty]
    with quiet_ray_data(), worker_deaths_as_fatal(ray, MAX_RETRIES), warnings.catch_warnings():
        # Ray Data names max_retries a deprecated remote argument; it has no other
        warnings.simplefilter("ignore", DeprecationWarning)
        hashes = names.map_batches(
            read_hashes,
            batch_size=1,
            batch_format="numpy",
            fn_kwargs={"partitions": partitions, "by_source": by_source},
            **remote,
        )
        dropped = hashes.groupby("part").map_groups(
            dropped_in_group,
            batch_format="pyarrow",
            fn_kwargs={"by_source": by_source},
            **remote,
        )
        for batch in dropped.iter_batches(batch_format="pyarrow", batch_size=None):
            found.append(cast(pl.DataFrame, pl.from_arrow(batch)).cast(dict(empty.schema)))
    return pl.concat(found, how="vertical").sort("_row")
