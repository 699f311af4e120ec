"""Template mode of `minhash_dedup` as partitioned tasks, so no process holds every n-gram.

The whole-data algorithm (`curate.minhash.skeleton.template_mask`) needs three global figures: each
n-gram's document frequency, the df threshold `k` and the passage run length. Here they come from
tasks over the pass's batch files, and only histograms and the (few) template n-grams reach the driver:

1. `count_keys`, per group of batch files: in how many records of each file each key occurs (a
   record lies whole in one file, so these add up to df), written to scratch cut into hash parts of
   the keys; then `gram_df`, one task per hash part: the df of its keys, summed over the files; it
   writes the keys with df >= 2 to scratch and returns the df histogram.
2. The driver merges the histograms into `k` and reads the template keys (df >= k) from scratch.
3. `template_runs`, one task per group of batch files: the histogram of template run lengths; it
   writes which occurrences are template keys to scratch (a bit each), so the lookup runs once.
4. The driver finds the passage run length; `template_signatures`, per group of batch files: each
   record's template mask, the unstructured rule and its MinHash signature over the kept n-grams,
   written to scratch beside its batch file. The LSH band tasks (`curate.minhash.bands`) read those.

Histograms hold exact integer counts, so the figures, and with them every decision, equal the
whole-data ones whatever the number of parts or groups.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from curate.errors import FatalError
from curate.minhash.bands import COUNT, SIG
from curate.minhash.signature import signatures
from curate.minhash.skeleton import (
    Histogram,
    df_threshold,
    gram_keys,
    histogram,
    is_in,
    merge_histograms,
    passage_cut,
    passage_rule,
    record_df,
    run_histogram,
)

if TYPE_CHECKING:
    from curate.stages.base import Tasks

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
    return occurrences_of(pl.read_parquet(path, columns=["_row", "source", GRAMS], glob=False), scopes)


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
    """Batch files `files`: their per-file key counts, cut into `parts` hash parts, go to `out` as
    `part-PPPP-<batch file name>.parquet`."""

    files: tuple[str, ...]
    parts: int
    scopes: dict[str, int] | None
    out: str


def count_keys(task: CountTask) -> None:
    """Runs on a worker: per batch file, the number of records each key occurs in (a record lies in one
    file, so per-file counts add up to df), written once per hash part (a shuffle through scratch)."""
    for path in task.files:
        occ = occurrences(path, task.scopes)
        counts = record_df(occ.owner, occ.keys).with_columns((pl.col("key") % task.parts).alias("_part"))
        for (part,), piece in counts.partition_by("_part", as_dict=True).items():
            piece.drop("_part").write_parquet(
                Path(task.out) / f"part-{part:04d}-{Path(path).name}", compression="lz4", statistics=False
            )


@dataclass(frozen=True)
class DfTask:
    """Hash part `part` of the keys: its per-file counts in `folder`; keys with df >= 2 go to `out`."""

    folder: str
    part: int
    out: str


def gram_df(task: DfTask) -> tuple[Histogram, int]:
    """Runs on a worker: (the df histogram of the part's keys, how many distinct keys it has)."""
    paths = sorted(Path(task.folder).glob(f"part-{task.part:04d}-*.parquet"))
    if not paths:
        return histogram(np.zeros(0, dtype=np.int64)), 0
    df = pl.scan_parquet(paths, glob=False).group_by("key").agg(pl.col("df").sum()).collect()
    df.filter(pl.col("df") >= 2).write_parquet(task.out, compression="lz4")
    return histogram(df["df"].to_numpy()), df.height


def template_keys(paths: list[str], k: int) -> np.ndarray:
    """The keys whose df reaches `k`, from the `gram_df` scratch files (sorted: one order however the
    scratch files were read)."""
    if not paths:
        return np.zeros(0, dtype=np.uint64)
    keys = pl.scan_parquet(paths, glob=False).filter(pl.col("df") >= k).select("key").collect()["key"].to_numpy()
    return np.sort(keys.astype(np.uint64))


@dataclass(frozen=True)
class RunTask:
    """A group of batch files, the template keys, and the folder for their membership bits."""

    files: tuple[str, ...]
    scopes: dict[str, int] | None
    keys: np.ndarray
    flags: str


def flags_path(folder: str, batch_file: str) -> Path:
    """The scratch file of a batch file's template-key membership bits (and how many occurrences)."""
    return Path(folder) / f"{Path(batch_file).stem}.npz"


def read_flags(folder: str, batch_file: str, occurrences_count: int) -> np.ndarray:
    """A batch file's membership bits from `template_runs`, checked to cover `occurrences_count`."""
    with np.load(flags_path(folder, batch_file)) as saved:
        bits, count = saved["bits"], int(saved["count"])
    if count != occurrences_count:
        raise FatalError(
            f"minhash_dedup: {batch_file} has {occurrences_count} n-gram occurrences, its template flags "
            f"{count}: the work dir changed during the build; run it again"
        )
    return np.unpackbits(bits, count=count).astype(bool)


def template_runs(task: RunTask) -> Histogram:
    """Runs on a worker: the histogram of template run lengths in the group's records; per batch file,
    which occurrences are template keys, as bits in `task.flags` (read by `template_signatures`)."""
    parts = []
    for path in task.files:
        occ = occurrences(path, task.scopes)
        in_template = is_in(occ.keys, task.keys)
        np.savez(flags_path(task.flags, path), bits=np.packbits(in_template), count=len(in_template))
        parts.append(run_histogram(occ.owner, in_template))
    return merge_histograms(parts)


@dataclass(frozen=True)
class SignatureTask:
    """A group of batch files, their membership bits (`template_runs`), the passage run length, and
    the folder of the signature files."""

    files: tuple[str, ...]
    scopes: dict[str, int] | None
    flags: str
    passage: int | None
    num_perm: int
    seed: int
    out: str


def kept_grams(occ: Occurrences, in_template: np.ndarray, passage: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(kept occurrences, unstructured records): template occurrences (template keys, within the
    passage rule), or all of a record's when it has none (an unstructured record is compared by its
    whole text)."""
    keep = passage_rule(occ.owner, in_template, passage)
    unstructured = np.bincount(occ.owner[keep], minlength=len(occ.rows)) == 0
    return keep | unstructured[occ.owner], unstructured


def template_signatures(task: SignatureTask) -> int:
    """Runs on a worker: per batch file, a signature file (`_row`, `source`, kept n-gram count, MinHash
    signature of the kept n-grams) in `task.out`; returns how many records with n-grams had no template
    text (unstructured)."""
    unstructured_count = 0
    for path in task.files:
        occ = occurrences(path, task.scopes)
        in_template = read_flags(task.flags, path, len(occ.keys))
        keep, unstructured = kept_grams(occ, in_template, task.passage)
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
    keep, _ = kept_grams(occ, is_in(occ.keys, keys), passage)
    starts = np.r_[0, np.cumsum(occ.lengths)]
    return {int(r): keep[starts[i] : starts[i + 1]] for i, r in enumerate(occ.rows)}


def file_groups(files: list[str], count: int) -> list[tuple[str, ...]]:
    """The batch files in at most `count` groups of about equal bytes (largest file first into the
    lightest group), so that one group of big files does not keep a worker busy alone."""
    sizes = [os.path.getsize(f) for f in files]
    groups: list[list[str]] = [[] for _ in range(max(1, min(count, len(files))))]
    loads = [0] * len(groups)
    for i in sorted(range(len(files)), key=lambda i: -sizes[i]):
        lightest = loads.index(min(loads))
        groups[lightest].append(files[i])
        loads[lightest] += sizes[i]
    return [tuple(sorted(group)) for group in groups if group]


def run_template_tasks(
    rows: pl.LazyFrame,
    names: list[str],
    scopes: dict[str, int] | None,
    scratch: Path,
    tasks: Tasks,
    num_perm: int,
    seed: int,
    stats: dict,
) -> tuple[list[str], Callable[[list[int]], dict]]:
    """Run steps 1-4 over the batch files `names`; return the signature files (one per batch file, in
    order) and a function giving the kept-n-gram masks of some records by `_row` (for the report).
    The skeleton figures go into `stats`."""
    counts_dir, df_dir, sig_dir = scratch / "counts", scratch / "df", scratch / "signatures"
    flags_dir = scratch / "flags"
    for folder in (counts_dir, df_dir, sig_dir, flags_dir):
        folder.mkdir()
    parts = max(8, 2 * tasks.parallelism)
    groups = file_groups(names, 4 * tasks.parallelism)  # more groups than workers: batch sizes vary
    tasks.run(count_keys, [CountTask(g, parts, scopes, str(counts_dir)) for g in groups])
    df_tasks = [DfTask(str(counts_dir), p, str(df_dir / f"part-{p:04d}.parquet")) for p in range(parts)]
    found = tasks.run(gram_df, df_tasks)
    distinct = sum(count for _, count in found)
    k = df_threshold(merge_histograms([hist for hist, _ in found])) if distinct else 0
    keys = template_keys(sorted(str(p) for p in df_dir.glob("*.parquet")), k) if distinct else np.zeros(0, np.uint64)
    runs = tasks.run(template_runs, [RunTask(g, scopes, keys, str(flags_dir)) for g in groups])
    passage = passage_cut(merge_histograms(runs)) if distinct else None
    sig_tasks = [SignatureTask(g, scopes, str(flags_dir), passage, num_perm, seed, str(sig_dir)) for g in groups]
    unstructured = sum(tasks.run(template_signatures, sig_tasks))
    stats.update(
        df_threshold=k,
        passage_run_length=passage,
        template_ngrams=len(keys),
        distinct_ngrams=distinct,
        unstructured=unstructured,
    )

    def masks(wanted: list[int]) -> dict:
        some = rows.filter(pl.col("_row").is_in(wanted)).select("_row", "source", GRAMS).collect()
        return record_masks(some, scopes, keys, passage)

    return [str(sig_dir / Path(name).name) for name in names], masks
