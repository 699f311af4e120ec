"""Writing a build's output: shards, ledger, quarantine files and the manifest. No timestamps, so
the same config and inputs give byte-identical files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import zstandard

from curate.config import OutputSection
from curate.cores import available_cores
from curate.formats import FORMATS, TOKENIZED, Shard, Tokenized, sha256_file

SHARD_SUFFIX = {"jsonl": ".jsonl", "jsonl.zst": ".jsonl.zst", "parquet": ".parquet"}
LEDGER_COLUMNS = ("id", "source", "file", "line", "status", "stage", "reason", "times_sampled")


def shard_numbers(n_tokens: np.ndarray, max_records: int, max_tokens: int | None) -> np.ndarray:
    """Shard number of each record, in order: a new shard starts when either limit would be passed."""
    if max_tokens is None:
        return np.arange(len(n_tokens)) // max_records
    numbers = np.empty(len(n_tokens), dtype=np.int64)
    shard = records = tokens = 0
    for i, t in enumerate(n_tokens.tolist()):
        if records and (records + 1 > max_records or tokens + t > max_tokens):
            shard, records, tokens = shard + 1, 0, 0
        numbers[i] = shard
        records += 1
        tokens += t
    return numbers


def jsonl_chunks(df: pl.DataFrame, rows: int = 4096) -> Iterator[bytes]:
    """JSON Lines of the frame, `rows` records at a time (so a shard is never all Python dicts at once)."""
    for start in range(0, df.height, rows):
        lines = []
        for row in df.slice(start, rows).iter_rows(named=True):
            if row.get("meta") is not None:
                row["meta"] = orjson.Fragment(row["meta"])
            lines.append(orjson.dumps(row))
        yield b"\n".join(lines) + b"\n"


def write_jsonl(df: pl.DataFrame, path: Path, zstd_level: int | None = None) -> None:
    """Write JSON Lines, zstd-compressed (one frame, with its content size) when `zstd_level` is given."""
    chunks = list(jsonl_chunks(df))  # compact bytes only; their total size goes into the frame header
    with open(path, "wb") as f:
        if zstd_level is None:
            f.writelines(chunks)
            return
        cctx = zstandard.ZstdCompressor(level=zstd_level, threads=0)
        with cctx.stream_writer(f, size=sum(len(c) for c in chunks), closefd=False) as writer:
            for chunk in chunks:
                writer.write(chunk)


def write_shard(
    records: pl.DataFrame,
    number: int,
    folder: Path,
    output: OutputSection,
    split: str = "train",
    rendered: bool = False,
    tokens: Tokenized | None = None,
) -> list[dict[str, Any]]:
    """Write one shard (records in output order) of `split` in every configured format: record shards
    as `<folder>/<split>-<number:05d>.<ext>`, the other formats beside `folder` (see curate.formats).
    Return its manifest rows; `curate.formats.finish_formats` completes the output after all shards.

    `rendered`: the records are already rendered (`apply_render`), and then `tokens`, their tokens,
    must be given when a tokenized format is configured (both are computed before the gather, see
    `curate.assemble`)."""
    if rendered and tokens is None and any(fmt in TOKENIZED for fmt in output.formats):
        raise ValueError("write_shard: rendered records need their tokens for the tokenized formats")
    # One chunk: polars cuts parquet row groups along chunks, and the chunks of a gathered shard depend
    # on how its parts were scattered (threads, workers), which must not change the file's bytes.
    records = records.rechunk()
    shard = Shard(
        records, split, number, output, output.tokenizer, _tokens=tokens, _rendered=records if rendered else None
    )
    # Computed once before the formats run side by side, each on a thread of its own: they share
    # nothing but these, and each writes its own files (polars, numpy's file writes and hashlib release
    # the GIL), so a shard's formats take about the time of the slowest instead of their sum.
    if any(fmt in TOKENIZED for fmt in output.formats):
        shard.tokenized()
    if any(fmt not in TOKENIZED for fmt in output.formats):
        shard.rendered()
    with ThreadPoolExecutor(max(1, min(len(output.formats), available_cores()))) as pool:
        rows = list(pool.map(lambda fmt: _write_format(shard, fmt, folder), output.formats))
    return [row for row in rows if row is not None]


def _write_format(shard: Shard, fmt: str, folder: Path) -> dict[str, Any] | None:
    """Write one format of a shard; its manifest row (None: the format is written at the end)."""
    if fmt in FORMATS:
        row = FORMATS[fmt].write(shard, folder.parent)
        return None if row is None else {"format": fmt, "split": shard.split, **row}
    shown = shard.rendered()
    path = folder / f"{shard.stem}{SHARD_SUFFIX[fmt]}"
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        shown.write_parquet(path, compression="zstd", statistics=True)
    elif fmt == "jsonl":
        write_jsonl(shown, path)
    else:
        write_jsonl(shown, path, shard.output.zstd_level)
    return {
        "path": f"{folder.name}/{path.name}",
        "format": fmt,
        "split": shard.split,
        "records": shard.records.height,
        "tokens": int(shard.records["n_tokens"].sum()),
        "sha256": sha256_file(path),
    }


def write_quarantine(quarantined: pl.DataFrame, folder: Path) -> dict[str, str]:
    """One `quarantine/<source>.jsonl` per source with quarantined records: file, line, reason, raw."""
    written = {}
    if quarantined.is_empty():
        return written
    folder.mkdir(parents=True, exist_ok=True)
    for (source,), part in quarantined.sort("_row").group_by("source", maintain_order=True):
        rows = part.select(
            pl.col("_file").alias("file"),
            pl.col("_line").alias("line"),
            pl.col("_stage").alias("stage"),
            pl.col("_error").alias("reason"),
            pl.col("_raw").alias("raw"),
        )
        path = folder / f"{source}.jsonl"
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows.iter_rows(named=True)))
        written[source] = f"{folder.name}/{path.name}"
    return written


def write_json(data: Any, path: Path) -> None:
    """Pretty, key-sorted JSON with a final newline (deterministic bytes)."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
