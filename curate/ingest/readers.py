"""Reading input files into raw items: (line, payload) pairs, cheap enough to run in one process.

Payloads are parsed to canonical records later, in worker processes (see `curate.ingest.convert`):
- `bytes`: one JSON text (a JSONL line), parsed by the worker;
- `dict`: an already parsed object (JSON arrays, Parquet, CSV, HF datasets);
- `str`: a plain-text document (`.txt`);
- `Problem`: something the reader itself found wrong (a ragged CSV row, a truncated file).

Every reader streams its file, whatever its size (JSON arrays: `curate.ingest.json_stream`); a record
is held whole (a JSON Lines line, a text block, a file read with `txt_mode = "file"`); a JSON value
or CSV field is capped at `files.MAX_VALUE_CHARS`, a JSON Lines line at `files.MAX_LINE_BYTES` (a
longer one is quarantined as `line_too_long` without being held).
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import FatalError
from curate.ingest import files
from curate.ingest.files import (
    InputFile,
    OverlongLine,
    TruncatedInput,
    input_name,
    is_hf_dataset_dir,
    iter_chunks,
    iter_lines,
    open_binary,
    open_stream,
    read_all,
    split_suffix,
)
from curate.ingest.json_stream import iter_json

TxtMode = Literal["file", "blocks"]
Payload = Any  # bytes | dict | str | Problem


@dataclass(frozen=True)
class Problem:
    """A record the reader could not produce: quarantined with this reason and the raw input."""

    reason: str
    raw: str = ""


def iter_file(path: InputFile, txt_mode: TxtMode = "blocks", split: str | None = None) -> Iterator[tuple[int, Payload]]:
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


def _iter_jsonl(path: InputFile) -> Iterator[tuple[int, Payload]]:
    for number, line in enumerate(iter_lines(path, files.MAX_LINE_BYTES), start=1):
        if isinstance(line, OverlongLine):
            yield number, overlong_problem(line)
        elif line.strip():
            yield number, line


def overlong_problem(line: OverlongLine) -> Problem:
    """The quarantine entry of a JSON Lines line too long to hold (`files.MAX_LINE_BYTES`)."""
    reason = (
        f"line_too_long: a line of {line.length:,} bytes, over the {files.MAX_LINE_BYTES:,} a JSON Lines "
        "record may have (a JSON array? name the file .json); the file is read on from the next line"
    )
    return Problem(reason, line.decode("utf-8", "backslashreplace"))


def _iter_json(path: InputFile) -> Iterator[tuple[int, Payload]]:
    return iter_json(path, Problem, _iter_jsonl)  # item by item, in bounded memory


def parquet_damaged(path: InputFile, exc: BaseException) -> FatalError:
    """The error for a Parquet file whose footer reads but whose data does not decode (Arrow reports
    such damage as an OSError, like a failing read, so it is not quarantined as a record)."""
    return FatalError(
        f"cannot decode Parquet input {input_name(path)}: {str(exc).strip()}; the file is damaged (or was not readable)"
    )


TMP_RESERVE = 1 << 30  # bytes a decompressed `.parquet.gz/.zst` leaves free in its temporary folder
# (or a tenth of that filesystem, if smaller: a small tmpfs still takes files that fit)
_RECHECK = 64 << 20  # bytes written between two looks at the free space (others may fill the disk too)


def free_and_reserve(folder: str) -> tuple[int, int]:
    """The bytes free to this user on `folder`'s filesystem, and the bytes to leave free there."""
    usage = shutil.disk_usage(folder)
    return usage.free, min(TMP_RESERVE, usage.total // 10)


def _iter_parquet(path: InputFile) -> Iterator[tuple[int, Payload]]:
    if split_suffix(path)[1] is not None:  # compressed: Parquet needs random access, so decompress to disk
        with tempfile.TemporaryFile(prefix="curate-", suffix=".parquet") as plain:
            _decompress_into(path, plain)
            yield from _parquet_rows(plain, path)
        return
    with open_binary(path) as raw:  # local or remote, read by row group through a seekable file
        yield from _parquet_rows(raw, path)


def _decompress_into(path: InputFile, plain: IO[bytes]) -> None:
    """Decompress `path` into the temporary file `plain`, stopping before the temporary folder would have
    less than `TMP_RESERVE` bytes (or a tenth of its filesystem) free: a bomb, or a file too big for
    `TMPDIR`, stops the build with an error naming it, instead of filling a disk other processes share."""
    folder, written, checked = tempfile.gettempdir(), 0, 0
    free, reserve = free_and_reserve(folder)
    allowed = free - reserve
    for chunk in iter_chunks(path):
        written += len(chunk)
        if written > allowed:
            raise FatalError(
                f"cannot read {input_name(path)}: it decompresses to more than the {max(allowed, 0):,} bytes "
                f"that {folder} (TMPDIR) can take while keeping {reserve:,} free (a compressed Parquet "
                "file is decompressed to a temporary file, since Parquet needs random access). Set TMPDIR to "
                "a folder on a larger disk, or store the file as plain Parquet: its column chunks are "
                "compressed already"
            )
        plain.write(chunk)
        if written - checked >= _RECHECK:
            checked = written
            free, reserve = free_and_reserve(folder)
            allowed = written + free - reserve


def _parquet_rows(source: IO[bytes], path: InputFile) -> Iterator[tuple[int, Payload]]:
    if source.seek(0, io.SEEK_END) == 0:  # an empty file holds no records
        return
    source.seek(0)
    try:
        reader = pq.ParquetFile(source)
    except pa.ArrowInvalid as exc:  # not Parquet at all
        yield 1, Problem(f"invalid_parquet: {exc}; file not read")
        return
    except OSError as exc:  # a Parquet footer that does not decode (Arrow reports it as an I/O error)
        raise parquet_damaged(path, exc) from exc
    number = 0
    batches = reader.iter_batches(batch_size=4096)
    while True:
        try:
            batch = next(batches, None)
        except (OSError, pa.ArrowException) as exc:
            raise parquet_damaged(path, exc) from exc
        if batch is None:
            return
        for row in parquet_rows(batch):
            number += 1
            yield number, row


def parquet_rows(batch: pa.RecordBatch | pa.Table) -> list[Payload]:
    """The rows of Parquet data as dicts; a row holding a string that is not valid UTF-8 (which Parquet
    files can carry) becomes a Problem (`invalid_utf8`), so that it is quarantined, not the whole file."""
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        pass
    rows: list[Payload] = []
    for at in range(batch.num_rows):
        row = batch.slice(at, 1)
        try:
            rows.append(row.to_pylist()[0])
        except UnicodeDecodeError as exc:
            raw = {name: _value_or_bytes(column) for name, column in zip(row.column_names, row.columns, strict=True)}
            reason = f"invalid_utf8: a string of the row is not valid UTF-8 (byte {exc.start}: {exc.reason})"
            rows.append(Problem(reason, repr(raw)[:2000]))
    return rows


def _value_or_bytes(column: pa.Array | pa.ChunkedArray) -> Any:
    """A one-row column's value; its bytes when it is a string that does not decode."""
    try:
        return column.to_pylist()[0]
    except UnicodeDecodeError:
        try:
            return column.cast(pa.binary()).to_pylist()[0]
        except pa.ArrowException:  # a nested type holding the bad string
            return "<not valid UTF-8>"


_BAD_BYTE = re.compile("[\udc80-\udcff]")


def _iter_csv(path: InputFile) -> Iterator[tuple[int, Payload]]:
    # Undecodable bytes become lone surrogates, so one bad row is quarantined instead of the whole file.
    # Streamed: a row at a time, whatever the file's size.
    with io.TextIOWrapper(open_stream(path), encoding="utf-8", errors="surrogateescape", newline="") as text:
        yield from _csv_rows(text)


class _RowLines:
    """A text's lines, keeping those of the row being read (the csv module reads a row's lines, no more)."""

    def __init__(self, text: IO[str]):
        self.text, self.row = text, []

    def __iter__(self) -> _RowLines:
        return self

    def __next__(self) -> str:
        line = next(self.text)
        self.row.append(line)
        return line


def _csv_rows(text: IO[str]) -> Iterator[tuple[int, Payload]]:
    # Documents can be long (the default limit is 128 KiB), but not endless: an unclosed quote would
    # otherwise pull the rest of a big file into one field. (The limit is the csv module's, process-wide.)
    csv.field_size_limit(files.MAX_VALUE_CHARS)
    lines = _RowLines(text)
    reader = csv.reader(lines)
    start = 1  # the line where the row being read began
    held: tuple[int, Payload] | None = None  # the last row, given out once the next one is read
    try:
        header = next(reader, None)
        if header is None:
            return
        if ends_in_quotes("".join(lines.row)):
            reason = (
                "invalid_csv: a quote opened in the header is never closed (it runs to the file's end); file not read"
            )
            yield 1, Problem(reason, "".join(lines.row)[:2000])
            return
        start = reader.line_num + 1
        while True:
            lines.row = []
            row = next(reader, None)
            if row is None:
                break
            number, start = start, reader.line_num + 1  # a quoted field may span lines: report the first
            read = lines.row
            if held is not None:
                yield held
                held = None
            if not row:
                continue
            raw = ",".join(row)
            if _BAD_BYTE.search(raw):
                bad = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                held = number, Problem("invalid_utf8: the row holds bytes that are not valid UTF-8", bad[:2000])
            elif _BAD_BYTE.search(",".join(header)):
                held = number, Problem("invalid_utf8: the CSV header holds bytes that are not valid UTF-8", raw[:2000])
            elif len(row) != len(header):
                held = number, Problem(f"ragged_row: {len(row)} fields, the header has {len(header)}", raw[:2000])
            else:
                held = number, dict(zip(header, row, strict=True))
        if held is not None:
            yield _unless_unclosed(held, "".join(read))
    except TruncatedInput:  # a compressed file cut short: the row before the cut is whole
        if held is not None:
            yield held
        raise
    except csv.Error as exc:
        if held is not None:
            yield held
        hint = " (an unclosed quote?)" if "field limit" in str(exc) else ""
        yield start, Problem(f"invalid_csv: {exc}{hint}; the rest of the file was not read")


def _unless_unclosed(last: tuple[int, Payload], text: str) -> tuple[int, Payload]:
    """The file's last row, or a Problem when a quote in it is never closed: the lenient csv reader then
    ends the field at the end of the file, so the row would hold every line after the quote."""
    if not ends_in_quotes(text):
        return last
    reason = "invalid_csv: a quote opened in this row is never closed (its field would run to the file's end)"
    return last[0], Problem(reason, text[:2000])


_CSV_MARKS = re.compile(r'[",\r\n]')


def ends_in_quotes(text: str) -> bool:
    """Whether CSV text (one or more rows, the csv module's default dialect) ends inside a quoted field,
    read as the lenient csv reader reads it: a quote opens a field only at its start, `""` inside quotes
    is a quote, and after a closing quote the field goes on unquoted."""
    in_quotes, field_start, escaped = False, 0, -1
    for mark in _CSV_MARKS.finditer(text):
        at, char = mark.start(), mark.group()
        if at == escaped:  # the second quote of a `""` pair
            continue
        if in_quotes:
            if char == '"':
                if text.startswith('"', at + 1):
                    escaped = at + 1
                else:
                    in_quotes = False
        elif char == '"':
            in_quotes = at == field_start
        else:  # a comma or a line break ends the field
            field_start = at + 1
    return in_quotes


def _iter_txt(path: InputFile, mode: TxtMode) -> Iterator[tuple[int, Payload]]:
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

    try:
        data = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises many types (JSON, Arrow, FileNotFound) for a broken folder
        yield 1, Problem(f"invalid_dataset: cannot load the dataset folder ({type(exc).__name__}: {exc})")
        return
    if isinstance(data, datasets.DatasetDict):
        if split and split not in data:
            raise FatalError(
                f"dataset folder {path} has no split {split!r} (it has {', '.join(data)}); set the source's "
                "split to one of them"
            )
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
