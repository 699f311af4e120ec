"""Reading shards back for `curate verify`: records and tokens per file, source and group, in bounded
memory (record shards in chunks of at most a few MB; other formats by `curate.formats.read_back`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
import polars as pl
import pyarrow.parquet as pq
import zstandard

from curate.expr import Expression
from curate.formats import read_back

_CHUNK = 1 << 22  # bytes read per step

#: A mixture's groups as verify needs them: (named groups in order with their definitions, the rest group).
GroupRule = tuple[list[tuple[str, dict[str, Any]]], str | None]


@dataclass
class Counts:
    """Records and tokens of shard files, in total, per source and per (group, source) cell."""

    records: int = 0
    tokens: int = 0
    by_source: dict[str, list[int]] = field(default_factory=dict)  # source -> [records, tokens]
    by_cell: dict[tuple[str | None, str], int] | None = None  # tokens; None when groups were not recomputed

    def add(self, other: Counts) -> None:
        self.records += other.records
        self.tokens += other.tokens
        for source, (n, tokens) in other.by_source.items():
            line = self.by_source.setdefault(source, [0, 0])
            line[0], line[1] = line[0] + n, line[1] + tokens
        if other.by_cell is not None:
            self.by_cell = self.by_cell if self.by_cell is not None else {}
            for key, tokens in other.by_cell.items():
                self.by_cell[key] = self.by_cell.get(key, 0) + tokens

    def add_frame(self, df: pl.DataFrame, group: pl.Expr | None = None) -> None:
        """Count a chunk of records (`source`, `n_tokens`; the group expression's columns if given)."""
        chunk = Counts(df.height, int(df["n_tokens"].sum() or 0))
        for source, n, tokens in df.group_by("source").agg(pl.len(), pl.col("n_tokens").sum()).iter_rows():
            chunk.by_source[source] = [n, int(tokens or 0)]
        if group is not None:
            cells = df.group_by(group.alias("group"), "source").agg(pl.col("n_tokens").sum())
            chunk.by_cell = {(g, s): int(t or 0) for g, s, t in cells.iter_rows()}
        self.add(chunk)


def group_expr(rule: GroupRule, schema: pl.Schema) -> pl.Expr:
    """Each record's group, as the build assigned it (groups do not overlap; the rest takes the others)."""
    named, rest = rule
    expr = pl.lit(rest, pl.String)
    for name, definition in reversed(named):
        if definition.get("sources"):
            member = pl.col("source").is_in(list(definition["sources"]))
        elif definition.get("where"):
            member = Expression.parse(definition["where"]).compile(schema).fill_null(False)
        else:
            member = pl.lit(False)
        expr = pl.when(member).then(pl.lit(name)).otherwise(expr)
    return expr


def read_counts(path: Path, fmt: str, groups: GroupRule | None = None) -> Counts:
    """Records and tokens of one shard (record formats: sum of `n_tokens`, per source; with `groups`,
    also per group cell), record shards read in bounded chunks; other formats by their own reader."""
    counts = Counts()
    if fmt == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
            frame = cast(pl.DataFrame, pl.from_arrow(batch))  # a record batch gives a frame
            counts.add_frame(frame, group_expr(groups, frame.schema) if groups else None)
        if groups and counts.by_cell is None:
            counts.by_cell = {}
    elif fmt in ("jsonl", "jsonl.zst"):
        for frame in _jsonl_chunks(path, compressed=fmt == "jsonl.zst"):
            counts.add_frame(frame)
    else:
        counts.records, counts.tokens = read_back(path, fmt)
    return counts


def _raw_chunks(path: Path, compressed: bool) -> Iterator[bytes]:
    """The file's (decompressed) bytes in chunks; a zstd stream that stops inside a frame is an error."""
    with open(path, "rb") as fh:
        if not compressed:
            while chunk := fh.read(_CHUNK):
                yield chunk
            return
        decoder = None  # None between frames (a file may hold several concatenated frames)
        while chunk := fh.read(_CHUNK):
            while chunk:
                decoder = decoder or zstandard.ZstdDecompressor().decompressobj()
                yield decoder.decompress(chunk)
                chunk = b""
                if decoder.eof:
                    chunk, decoder = decoder.unused_data, None
        if decoder is not None:
            raise zstandard.ZstdError("the zstd stream ends inside a frame")


def _jsonl_chunks(path: Path, compressed: bool) -> Iterator[pl.DataFrame]:
    """`source` and `n_tokens` of every line, as frames of up to a chunk's worth of lines."""
    rest, number = b"", 0
    for chunk in _raw_chunks(path, compressed):
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            frame, number = _parse_lines(data[:cut], number), number + data.count(b"\n", 0, cut)
            yield frame
    if rest:
        raise ValueError(f"line {number + 1}: no final newline (truncated?)")


def _parse_lines(data: bytes, before: int) -> pl.DataFrame:
    sources, tokens = [], []
    for i, line in enumerate(data.split(b"\n")[:-1], start=before + 1):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"line {i}: not valid JSON ({exc})") from exc
        if not isinstance(row, dict) or not isinstance(row.get("n_tokens"), int):
            raise ValueError(f"line {i}: not a record with an integer n_tokens")
        sources.append(row.get("source"))
        tokens.append(row["n_tokens"])
    return pl.DataFrame({"source": sources, "n_tokens": tokens}, schema={"source": pl.String, "n_tokens": pl.Int64})
