"""LSH band buckets on a Ray cluster: Ray Data shuffles group the buckets and the pairs, and only the
verified edges (and the number of pairs checked) reach the driver.

The same pairs as `curate.minhash.clusters.candidate_pairs` over all bands, computed as a dataflow:

0. *blocks*: the signature files are cut into runs of consecutive files (disjoint `_row` ranges); one
   Ray task per run reads its shingled records' `_row`s, signatures and scopes into the object store,
   where they stay, once, for steps 1 and 3 (the driver holds only the references). This is the only
   read of the signature files.
1. *keys* (a map over the blocks, read zero-copy): one row per (shingled record, band): a partition
   number hashed from (band, key), the band, its 64-bit key, the record's scope and `_row`.
2. *buckets* (`groupby(partition).map_groups`, a shuffle): every (band, key, scope) bucket lies wholly
   in one partition; its members, in `_row` order, are each paired with the bucket's first member and
   with their predecessor (chain and star, as in `candidate_pairs`). Each pair (a, b), a < b, is
   tagged with the blocks of a and b.
3. *verify* (a shuffle by that block pair): a pair found in several bands meets its copies here and is
   kept once; the signatures of a and b are read from their two blocks (zero-copy on the node) and
   the pair is an edge when their estimated Jaccard similarity (the share of equal signature values,
   as `estimated_jaccard`) reaches the threshold; without verification every unique pair is one.

Signatures are never shuffled: only band rows (26 bytes per record and band) and pairs move. The
partition numbers use a fixed mix, so the result does not depend on the cluster; the edges are
returned sorted. The pairs are materialized before the second shuffle starts, so the band rows are
gone from the object store by then (the signature blocks stay until the end).
A worker that dies is retried by Ray up to `MAX_RETRIES` times, then the build stops with a FatalError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import polars as pl

from curate.errors import FatalError
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
from curate.minhash.bands import COUNT, SIG
from curate.minhash.clusters import bucket_links
from curate.minhash.signature import band_keys

_MIX = np.uint64(0x9E3779B97F4A7C15)
_PAIRS_PER_CHUNK = 65_536  # pairs compared at once in the verification (two uint32 rows each)


@dataclass(frozen=True)
class LshPlan:
    """What the flow needs: the signature files (in `_row` order) and how bands, scopes and partitions are set."""

    files: tuple[str, ...]
    bands: int
    rows: int
    num_perm: int
    scopes: dict[str, int] | None  # comparison scope per source (None: one global scope)
    threshold: float | None  # None: pairs are not verified
    partitions: int


def _mix(values: np.ndarray, partitions: int) -> np.ndarray:
    """A partition number in 0..partitions-1 for each 64-bit value (splitmix64 finalizer, then modulo)."""
    with np.errstate(over="ignore"):
        h = values.astype(np.uint64) * _MIX
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    return (h % np.uint64(partitions)).astype(np.int64)


def load_block(files: tuple[str, ...], plan: LshPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 0, a Ray task: the shingled records of `files` as (`_row`s, signatures as n x num_perm
    uint32, scope codes), in `_row` order. The only read of the signature files."""
    frames = [
        pl.read_parquet(path, columns=["_row", "source", COUNT, SIG], glob=False).filter(pl.col(COUNT) > 0)
        for path in files
    ]
    df = pl.concat(frames).sort("_row")  # batch files hold rows in `_row` order; a sorted frame is not re-sorted
    if plan.scopes is None:
        scope = np.zeros(df.height, dtype=np.int32)
    else:
        scope = df["source"].replace_strict(plan.scopes, return_dtype=pl.Int32).to_numpy()
    sig = df[SIG].to_numpy().reshape(df.height, plan.num_perm)
    return df["_row"].to_numpy().astype(np.int64), sig, scope


def counted_block(files: tuple[str, ...], plan: LshPlan) -> tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`load_block` with its record count first: as two return values, the driver can wait for the
    loads (and see them fail) through the count without fetching the block."""
    block = load_block(files, plan)
    return len(block[0]), block


def band_rows(batch: dict[str, Any], plan: LshPlan, blocks: list[Any]) -> dict[str, np.ndarray]:
    """Step 1, per signature block (read zero-copy from the object store): (part, band, key, scope, row)
    of every shingled record and band."""
    import ray

    frames = [{c: np.empty(0, dtype=t) for c, t in _BAND_COLUMNS.items()}]
    for number in batch["block"]:
        row, sig, scope = ray.get(blocks[int(number)])
        keys = band_keys(sig, plan.bands, plan.rows).reshape(-1)
        band = np.tile(np.arange(plan.bands, dtype=np.int16), len(row))
        frames.append(
            {
                "part": _mix(keys ^ band.astype(np.uint64), plan.partitions).astype(np.int32),
                "band": band,
                "key": keys,
                "scope": np.repeat(scope, plan.bands),
                "row": np.repeat(row, plan.bands),
            }
        )
    return {c: np.concatenate([f[c] for f in frames]) for c in _BAND_COLUMNS}


# 26 bytes per record and band (the shuffle's volume): bands and scopes are few, partitions too.
_BAND_COLUMNS = {"part": np.int32, "band": np.int16, "key": np.uint64, "scope": np.int32, "row": np.int64}


def block_of(rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The block of each `_row`: the last block whose first `_row` is at most it."""
    return np.searchsorted(starts, rows, side="right") - 1


def bucket_pairs(group: dict[str, np.ndarray], starts: np.ndarray) -> dict[str, np.ndarray]:
    """Step 2, one partition of band rows: the chain and star pairs (a, b) of its buckets, each tagged
    with its block pair."""
    order = np.lexsort((group["row"], group["scope"], group["key"], group["band"]))
    band, key, scope, row = (group[c][order] for c in ("band", "key", "scope", "row"))
    same = (band[1:] == band[:-1]) & (key[1:] == key[:-1]) & (scope[1:] == scope[:-1])
    a, b = (side.astype(np.int64) for side in bucket_links(row, same))
    part = (block_of(a, starts) * len(starts) + block_of(b, starts)).astype(np.int32)
    return {"part": part, "a": a, "b": b}


def verify_pairs(group: dict[str, np.ndarray], plan: LshPlan, blocks: list[Any]) -> dict[str, np.ndarray]:
    """Step 3, the pairs of one block pair: unique, and those that reach the threshold (all of them
    without verification), plus a row (a = b = -1) with how many unique pairs there were."""
    codes = np.unique(np.stack([group["a"], group["b"]], axis=1), axis=0)
    a, b = codes[:, 0].astype(np.int64), codes[:, 1].astype(np.int64)
    if plan.threshold is not None and len(a):
        import ray

        left_block, right_block = divmod(int(group["part"][0]), len(blocks))
        left_rows, left, _ = ray.get(blocks[left_block])
        right_rows, right, _ = ray.get(blocks[right_block])
        at_left, at_right = np.searchsorted(left_rows, a), np.searchsorted(right_rows, b)
        passed = np.empty(len(a), dtype=bool)
        for start in range(0, len(a), _PAIRS_PER_CHUNK):
            chunk = slice(start, start + _PAIRS_PER_CHUNK)
            passed[chunk] = (left[at_left[chunk]] == right[at_right[chunk]]).mean(axis=1) >= plan.threshold
        a, b, checked = a[passed], b[passed], len(passed)
    else:
        checked = len(a)
    return {"a": np.r_[a, -1], "b": np.r_[b, -1], "checked": np.r_[np.zeros(len(a), dtype=np.int64), checked]}


def file_blocks(files: tuple[str, ...], count: int) -> list[tuple[str, ...]]:
    """The files in `count` runs of consecutive files at most, as even as possible (none empty)."""
    cuts = np.array_split(np.arange(len(files)), max(1, min(count, len(files))))
    return [tuple(files[i] for i in cut) for cut in cuts if len(cut)]


def _row_ranges(runs: list[tuple[str, ...]]) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """The runs that hold rows, and the first `_row` of each; FatalError when their `_row` ranges overlap."""
    ranges = [
        pl.scan_parquet(list(run), glob=False)
        .select(pl.col("_row").min().alias("lo"), pl.col("_row").max().alias("hi"))
        .collect()
        for run in runs
    ]
    kept = [
        (run, r["lo"].item(), r["hi"].item()) for run, r in zip(runs, ranges, strict=True) if r["lo"].item() is not None
    ]
    for prev, nxt in pairwise(kept):
        if prev[2] >= nxt[1]:
            raise FatalError(
                f"minhash_dedup: the `_row`s of {prev[0][-1]} and {nxt[0][0]} overlap: the files are not in "
                "`_row` order (the work dir changed?): rebuild"
            )
    return [run for run, _, _ in kept], np.array([lo for _, lo, _ in kept], dtype=np.int64)


def lsh_edges(plan: LshPlan) -> tuple[int, np.ndarray]:
    """(number of unique candidate pairs, verified edges as sorted (m x 2) `_row` pairs), on Ray."""
    import ray

    runs, starts = _row_ranges(file_blocks(plan.files, plan.partitions))
    if not runs:
        return 0, np.empty((0, 2), dtype=np.int64)
    loader = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, num_returns=2)(reporting_file_errors(counted_block))
    loads = [loader.remote(run, plan) for run in runs]
    blocks = [block for _, block in loads]
    # Loaded before the datasets start (while the loads hold every CPU, Ray Data warns that a dataset
    # "will hang"), and a load whose worker kept dying stops the build here, as a FatalError.
    with task_failures_as_fatal(ray, MAX_RETRIES):
        ray.get([count for count, _ in loads])

    numbers = curate_dataset([{"block": i} for i in range(len(blocks))])

    def grouped(data: Any, fn: Callable[..., dict[str, np.ndarray]], **fn_kwargs: Any) -> Any:
        return with_retries(data.groupby("part").map_groups, fn, batch_format="numpy", fn_kwargs=fn_kwargs)

    checked, edges = 0, [np.empty((0, 2), dtype=np.int64)]
    keys = with_retries(
        numbers.map_batches,
        band_rows,
        batch_size=None,
        batch_format="numpy",
        fn_kwargs={"plan": plan, "blocks": blocks},
    )
    with quiet_ray_data(), task_failures_as_fatal(ray, MAX_RETRIES):
        pairs = grouped(keys, bucket_pairs, starts=starts).materialize()
        verified = grouped(pairs, verify_pairs, plan=plan, blocks=blocks)
        with closing(results_of(verified, "numpy")) as batches:
            for batch in batches:
                checked += int(batch["checked"].sum())
                keep = batch["a"] >= 0
                edges.append(np.stack([batch["a"][keep], batch["b"][keep]], axis=1).astype(np.int64))
    found = np.concatenate(edges)
    return checked, found[np.lexsort((found[:, 1], found[:, 0]))]
