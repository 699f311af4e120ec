"""Which n-grams are template text: thresholds taken from the data, not from constants.

A template's words recur in many records; the filler put into its slots does not. So an n-gram is
*template* when its document frequency (records containing it, within the scope) reaches `k`, and `k`
is where the data's own df distribution splits in two: Otsu's threshold on log2(df), each distinct
n-gram weighted by its occurrences (the split that best separates a low-df mass of filler from a
high-df mass of template text). One exception: a passage rendered under several templates reaches a
template-like df too, but comes as a long unbroken run of high-df n-grams, while template text comes in
short pieces between slots. When the run lengths of high-df n-grams are clearly bimodal (Otsu split,
upper class at least 4x longer on average), runs longer than the split are treated as passage. A record
left without template n-grams is *unstructured*: `minhash_dedup` compares it by all its n-grams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

_BIMODAL_RATIO = 4.0


def otsu(values: np.ndarray, weights: np.ndarray) -> float | None:
    """Otsu's threshold: the cut between sorted distinct values maximising between-class variance.

    Returns the smallest value of the upper class, or None with fewer than two distinct values.
    """
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order].astype(np.float64)
    distinct, first = np.unique(v, return_index=True)
    if len(distinct) < 2:
        return None
    w_sum = np.add.reduceat(w, first)
    vw_sum = np.add.reduceat(v * w, first)
    w0 = np.cumsum(w_sum)[:-1]
    m0 = np.cumsum(vw_sum)[:-1]
    total_w, total_m = w_sum.sum(), vw_sum.sum()
    w1 = total_w - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - (total_m - m0) / w1) ** 2
    return float(distinct[int(np.nanargmax(between)) + 1])


@dataclass
class SkeletonStats:
    """The thresholds found in the data (reported in the manifest's stage stats)."""

    df_threshold: int
    passage_run_length: int | None
    template_ngrams: int
    distinct_ngrams: int


Histogram = tuple[np.ndarray, np.ndarray]  # (distinct values, how many times each occurs)


def gram_keys(scope: np.ndarray, grams: np.ndarray) -> np.ndarray:
    """One uint64 key per n-gram occurrence: its scope in the high 32 bits, its 32-bit hash below."""
    return (scope.astype(np.uint64) << np.uint64(32)) | grams.astype(np.uint64)


def record_df(owner: np.ndarray, keys: np.ndarray) -> pl.DataFrame:
    """`key`, `df`: the number of distinct records (owners) each key occurs in, sorted by key.

    Each (key, owner) pair is packed into one uint64 when the bits allow (always for batch files),
    sorted and counted in numpy: single-threaded and about 3x faster than a polars group-by, so the
    work spreads over worker processes instead of competing for the same cores."""
    if not len(keys):
        return pl.DataFrame({"key": keys.astype(np.uint64), "df": np.zeros(0, dtype=np.int64)})
    owner_bits = max(1, int(owner.max()).bit_length())
    if int(keys.max()).bit_length() + owner_bits > 64:
        occ = pl.DataFrame({"owner": owner.astype(np.int64), "key": keys})
        grouped = occ.group_by("key").agg(pl.col("owner").n_unique().cast(pl.Int64).alias("df"))
        return grouped.sort("key")
    pairs = np.sort((keys.astype(np.uint64) << np.uint64(owner_bits)) | owner.astype(np.uint64))
    pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]  # distinct (key, owner)
    distinct_keys = pairs >> np.uint64(owner_bits)
    starts = np.flatnonzero(np.r_[True, distinct_keys[1:] != distinct_keys[:-1]])
    counts = np.diff(np.r_[starts, len(distinct_keys)])
    return pl.DataFrame({"key": distinct_keys[starts], "df": counts.astype(np.int64)})


def histogram(values: np.ndarray) -> Histogram:
    """The distinct values and their counts."""
    distinct, counts = np.unique(values, return_counts=True)
    return distinct.astype(np.int64), counts.astype(np.int64)


def merge_histograms(parts: list[Histogram]) -> Histogram:
    """One histogram from several (exact: integer counts are summed)."""
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    values = np.concatenate([v for v, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    distinct, inverse = np.unique(values, return_inverse=True)
    return distinct, np.bincount(inverse, weights=counts, minlength=len(distinct)).astype(np.int64)


def df_threshold(df_hist: Histogram) -> int:
    """`k`: Otsu's split of log2(df) over distinct n-grams, each weighted by its occurrences (df)."""
    values, counts = df_hist
    if not len(values):
        return 2
    cut = otsu(np.log2(values.astype(np.float64)), values * counts)
    return max(2, round(2**cut)) if cut is not None else 2


def run_lengths(owner: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """Length of the run of consecutive equal flags (within one record) each occurrence is in."""
    starts = np.r_[True, (owner[1:] != owner[:-1]) | (flagged[1:] != flagged[:-1])]
    run_id = np.cumsum(starts) - 1
    return np.bincount(run_id)[run_id]


def run_histogram(owner: np.ndarray, flagged: np.ndarray) -> Histogram:
    """Histogram of the lengths of the runs of flagged (template) occurrences."""
    if not len(owner):
        return histogram(np.zeros(0, dtype=np.int64))
    starts = np.r_[True, (owner[1:] != owner[:-1]) | (flagged[1:] != flagged[:-1])]
    return histogram(run_lengths(owner, flagged)[starts & flagged])


def passage_cut(runs: Histogram) -> int | None:
    """The longest template run, when run lengths are clearly bimodal (else None: no passage rule)."""
    values, counts = runs
    if not len(values):
        return None
    logs = np.log2(values.astype(np.float64))
    cut = otsu(logs, values * counts)
    if cut is None:
        return None
    low = logs < cut
    if not low.any():
        return None
    high_mean = (values[~low] * counts[~low]).sum() / counts[~low].sum()
    low_mean = (values[low] * counts[low]).sum() / counts[low].sum()
    if high_mean < _BIMODAL_RATIO * low_mean:
        return None
    return int(values[low].max())


def passage_rule(owner: np.ndarray, in_template: np.ndarray, passage: int | None) -> np.ndarray:
    """Which occurrences are template text: their key is a template key (`in_template`, which is not
    changed), and, with a passage rule, their run of template occurrences is no longer than `passage`."""
    if passage is None:
        return in_template.copy()
    return in_template & (run_lengths(owner, in_template) <= passage)


def is_in(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """values ∈ members, elementwise (a hash lookup: 25x faster here than a binary search)."""
    if not len(members):
        return np.zeros(len(values), dtype=bool)
    return pl.Series(values).is_in(pl.Series(members).implode()).to_numpy()


def template_mask(owner: np.ndarray, grams: np.ndarray, scope: np.ndarray) -> tuple[np.ndarray, SkeletonStats]:
    """For each (record, n-gram) occurrence in record order, whether it is template text. (The same
    steps, on the same histograms, run as partitioned tasks in `curate.minhash.template_tasks`.)"""
    if not len(grams):
        return np.zeros(0, dtype=bool), SkeletonStats(0, None, 0, 0)
    keys = gram_keys(scope[owner], grams)
    df = record_df(owner, keys)
    k = df_threshold(histogram(df["df"].to_numpy()))
    template_keys = np.sort(df.filter(pl.col("df") >= k)["key"].to_numpy())
    in_template = is_in(keys, template_keys)
    passage = passage_cut(run_histogram(owner, in_template))
    flagged = passage_rule(owner, in_template, passage)
    return flagged, SkeletonStats(k, passage, len(template_keys), df.height)
