"""Reading input files into raw items: (line, payload) pairs, cheap enough to run in one process.

Payloads are parsed to canonical records later, in worker processes (see `curate.ingest.convert`):
- `bytes`: one JSON text (a JSONL line), parsed by the worker;
- `dict`: an already parsed object (JSON arrays, Parquet, CSV, HF datasets);
- `str`: a plain-text document (`.txt`);
- `Problem`: something the reader itself found wrong (a ragged CSV row, a truncated file).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq

from curate.ingest.files import TruncatedInput, is_hf_dataset_dir, iter_lines, read_all, split_suffix

TxtMode = Literal["file", "blocks"]
Payload = Any  # bytes | dict | str | Problem


@dataclass(frozen=True)
class Problem:
    """A record the reader could not produce: quarantined with this reason and the raw input."""

    reason: str
    raw: str = ""


def iter_file(path: Path, txt_mode: TxtMode = "blocks", split: str | None = None) -> Iterator[tuple[int, Payload]]:
    """Raw items of one input file (or HF dataset folder), in file order."""
    if is_hf_dataset_dir(path):
        yield from _iter_hf(path, split)
        return
    suffix = split_suffix(path)[0]
    readers = {".jsonl": _iter_jsonl, ".json": _iter_json, ".parquet": _iter_parquet, ".csv": _iter_csv}
    try:
        if suffix == ".txt":
            yield from _iter_txt(path, txt_mode)
        else:
            yield from readers[suffix](path)
    except TruncatedInput as exc:
        yield -1, Problem(f"truncated_file: {exc}")


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Payload]]:
    for number, line in enumerate(iter_lines(path), start=1):
        if line.strip():
            yield number, line


def _iter_json(path: Path) -> Iterator[tuple[int, Payload]]:
    content = read_all(path)
    if not content.strip():
        return
    try:
        data = json.loads(content)
    except UnicodeDecodeError as exc:
        yield 1, Problem(f"invalid_utf8: {exc}")
        return
    except json.JSONDecodeError as exc:
        # Many ".json" files are really JSON Lines; read them as such when every line is JSON.
        if content.lstrip().startswith(b"{") and b"\n" in content.strip():
            yield from _iter_jsonl(path)
            return
        raw = content[max(0, exc.pos - 80) : exc.pos + 80].decode("utf-8", "replace")
        yield exc.lineno, Problem(f"invalid_json: {exc.msg} at line {exc.lineno} column {exc.colno}", raw)
        return
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        yield (
            1,
            Problem(f"not_an_object: the file holds a JSON {type(data).__name__}, not an array of objects"),
        )
        return
    for number, item in enumerate(data, start=1):
        yield (
            number,
            item
            if isinstance(item, dict)
            else Problem(
                f"not_an_object: record is a JSON {_json_type(item)}, expected an object",
                json.dumps(item)[:2000],
            ),
        )


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _iter_parquet(path: Path) -> Iterator[tuple[int, Payload]]:
    source = path if split_suffix(path)[1] is None else io.BytesIO(read_all(path))
    number = 0
    for batch in pq.ParquetFile(source).iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _iter_csv(path: Path) -> Iterator[tuple[int, Payload]]:
    text = io.TextIOWrapper(io.BytesIO(read_all(path)), encoding="utf-8", errors="strict", newline="")
    try:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        for row in reader:
            number = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                yield (
                    number,
                    Problem(f"ragged_row: {len(row)} fields, the header has {len(header)}", ",".join(row)[:2000]),
                )
            else:
                yield number, dict(zip(header, row, strict=True))
    except UnicodeDecodeError as exc:
        yield -1, Problem(f"invalid_utf8: {exc} (the rest of the CSV file was not read)")
    except csv.Error as exc:
        yield -1, Problem(f"invalid_csv: {exc}")


def _iter_txt(path: Path, mode: TxtMode) -> Iterator[tuple[int, Payload]]:
    if mode == "file":
        content = read_all(path)
        if content.strip():
            yield 1, content
        return
    block: list[bytes] = []
    start = 0
    for number, line in enumerate(iter_lines(path), start=1):
        if line.strip():
            if not block:
                start = number
            block.append(line)
        elif block:
            yield start, b"\n".join(block)
            block = []
    if block:
        yield start, b"\n".join(block)


def _iter_hf(path: Path, split: str | None) -> Iterator[tuple[int, Payload]]:
    import datasets

    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        data = data[split or next(iter(data))]
    yield from iter_rows(data)


def iter_rows(data: Any) -> Iterator[tuple[int, Payload]]:
    """Raw items of an in-memory `datasets.Dataset` or polars DataFrame (record number as line)."""
    number = 0
    for batch in data.iter(batch_size=4096) if hasattr(data, "iter") else data.iter_slices(4096):
        rows = batch.to_dicts() if hasattr(batch, "to_dicts") else _columns_to_rows(batch)
        for row in rows:
            number += 1
            yield number, row


def _columns_to_rows(batch: dict[str, list]) -> list[dict]:
    names = list(batch)
    return [dict(zip(names, values, strict=True)) for values in zip(*batch.values(), strict=True)]
