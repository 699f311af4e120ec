"""LSH band buckets as independent tasks: the part of the MinHash barrier that runs on the executor.

The bands are split into groups; one task per group reads the signatures of every record from the
pass's batch files (on the shared work dir), buckets its bands, verifies its candidate pairs and
returns only the pairs (`codes`, i·n + j over records in `_row` order) and whether each passed. The
union over groups is exactly the pair set of `candidate_pairs` over all bands, so the result does not
depend on how many groups there are; the driver then needs only the pairs, never the signatures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from curate.errors import FatalError
from curate.minhash.clusters import candidate_pairs
from curate.minhash.signature import band_keys, estimated_jaccard

SIG, COUNT = "_mh_sig", "_mh_count"


@dataclass(frozen=True)
class BandTask:
    """Bands `first`..`first + bands - 1` over the records of `files` (batch files of one pass)."""

    files: tuple[str, ...]
    first: int
    bands: int
    rows: int
    num_perm: int
    by_source: bool
    threshold: float | None  # None: pairs are not verified


def band_groups(bands: int, parallelism: int) -> list[tuple[int, int]]:
    """(first band, number of bands) of each task: `parallelism` groups at most, as even as possible."""
    return [(int(g[0]), len(g)) for g in np.array_split(np.arange(bands), max(1, min(bands, parallelism)))]


def scope_codes(source: pl.Series, by_source: bool) -> np.ndarray:
    """The comparison scope of each record: its source's rank, or 0 for all when comparing globally."""
    return source.rank("dense").cast(pl.Int64).to_numpy() if by_source else np.zeros(len(source), dtype=np.int64)


def band_pairs(task: BandTask) -> tuple[np.ndarray, np.ndarray]:
    """Runs on a worker: (sorted unique pair codes, passed verification) for the task's bands."""
    data = pl.scan_parquet(list(task.files), glob=False).select("_row", "source", COUNT).collect()
    sig = read_signatures(task.files, data.height, task.num_perm)
    if not data["_row"].is_sorted():  # batch files hold rows in `_row` order; sort only if they don't
        order = data["_row"].arg_sort().to_numpy()
        data, sig = data[order], sig[order]
    n = data.height
    keys = band_keys(sig, task.bands, task.rows, task.first)
    pairs = candidate_pairs(keys, scope_codes(data["source"], task.by_source), data[COUNT].to_numpy() > 0)
    del keys
    passed = np.ones(len(pairs), dtype=bool)
    if task.threshold is not None and len(pairs):
        passed = estimated_jaccard(sig, pairs[:, 0], pairs[:, 1]) >= task.threshold
    return pairs[:, 0] * np.int64(n) + pairs[:, 1], passed


def read_signatures(files: tuple[str, ...], records: int, num_perm: int) -> np.ndarray:
    """The signature column of the batch files as one (records x num_perm) uint32 array, filled file by
    file (peak memory: the array plus one file's column)."""
    out = np.empty((records, num_perm), dtype=np.uint32)
    at = 0
    for path in files:
        part = pl.read_parquet(path, columns=[SIG], glob=False)[SIG].to_numpy()
        out[at : at + len(part)] = part
        at += len(part)
    if at != records:
        raise FatalError(f"the work dir's batch files changed while minhash_dedup read them ({files[0]}, ...): rebuild")
    return out


def merge_pairs(results: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The union of the tasks' pairs as (m x 2) sorted unique pairs, and which of them passed."""
    if not results:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=bool)
    codes = np.concatenate([c for c, _ in results])
    passed = np.concatenate([p for _, p in results])
    codes, first = np.unique(codes, return_index=True)
    return np.stack([codes // np.int64(max(n, 1)), codes % np.int64(max(n, 1))], axis=1), passed[first]
