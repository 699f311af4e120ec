"""MinHash signatures in numpy, identical to datasketch's `MinHash` (scheme `affine32`).

datasketch hashes each shingle to 32 bits, mixes it with the MurmurHash3 finalizer, applies `num_perm`
affine permutations h -> a·h + b mod 2^32 (a odd), and keeps the minimum per permutation. We do the
same for every shingle of a batch at once; a test checks the values equal datasketch's for the same
32-bit shingle hashes. Shingles are hashed with polars' string hash (fast, vectorized), so signatures
are reproducible for a given polars version.
"""

from __future__ import annotations

import functools

import numpy as np
import polars as pl
from datasketch.lsh import _optimal_param

MAX32 = np.uint32(0xFFFFFFFF)
_ROWS_PER_CHUNK = 1 << 16  # shingles per vectorized step: 64k x num_perm x 4 bytes


@functools.cache
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) parameters datasketch draws for `MinHash(num_perm, seed)` with scheme affine32."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (wrapping uint32 arithmetic), as datasketch applies it."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingle_hashes(shingles: pl.Series) -> np.ndarray:
    """32-bit hashes of shingle strings (the low half of polars' 64-bit string hash)."""
    return (shingles.hash(seed=0).to_numpy() & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def signatures(owner: np.ndarray, hashes: np.ndarray, n_records: int, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures (n_records x num_perm, uint32) from shingle hashes and their record index.

    `owner[i]` is the record (0..n_records-1) of shingle hash `hashes[i]`; `owner` must be sorted.
    Records without shingles get all-max signatures (callers keep them out of LSH).
    """
    a, b = permutations(num_perm, seed)
    out = np.full((n_records, num_perm), MAX32, dtype=np.uint32)
    mixed = fmix32(hashes.astype(np.uint32, copy=False))
    with np.errstate(over="ignore"):
        for start in range(0, len(mixed), _ROWS_PER_CHUNK):
            stop = start + _ROWS_PER_CHUNK
            values = mixed[start:stop, None] * a[None, :] + b[None, :]
            rows = owner[start:stop]
            bounds = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            mins = np.minimum.reduceat(values, bounds, axis=0)
            targets = rows[bounds]
            out[targets] = np.minimum(out[targets], mins)
    return out


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false positive + false negative probability (datasketch)."""
    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per record and band (n_records x bands): a mix of the band's `rows` values."""
    n = sig.shape[0]
    keys = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            h = np.full(n, np.uint64(0x9E3779B97F4A7C15) + np.uint64(band), dtype=np.uint64)
            for r in range(rows):
                h ^= sig[:, band * rows + r].astype(np.uint64)
                h *= np.uint64(0xBF58476D1CE4E5B9)
                h ^= h >> np.uint64(31)
            keys[:, band] = h
    return keys


def estimated_jaccard(sig: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Share of equal signature values for each pair (left[i], right[i]) of record indices."""
    out = np.empty(len(left), dtype=np.float64)
    for start in range(0, len(left), _ROWS_PER_CHUNK):
        stop = start + _ROWS_PER_CHUNK
        out[start:stop] = (sig[left[start:stop]] == sig[right[start:stop]]).mean(axis=1)
    return out
