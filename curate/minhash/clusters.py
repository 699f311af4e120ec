"""LSH banding as a columnar join, pair verification, and connected components."""

from __future__ import annotations

import numpy as np

from curate.minhash.signature import estimated_jaccard


def candidate_pairs(keys: np.ndarray, scope: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Pairs (i, j), i < j, of records sharing a band bucket (and scope), as an (m x 2) int64 array,
    sorted and unique.

    Within a bucket of members m0 < m1 < ... every member is paired with the first and with its
    predecessor: 2·size pairs instead of size², which keeps huge template buckets cheap while every
    member still gets a link to verify. Buckets are found band by band with a stable sort on
    (scope, key), so members stay in record order.
    """
    index = np.flatnonzero(eligible)
    if len(index) < 2:
        return np.empty((0, 2), dtype=np.int64)
    n = np.int64(len(keys))
    scope_of = scope[index]
    codes = []
    for band in range(keys.shape[1]):
        order = np.lexsort((keys[index, band], scope_of))  # stable: ties stay in record order
        key, group = keys[index[order], band], scope_of[order]
        same = (key[1:] == key[:-1]) & (group[1:] == group[:-1])  # position p and p+1 share a bucket
        if not same.any():
            continue
        left, right = bucket_links(index[order], same)
        codes.append(left * n + right)
    if not codes:
        return np.empty((0, 2), dtype=np.int64)
    unique = np.unique(np.concatenate(codes))
    return np.stack([unique // n, unique % n], axis=1)


def bucket_links(members: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (left, right) that link bucket members: `members` sorted by bucket, in record order
    within one, and `same[p]` true where members p and p+1 share a bucket. Each member after a bucket's
    first is paired with its predecessor (chain) and with the first (star)."""
    if not len(members):
        return members, members
    first = members[np.maximum.accumulate(np.where(np.r_[True, ~same], np.arange(len(members)), 0))]
    later = members[1:][same]
    return np.concatenate([members[:-1][same], first[1:][same]]), np.concatenate([later, later])


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
    from scipy.sparse import coo_matrix  # imported here: scipy.sparse takes 0.15 s, workers never need it
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((ones, (edges[:, 0], edges[:, 1])), shape=(n, n)) if len(edges) else coo_matrix((n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)
