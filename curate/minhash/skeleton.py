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


def template_mask(owner: np.ndarray, grams: np.ndarray, scope: np.ndarray) -> tuple[np.ndarray, SkeletonStats]:
    """For each (record, n-gram) occurrence in record order, whether it is template text."""
    if not len(grams):
        return np.zeros(0, dtype=bool), SkeletonStats(0, None, 0, 0)
    occ = pl.DataFrame({"owner": owner, "gram": grams, "scope": scope[owner]})
    df = occ.unique(["owner", "gram"]).group_by("scope", "gram").agg(pl.len().alias("df"))
    counts = df["df"].to_numpy()
    cut = otsu(np.log2(counts.astype(np.float64)), counts)
    k = max(2, round(2**cut)) if cut is not None else 2
    flagged = occ.join(df, on=["scope", "gram"], how="left", maintain_order="left")["df"].to_numpy() >= k
    passage = _passage_run_length(owner, flagged)
    if passage is not None:
        flagged &= _run_lengths(owner, flagged) <= passage
    stats = SkeletonStats(k, passage, int(df.filter(pl.col("df") >= k).height), df.height)
    return flagged, stats


def _run_lengths(owner: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """Length of the run of consecutive flagged occurrences (within one record) each occurrence is in."""
    starts = np.r_[True, (owner[1:] != owner[:-1]) | (flagged[1:] != flagged[:-1])]
    run_id = np.cumsum(starts) - 1
    return np.bincount(run_id)[run_id]


def _passage_run_length(owner: np.ndarray, flagged: np.ndarray) -> int | None:
    """The longest template run, when run lengths are clearly bimodal (else None: no passage rule)."""
    if not flagged.any():
        return None
    lengths = _run_lengths(owner, flagged)
    starts = np.r_[True, (owner[1:] != owner[:-1]) | (flagged[1:] != flagged[:-1])]
    runs = lengths[starts & flagged].astype(np.float64)
    cut = otsu(np.log2(runs), runs)
    if cut is None:
        return None
    low, high = runs[np.log2(runs) < cut], runs[np.log2(runs) >= cut]
    if not len(low) or high.mean() < _BIMODAL_RATIO * low.mean():
        return None
    return int(low.max())
