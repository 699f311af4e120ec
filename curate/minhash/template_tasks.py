"""Template mode of `minhash_dedup` as partitioned tasks, so no process holds every n-gram.

The whole-data algorithm (`curate.minhash.skeleton.template_mask`) needs three global figures: each
n-gram's document frequency, the df threshold `k` and the passage run length. Here they come from
tasks over the pass's batch files, and only histograms and the (few) template n-grams reach the driver:

1. `count_keys`, per group of batch files: in how many records of each file each key occurs (a
   record lies whole in one file, so these add up to df), written to scratch cut into hash parts of
   the keys; then `gram_df`, one task per hash part: the df of its keys, summed over the files; it
   writes the keys with df >= 2 to scratch and returns the df histogram.
2. The driver merges the histograms into `k` and reads the template keys (df >= k) from scratch.
3. `template_runs`, one task per group of batch files: the histogram of template run lengths.
4. The driver finds the passage run length; `template_signatures`, per group of batch files: each
   record's template mask, the unstructured rule and its MinHash signature over the kept n-grams,
   written to scratch beside its batch file. The LSH band tasks (`curate.minhash.bands`) read those.

Histograms hold exact integer counts, so the figures, and with them every decision, equal the
whole-data ones whatever the number of parts or groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from curate.minhash.bands import COUNT, SIG
from curate.minhash.signature import signatures
from curate.minhash.skeleton import (
    Histogram,
    gram_keys,
    histogram,
    is_in_sorted,
    merge_histograms,
    record_df,
    run_histogram,
    template_flags,
)

GRAMS = "_mh_grams"


@dataclass
class Occurrences:
    """The n-gram occurrences of one batch file, in record order."""

    rows: np.ndarray  # `_row` of each record
    sources: pl.Series  # source of each record
    lengths: np.ndarray  # n-grams per record
    owner: np.ndarray  # record position (in this file) of each occurrence
    grams: np.ndarray  # uint32 n-gram hashes
    keys: np.ndarray  # uint64 (scope, hash) keys


def occurrences(path: str, scopes: dict[str, int] | None) -> Occurrences:
    """One batch file's n-gram occurrences; `scopes` maps source to scope code (None: one scope)."""
    return occurrences_of(pl.read_parquet(path, columns=["_row", "source", GRAMS]), scopes)


def occurrences_of(data: pl.DataFrame, scopes: dict[str, int] | None) -> Occurrences:
    """The n-gram occurrences of records (`_row`, `source`, n-grams), sorted by `_row`."""
    if not data["_row"].is_sorted():
        data = data.sort("_row")
    lengths = data[GRAMS].list.len().fill_null(0).to_numpy().astype(np.int64)
    owner = np.repeat(np.arange(data.height), lengths)
    grams = data[GRAMS].explode().drop_nulls().to_numpy().astype(np.uint32)
    if scopes is None:
        scope = np.zeros(data.height, dtype=np.int64)
    else:
        scope = data["source"].replace_strict(scopes, return_dtype=pl.Int64).to_numpy()
    return Occurrences(data["_row"].to_numpy(), data["source"], lengths, owner, grams, gram_keys(scope[owner], grams))


@dataclass(frozen=True)
class CountTask:
    """Batch files `files` (numbered from `first`): their per-file key counts, cut into `parts` hash
    parts, go to `out` as `part-PPPP-file-NNNNNN.parquet`."""

    files: tuple[str, ...]
    first: int
    parts: int
    scopes: dict[str, int] | None
    out: str


def count_keys(task: CountTask) -> None:
    """Runs on a worker: per batch file, the number of records each key occurs in (a record lies in one
    file, so per-file counts add up to df), written once per hash part (a shuffle through scratch)."""
    for number, path in enumerate(task.files, start=task.first):
        occ = occurrences(path, task.scopes)
        counts = record_df(occ.owner, occ.keys).with_columns((pl.col("key") % task.parts).alias("_part"))
        for (part,), piece in counts.partition_by("_part", as_dict=True).items():
            piece.drop("_part").write_parquet(Path(task.out) / f"part-{part:04d}-file-{number:06d}.parquet")


@dataclass(frozen=True)
class DfTask:
    """Hash part `part` of the keys: its per-file counts in `folder`; keys with df >= 2 go to `out`."""

    folder: str
    part: int
    out: str


def gram_df(task: DfTask) -> tuple[Histogram, int]:
    """Runs on a worker: (the df histogram of the part's keys, how many distinct keys it has)."""
    paths = sorted(Path(task.folder).glob(f"part-{task.part:04d}-file-*.parquet"))
    if not paths:
        return histogram(np.zeros(0, dtype=np.int64)), 0
    df = pl.scan_parquet(paths).group_by("key").agg(pl.col("df").sum()).collect()
    df.filter(pl.col("df") >= 2).write_parquet(task.out, compression="lz4")
    return histogram(df["df"].to_numpy()), df.height


def template_keys(paths: list[str], k: int) -> np.ndarray:
    """The sorted keys whose df reaches `k`, from the `gram_df` scratch files."""
    if not paths:
        return np.zeros(0, dtype=np.uint64)
    keys = pl.scan_parquet(paths).filter(pl.col("df") >= k).select("key").collect()["key"].to_numpy()
    return np.sort(keys.astype(np.uint64))


@dataclass(frozen=True)
class FlagTask:
    """A group of batch files, the template keys (sorted) and the passage run length (when known)."""

    files: tuple[str, ...]
    scopes: dict[str, int] | None
    keys: np.ndarray
    passage: int | None = None
    num_perm: int = 128
    seed: int = 1
    out: str = ""  # folder of the signature files (`template_signatures`)


def template_runs(task: FlagTask) -> Histogram:
    """Runs on a worker: the histogram of template run lengths in the group's records."""
    parts = []
    for path in task.files:
        occ = occurrences(path, task.scopes)
        parts.append(run_histogram(occ.owner, is_in_sorted(occ.keys, task.keys)))
    return merge_histograms(parts)


def kept_grams(occ: Occurrences, template: np.ndarray, passage: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(kept occurrences, unstructured records): template occurrences, or all of a record's when it has
    none (an unstructured record is compared by its whole text)."""
    keep = template_flags(occ.owner, occ.keys, template, passage)
    unstructured = np.bincount(occ.owner[keep], minlength=len(occ.rows)) == 0
    return keep | unstructured[occ.owner], unstructured


def template_signatures(task: FlagTask) -> int:
    """Runs on a worker: per batch file, a signature file (`_row`, `source`, kept n-gram count, MinHash
    signature of the kept n-grams) in `task.out`; returns how many records with n-grams had no template
    text (unstructured)."""
    unstructured_count = 0
    for path in task.files:
        occ = occurrences(path, task.scopes)
        keep, unstructured = kept_grams(occ, task.keys, task.passage)
        unstructured_count += int((unstructured & (occ.lengths > 0)).sum())
        n = len(occ.rows)
        sig = signatures(occ.owner[keep], occ.grams[keep], n, task.num_perm, task.seed)
        frame = pl.DataFrame(
            {
                "_row": occ.rows,
                "source": occ.sources,
                COUNT: np.bincount(occ.owner[keep], minlength=n).astype(np.int64),
                SIG: pl.Series(SIG, sig, dtype=pl.Array(pl.UInt32, task.num_perm)),
            }
        )
        frame.write_parquet(Path(task.out) / Path(path).name, compression="lz4")
    return unstructured_count


def record_masks(rows: pl.DataFrame, scopes: dict[str, int] | None, keys: np.ndarray, passage: int | None) -> dict:
    """`_row` → kept-n-gram mask of a few records (`rows`: `_row`, `source`, n-grams), as
    `template_signatures` computes it (for the report's skeletons)."""
    occ = occurrences_of(rows, scopes)
    keep, _ = kept_grams(occ, keys, passage)
    starts = np.r_[0, np.cumsum(occ.lengths)]
    return {int(r): keep[starts[i] : starts[i + 1]] for i, r in enumerate(occ.rows)}


def file_groups(files: list[str], parallelism: int) -> list[tuple[str, ...]]:
    """The batch files cut into at most `parallelism` contiguous groups (in order)."""
    return [tuple(group) for group in np.array_split(np.array(files, dtype=object), max(1, parallelism)) if len(group)]
