"""LSH band buckets on a Ray cluster: Ray Data shuffles group the buckets, verify the pairs and leave
only the verified edges (and the candidate count) for the driver.

The same pairs as `curate.minhash.clusters.candidate_pairs` over all bands, computed as a dataflow:

1. *keys* (a map over the signature files): one row per (shingled record, band): the band, its 64-bit
   key, the record's comparison scope and `_row`, and a partition number hashed from (band, key).
2. *buckets* (`groupby(partition).map_groups`, a hash shuffle): every (band, key, scope) bucket lies
   wholly in one partition; its members, in `_row` order, are each paired with the bucket's first
   member and with their predecessor (chain and star, as in `candidate_pairs`). Each pair (a, b),
   a < b, gets a partition hashed from a.
3. *left* (a shuffle of those pairs with the signature rows, both by a's partition): a pair found in
   several bands meets its copies here and is kept once; it leaves with a's signature and a partition
   hashed from b. Without verification the unique pairs are the edges and the flow ends here.
4. *verify* (a shuffle of those with the signature rows by b's partition): the estimated Jaccard
   similarity of a and b (the share of equal signature values, as `estimated_jaccard`); the pairs
   that reach the threshold are the edges. Each partition also reports how many pairs it checked.

So the driver never holds the signatures or the candidate pairs: only edges and counts come back.
The partition numbers use a fixed mix (`_mix`), so the grouping and with it the result do not depend
on the cluster; the pairs are returned sorted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from curate.executors.ray_executor import quiet_ray_data
from curate.minhash.bands import COUNT, SIG
from curate.minhash.signature import band_keys

_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class LshPlan:
    """What the flow needs: the signature files and how the bands, scopes and partitions are set."""

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


def _read(path: str, columns: list[str]) -> pl.DataFrame:
    return pl.read_parquet(path, columns=columns)


def band_rows(batch: dict[str, Any], plan: LshPlan) -> dict[str, np.ndarray]:
    """Step 1, per signature file: (partition, band, key, scope, row) of every shingled record and band."""
    frames = []
    for path in batch["file"]:
        df = _read(str(path), ["_row", "source", COUNT, SIG]).filter(pl.col(COUNT) > 0)
        n = df.height
        sig = df[SIG].to_numpy().reshape(n, plan.num_perm) if n else np.empty((0, plan.num_perm), np.uint32)
        keys = band_keys(sig, plan.bands, plan.rows)
        if plan.scopes is None:
            scope = np.zeros(n, dtype=np.int64)
        else:
            scope = df["source"].replace_strict(plan.scopes, return_dtype=pl.Int64).to_numpy()
        band = np.tile(np.arange(plan.bands, dtype=np.int64), n)
        key = keys.reshape(-1)
        frames.append(
            {
                "part": _mix(key ^ band.astype(np.uint64), plan.partitions),
                "band": band,
                "key": key,
                "scope": np.repeat(scope, plan.bands),
                "row": np.repeat(df["_row"].to_numpy(), plan.bands),
            }
        )
    return {c: np.concatenate([f[c] for f in frames]) if frames else np.empty(0) for c in _BAND_COLUMNS}


_BAND_COLUMNS = ("part", "band", "key", "scope", "row")


def bucket_pairs(group: dict[str, np.ndarray], partitions: int) -> dict[str, np.ndarray]:
    """Step 2, one partition of band rows: the chain and star pairs (a, b) of its buckets."""
    order = np.lexsort((group["row"], group["scope"], group["key"], group["band"]))
    band, key, scope, row = (group[c][order] for c in ("band", "key", "scope", "row"))
    same = (band[1:] == band[:-1]) & (key[1:] == key[:-1]) & (scope[1:] == scope[:-1])
    position = np.arange(len(row))
    first = row[np.maximum.accumulate(np.where(np.r_[True, ~same], position, 0))] if len(row) else row
    a = np.concatenate([row[:-1][same], first[1:][same]])
    b = np.concatenate([row[1:][same], row[1:][same]])
    return _pairs(a, b, partitions)


def _pairs(a: np.ndarray, b: np.ndarray, partitions: int, sig: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Pair rows in the common layout of steps 3 and 4 (part, a, b, sig; sig empty on plain pairs)."""
    a, b = a.astype(np.int64), b.astype(np.int64)
    return {
        "part": _mix(a if sig is None else b, partitions),
        "a": a,
        "b": b,
        "sig": sig if sig is not None else np.full(len(a), b"", dtype=object),
    }


def signature_rows(batch: dict[str, Any], plan: LshPlan) -> dict[str, np.ndarray]:
    """Signature rows in the pair layout (part of `_row`, a = `_row`, b = -1, sig = its bytes)."""
    rows, sigs = [], []
    for path in batch["file"]:
        df = _read(str(path), ["_row", COUNT, SIG]).filter(pl.col(COUNT) > 0)
        rows.append(df["_row"].to_numpy())
        sigs.append(df[SIG].to_numpy().reshape(df.height, plan.num_perm))
    row = np.concatenate(rows).astype(np.int64)
    sig = np.concatenate(sigs) if sigs else np.empty((0, plan.num_perm), np.uint32)
    return {
        "part": _mix(row, plan.partitions),
        "a": row,
        "b": np.full(len(row), -1, dtype=np.int64),
        "sig": np.array([s.tobytes() for s in sig], dtype=object),
    }


def _split(group: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    is_sig = group["b"] < 0
    pairs = {c: v[~is_sig] for c, v in group.items()}
    sigs = {c: v[is_sig] for c, v in group.items()}
    return pairs, sigs


def left_pairs(group: dict[str, np.ndarray], plan: LshPlan) -> dict[str, np.ndarray]:
    """Step 3, one partition by a: its unique pairs, each with a's signature (when verifying)."""
    pairs, sigs = _split(group)
    codes = np.unique(np.stack([pairs["a"], pairs["b"]], axis=1), axis=0) if len(pairs["a"]) else np.empty((0, 2))
    a, b = codes[:, 0].astype(np.int64), codes[:, 1].astype(np.int64)
    if plan.threshold is None:
        return _edges(a, b, len(a))
    order = np.argsort(sigs["a"])
    at = order[np.searchsorted(sigs["a"], a, sorter=order)]
    return _pairs(a, b, plan.partitions, sigs["sig"][at])


def verify_pairs(group: dict[str, np.ndarray], plan: LshPlan) -> dict[str, np.ndarray]:
    """Step 4, one partition by b: which of its pairs reach the threshold (estimated Jaccard)."""
    pairs, sigs = _split(group)
    order = np.argsort(sigs["a"])
    at = order[np.searchsorted(sigs["a"], pairs["b"], sorter=order)]
    left = _matrix(pairs["sig"], plan.num_perm)
    right = _matrix(sigs["sig"][at], plan.num_perm)
    passed = (left == right).mean(axis=1) >= plan.threshold if len(left) else np.empty(0, dtype=bool)
    return _edges(pairs["a"][passed], pairs["b"][passed], len(passed))


def _edges(a: np.ndarray, b: np.ndarray, checked: int) -> dict[str, np.ndarray]:
    """What a partition sends to the driver: its edges, and one row (a = b = -1) with how many pairs it checked."""
    return {
        "a": np.r_[a.astype(np.int64), -1],
        "b": np.r_[b.astype(np.int64), -1],
        "checked": np.r_[np.zeros(len(a), dtype=np.int64), checked],
    }


def _matrix(blobs: np.ndarray, num_perm: int) -> np.ndarray:
    if not len(blobs):
        return np.empty((0, num_perm), dtype=np.uint32)
    return np.frombuffer(b"".join(blobs), dtype=np.uint32).reshape(len(blobs), num_perm)


def lsh_edges(plan: LshPlan) -> tuple[int, np.ndarray]:
    """(number of unique candidate pairs, verified edges as sorted (m x 2) `_row` pairs), on Ray."""
    import ray.data
    from ray.data.context import ShuffleStrategy

    blocks = max(1, min(len(plan.files), plan.partitions))  # a map task reads several files: fewer, longer tasks
    files = ray.data.from_items([{"file": f} for f in plan.files], override_num_blocks=blocks)
    options = files.context  # the datasets below inherit it
    options.enable_progress_bars = False
    options.op_resource_reservation_enabled = False  # see `curate.executors.ray_executor`
    # Sort-based shuffles run as plain tasks; the hash shuffle's aggregator actors took 10 s to start
    # on 2 CPUs (20k records: 10.9 s against 2.9 s) and stalled there once.
    options.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    kwargs = {"batch_size": None, "batch_format": "numpy", "num_cpus": 1, "fn_kwargs": {"plan": plan}}
    keys = files.map_batches(band_rows, **kwargs)
    pairs = keys.groupby("part", num_partitions=plan.partitions).map_groups(
        bucket_pairs, batch_format="numpy", fn_kwargs={"partitions": plan.partitions}
    )
    signatures = files.map_batches(signature_rows, **kwargs)
    grouped = pairs.union(signatures) if plan.threshold is not None else pairs
    left = grouped.groupby("part", num_partitions=plan.partitions).map_groups(
        left_pairs, batch_format="numpy", fn_kwargs={"plan": plan}
    )
    if plan.threshold is not None:
        left = (
            left.union(signatures)
            .groupby("part", num_partitions=plan.partitions)
            .map_groups(verify_pairs, batch_format="numpy", fn_kwargs={"plan": plan})
        )
    checked, edges = 0, []
    for batch in quiet_ray_data(left.iter_batches(batch_format="numpy", batch_size=None)):
        checked += int(batch["checked"].sum())
        keep = batch["a"] >= 0
        edges.append(np.stack([batch["a"][keep], batch["b"][keep]], axis=1))
    found = np.concatenate(edges) if edges else np.empty((0, 2), dtype=np.int64)
    found = found[np.lexsort((found[:, 1], found[:, 0]))] if len(found) else found.reshape(0, 2).astype(np.int64)
    return checked, found
