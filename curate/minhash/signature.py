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

MAX32 = np.uint32(0xFFFFFFFF)
# shingles per vectorized step: 16k x num_perm x 4 bytes = 8 MiB stays in cache (2x faster than 64k)
_ROWS_PER_CHUNK = 1 << 14
_GRAM_MIX = np.uint64(0x100000001B3)  # multiplier combining the unit hashes of one n-gram


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (wrapping uint64 arithmetic)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def ngram_hashes(unit_hashes: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the n-grams of many records at once, from the 64-bit hashes of their units.

    Records are consecutive runs of `unit_hashes` with the given `lengths`. A record with at least n
    units has one n-gram per start position; a shorter (non-empty) record has one n-gram of all its
    units. Returns the n-gram hashes (in record and position order) and the n-gram count per record.
    """
    lengths = lengths.astype(np.int64)
    counts = np.where(lengths >= n, lengths - n + 1, (lengths > 0).astype(np.int64))
    record = np.repeat(np.arange(len(lengths)), counts)
    offsets = np.r_[0, np.cumsum(lengths)[:-1]]
    position = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    first = offsets[record] + position
    size = np.minimum(lengths[record], n)
    h = np.zeros(len(first), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            inside = k < size
            h = np.where(inside, h * _GRAM_MIX + unit_hashes[np.where(inside, first + k, 0)], h)
        grams = (fmix64(h) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return grams, counts


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
    out = np.full((num_perm, n_records), MAX32, dtype=np.uint32)  # permutation-major: contiguous reduceat
    mixed = fmix32(hashes.astype(np.uint32, copy=False))
    with np.errstate(over="ignore"):
        for start in range(0, len(mixed), _ROWS_PER_CHUNK):
            stop = start + _ROWS_PER_CHUNK
            values = a[:, None] * mixed[None, start:stop] + b[:, None]
            rows = owner[start:stop]
            bounds = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            mins = np.minimum.reduceat(values, bounds, axis=1)
            targets = rows[bounds]
            out[:, targets] = np.minimum(out[:, targets], mins)
    return np.ascontiguousarray(out.T)


def lsh_params(threshold: float, num_perm: int, verify: bool = True) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false positive + false negative probability, as datasketch's
    `MinHashLSH` chooses them. With `verify`, LSH false positives are removed by the signature check
    afterwards, so misses weigh more (0.8 vs 0.2); without it both weigh 0.5 as in datasketch's default.

    The two probabilities are integrals of 1 - (1 - s^r)^b, a polynomial of degree r·b <= num_perm, so
    Gauss-Legendre quadrature with more than num_perm / 2 nodes gives them exactly (datasketch integrates
    them adaptively with scipy, which takes about 0.3 s to import); the choice is datasketch's (tested)."""
    fp_weight, fn_weight = (0.2, 0.8) if verify else (0.5, 0.5)
    nodes, weights = np.polynomial.legendre.leggauss(max(32, num_perm // 2 + 2))

    def integral(low: float, high: float, bands: int, rows: np.ndarray, candidate: bool) -> np.ndarray:
        s = (high - low) / 2 * nodes[None, :] + (high + low) / 2
        missed = (1 - s ** rows[:, None]) ** bands  # probability that no band of a pair at similarity s collides
        return (high - low) / 2 * ((1 - missed if candidate else missed) * weights).sum(axis=1)

    best, choice = np.inf, (0, 0)
    for bands in range(1, num_perm + 1):  # one row of candidates at a time: memory stays small
        rows = np.arange(1, num_perm // bands + 1, dtype=np.float64)
        false_positive = integral(0.0, threshold, bands, rows, True)
        false_negative = integral(threshold, 1.0, bands, rows, False)
        error = fp_weight * false_positive + fn_weight * false_negative
        at = int(np.argmin(error))
        if error[at] < best:  # the first minimum, in datasketch's (b, r) order
            best, choice = float(error[at]), (bands, at + 1)
    return choice


def band_keys(sig: np.ndarray, bands: int, rows: int, first: int = 0) -> np.ndarray:
    """One 64-bit key per record and band (n_records x bands): a mix of the band's `rows` values.
    `first` > 0 gives the keys of bands first..first+bands-1 only (the same keys as in the full set)."""
    n = sig.shape[0]
    keys = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            h = np.full(n, np.uint64(0x9E3779B97F4A7C15) + np.uint64(first + band), dtype=np.uint64)
            for r in range(rows):
                h ^= sig[:, (first + band) * rows + r].astype(np.uint64)
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
