"""Reading record shards (`jsonl`, `jsonl.zst`, `parquet`) back: records and the sum of `n_tokens`."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import zstandard


def read_back(path: Path) -> tuple[int, int]:
    """(records, tokens = sum of n_tokens) of one record shard, by its suffix."""
    if path.name.endswith(".parquet"):
        counts = pl.scan_parquet(path, glob=False).select(pl.len(), pl.col("n_tokens").sum()).collect()
        return int(counts.item(0, 0)), int(counts.item(0, 1) or 0)
    raw = path.read_bytes()
    if path.name.endswith(".zst"):
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    rows = [orjson.loads(line) for line in raw.splitlines() if line]
    return len(rows), sum(int(r["n_tokens"]) for r in rows)
