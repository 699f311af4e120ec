"""Approximate k-nearest-neighbour novelty on unit vectors, in bounded memory (nothing quadratic).

`novelty(v, k)` is 1 - mean cosine similarity of each record to its k nearest other records, clipped
to [0, 1]. Up to `exact_limit` records it is exact (blocked all-pairs products, every record a
candidate). Above it, an inverted
file (IVF) index: spherical k-means with `cells = round(sqrt(n))` centroids (at most 4,096), trained for
`_ITERATIONS` rounds on a seeded sample of 40 records per cell, assigns every record to its nearest
centroid; neighbours are then searched exactly, but only inside the record's own cell (one probe), and
in a cell larger than `max_candidates` only among a seeded sample of that many of its members. So a
record's true neighbours in another cell are missed (its novelty is over-estimated, most for records
near cell borders), and in a very large cell (a big template) the k nearest of a sample stand in for
the k nearest of all members (a dense template cluster keeps its low novelty). Cost:
n x min(cell size, max_candidates) x dim multiply-adds, in row blocks of `_BLOCK`.
"""

from __future__ import annotations

import numpy as np

_BLOCK = 1024
_ITERATIONS = 8
_SAMPLE_PER_CELL = 40
MAX_CELLS = 4096


def cell_count(n: int, exact_limit: int) -> int:
    """Number of IVF cells for n records (1 when the exact search is used)."""
    return 1 if n <= exact_limit else int(min(MAX_CELLS, max(2, round(np.sqrt(n)))))


def kmeans(vectors: np.ndarray, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Spherical k-means centroids (cells x dim, unit rows) trained on a seeded sample."""
    n = len(vectors)
    sample = vectors[np.sort(rng.choice(n, min(n, cells * _SAMPLE_PER_CELL), replace=False))]
    centroids = sample[rng.choice(len(sample), cells, replace=False)].copy()
    for _ in range(_ITERATIONS):
        labels = assign(sample, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, sample)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        moved = norms[:, 0] > 0  # an empty cell keeps its centroid
        centroids[moved] = sums[moved] / norms[moved]
    return centroids


def assign(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the most similar centroid per vector (blocked)."""
    out = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), 8 * _BLOCK):
        out[start : start + 8 * _BLOCK] = np.argmax(vectors[start : start + 8 * _BLOCK] @ centroids.T, axis=1)
    return out


def _mean_top_k(block: np.ndarray, ids: np.ndarray, vectors: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Mean similarity of each block row to its k most similar candidates other than itself."""
    sims = block @ vectors[candidates].T
    position = np.searchsorted(candidates, ids)
    inside = position < len(candidates)
    is_self = np.zeros(len(ids), dtype=bool)
    is_self[inside] = candidates[position[inside]] == ids[inside]
    sims[np.flatnonzero(is_self), position[is_self]] = -np.inf
    kk = min(k, len(candidates) - (1 if is_self.any() else 0))
    if kk <= 0:
        return np.full(len(ids), np.nan)
    top = np.partition(sims, sims.shape[1] - kk, axis=1)[:, -kk:]
    return top.mean(axis=1)  # a row's own -inf entry is never among its top kk


def novelty(
    vectors: np.ndarray, k: int, seed: int, exact_limit: int = 4096, max_candidates: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """(novelty per record in [0, 1], NaN for zero vectors or a record without neighbours; IVF cell per
    record). `vectors` are unit rows (zero rows allowed)."""
    n = len(vectors)
    scores = np.full(n, np.nan)
    rng = np.random.default_rng(seed)
    cells = cell_count(n, exact_limit)
    labels = np.zeros(n, dtype=np.int64) if cells == 1 else assign(vectors, kmeans(vectors, cells, rng))
    order = np.argsort(labels, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(labels, minlength=cells))]
    nonzero = vectors.any(axis=1)
    for cell in range(cells):
        members = order[bounds[cell] : bounds[cell + 1]]  # sorted: argsort is stable over 0..n-1
        members = members[nonzero[members]]
        if len(members) == 0:
            continue
        pool = members
        if cells > 1 and len(members) > max_candidates:
            pool = np.sort(rng.choice(members, max_candidates, replace=False))
        for start in range(0, len(members), _BLOCK):
            ids = members[start : start + _BLOCK]
            scores[ids] = 1.0 - _mean_top_k(vectors[ids], ids, vectors, pool, k)
    return np.clip(scores, 0.0, 1.0), labels
