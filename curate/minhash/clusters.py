"""LSH banding as a columnar join, pair verification, and connected components."""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curate.minhash.signature import estimated_jaccard


def candidate_pairs(keys: np.ndarray, scope: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Pairs (i, j), i < j, of records sharing a band bucket (and scope), as an (m x 2) int64 array.

    Within a bucket of members m0 < m1 < ... every member is paired with the first and with its
    predecessor: 2·size pairs instead of size², which keeps huge template buckets cheap while every
    member still gets a link to verify.
    """
    bands = keys.shape[1]
    index = np.flatnonzero(eligible)
    if len(index) < 2:
        return np.empty((0, 2), dtype=np.int64)
    frame = pl.DataFrame(
        {
            "i": np.repeat(index, bands),
            "band": np.tile(np.arange(bands, dtype=np.int32), len(index)),
            "key": keys[index].reshape(-1),
            "scope": np.repeat(scope[index], bands),
        }
    )
    members = (
        frame.group_by("scope", "band", "key").agg(pl.col("i").sort()).filter(pl.col("i").list.len() > 1).select("i")
    )
    star = members.select(pl.col("i").list.first().alias("a"), pl.col("i").list.slice(1).alias("b")).explode("b")
    chain = members.select(
        pl.col("i").list.slice(0, pl.col("i").list.len() - 1).alias("a"), pl.col("i").list.slice(1).alias("b")
    ).explode("a", "b")
    pairs = pl.concat([star, chain]).unique().sort("a", "b")
    return pairs.select("a", "b").to_numpy().astype(np.int64, copy=False).reshape(-1, 2)


def verified(pairs: np.ndarray, sig: np.ndarray, threshold: float) -> np.ndarray:
    """The pairs whose signature-estimated Jaccard similarity reaches the threshold."""
    if not len(pairs):
        return pairs
    return pairs[estimated_jaccard(sig, pairs[:, 0], pairs[:, 1]) >= threshold]


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label (0..k-1) of each of n records given undirected edges."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    ones = np.ones(len(edges), dtype=np.int8)
    graph = coo_matrix((ones, (edges[:, 0], edges[:, 1])), shape=(n, n)) if len(edges) else coo_matrix((n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)
