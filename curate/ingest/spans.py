"""Worker-side reading of the inputs: batches travel as byte ranges or batch files, not as records.

With several workers (or Ray), each input file is first scanned by a task on a worker (`scan_file`),
which cuts it into batches by the driver-side reader's rule (at most `batch_size` items, or until
`batch_bytes` of payload; see `curate.ingest.batching`). The driver numbers batches and rows across files
as before, and each batch's task reads its own batch (`read_span`). Batches, rows, line numbers and
payloads are the ones the driver-side reader gives (tested), so the output is the same; the input
bytes no longer pass through the driver.

- Uncompressed JSON Lines are read in place: the scan returns each batch's byte range.
- Compressed JSON Lines (`.jsonl.gz`, `.jsonl.zst`) cannot be read from the middle, so their scan task
  decompresses the file once, cuts it by the same rule, and *spills* each batch's lines into a file of
  its own in the work dir (zstd level 1); the batch's task reads that file.
- Parquet files are spilled by rows (`curate.ingest.parquet_spill`).
- Every other file (JSON arrays, CSV, text, compressed Parquet, dataset folders), and one the paths
  above leave (a damaged compressed stream, an Arrow type they cannot size), is read by the
  driver-side reader itself, run in the scan task, and spilled (`curate.ingest.reader_spill`).

A file a worker cannot see (missing, or another size: not on shared storage) is read by the driver.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard

from curate.ingest import files
from curate.ingest.cut import (
    Cut,
    ScanTask,
    Spiller,
    input_changed,
    input_gone,
    input_unreadable,
    read_spill,
    spill_damaged,
)
from curate.ingest.files import (
    BOM,
    COMPRESSION_SUFFIXES,
    InputFile,
    OverlongLine,
    TruncatedInput,
    is_hf_dataset_dir,
    iter_raw_lines,
    open_binary,
    split_suffix,
)
from curate.ingest.parquet_spill import read_parquet_spill, reads_by_rows, spill_parquet
from curate.ingest.reader_spill import read_items_spill, spill_items
from curate.ingest.remote import RemoteFile, version_stamp

__all__ = ["Cut", "ScanTask", "file_size", "read_span", "reads_by_span", "reads_by_spill", "scan_file"]


def reads_by_span(path: InputFile) -> bool:
    """Whether a file can be read by byte ranges: uncompressed JSON Lines."""
    return split_suffix(path) == (".jsonl", None) and not is_hf_dataset_dir(path)


def reads_by_spill(path: InputFile) -> bool:
    """Whether a file can be cut by a worker into spilled batches: compressed JSON Lines."""
    suffix, compression = split_suffix(path)
    return suffix == ".jsonl" and compression in COMPRESSION_SUFFIXES and not is_hf_dataset_dir(path)


def iter_lines_at(path: InputFile) -> Iterator[tuple[int, bytes]]:
    """(byte offset in the file, line without its `\\n`) of every line of an uncompressed file: the lines
    `curate.ingest.files.iter_lines` reads, with their offsets (a trailing `\\r` is kept here)."""
    with open_binary(path) as raw:
        start = len(BOM) if raw.read(len(BOM)) == BOM else 0
    for line in iter_raw_lines(path, files.MAX_LINE_BYTES):  # an OverlongLine ends the offsets' use
        yield start, line
        start += len(line) + 1


def _payload(raw: bytes) -> bytes:
    return raw[:-1] if raw.endswith(b"\r") else raw


def file_size(path: InputFile) -> int | None:
    """A local file's size in bytes (None for a URL)."""
    return None if isinstance(path, RemoteFile) else os.path.getsize(path)


def file_stamp(path: InputFile) -> str:
    """What changes when a file is rewritten: a local file's size and modification time (ns), a remote
    one's size and version fields. The scan stamps the batches it cuts in place, and each batch's task
    checks the stamp before it reads, so a file edited in between (even to the same size) stops the
    build instead of being read at the old offsets."""
    if isinstance(path, RemoteFile):
        return version_stamp(path)
    stat = os.stat(path)
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def read_stamp(path: InputFile) -> str:
    """`file_stamp`, or for a Hugging Face dataset folder the stamps of the files in it (rewriting one
    of them does not change the folder's own size or modification time)."""
    if not (isinstance(path, Path) and is_hf_dataset_dir(path)):
        return file_stamp(path)
    return ";".join(f"{f.relative_to(path)}:{file_stamp(f)}" for f in sorted(path.rglob("*")) if f.is_file())


def scan_file(task: ScanTask) -> list[Cut] | None:
    """Runs on a worker: the file's batches, or None when this worker cannot read the file as the
    driver sees it (missing, or another size: not on shared storage), so the driver reads it itself."""
    try:
        if task.size is not None and file_size(task.path) != task.size:
            return None
        if not reads_by_span(task.path):
            return _spill(task, Path(task.spill)) if task.spill is not None else None
        stamp = file_stamp(task.path)
        cuts, items, size, start, first, end = [], 0, 0, 0, 0, 0
        for number, (offset, raw) in enumerate(iter_lines_at(task.path), start=1):
            if isinstance(raw, OverlongLine):  # the reader quarantines it and reads on: spilled as it reads
                return spill_items(task, Path(task.spill)) if task.spill is not None else None
            payload = _payload(raw)
            if not payload.strip():
                continue
            if not items:
                start, first = offset, number
            items, size, end = items + 1, size + len(payload), offset + len(raw)
            if items >= task.batch_size or size >= task.batch_bytes:
                cuts.append(Cut(start, end, first, items, stamp=stamp))
                items = size = 0
        if file_stamp(task.path) != stamp:  # rewritten while it was scanned
            raise input_changed(task.path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise input_unreadable(task.path, exc) from exc
    if items:
        cuts.append(Cut(start, end, first, items, stamp=stamp))
    return cuts


def _spill(task: ScanTask, folder: Path) -> list[Cut] | None:
    """Batch files for an input that is not read in place: compressed JSON Lines by their lines, Parquet
    by its rows, and any other file, or one of those the faster paths leave (a damaged stream, a type
    Arrow cannot size), through the driver-side reader (`curate.ingest.reader_spill`)."""
    cuts = None
    if reads_by_spill(task.path):
        cuts = _spill_file(task, folder)
    elif reads_by_rows(task.path):
        cuts = spill_parquet(task, folder)
    return cuts if cuts is not None else spill_items(task, folder)


def _spill_file(task: ScanTask, folder: Path) -> list[Cut] | None:
    """A compressed file's batches, each written to `folder` (its lines as read, from its first record
    to its last, zstd level 1); None when the stream is damaged (the driver's reader, run on the worker,
    then reads it and quarantines from the damage on) or the file is not there."""
    spiller = Spiller(task, folder, "lines", "jsonl.zst")
    return spiller.run(lambda: _spill_lines(task, spiller), declined=(TruncatedInput, _OverlongFound))


class _OverlongFound(Exception):
    """A line too long for a JSON Lines record: the file is spilled as the reader reads it instead."""


def _spill_lines(task: ScanTask, spiller: Spiller) -> list[Cut]:
    cuts: list[Cut] = []
    lines: list[bytes] = []
    items = size = first = kept = 0
    compressor = zstandard.ZstdCompressor(level=1)

    def spill() -> Cut:
        data = b"\n".join(lines[:kept])  # blank lines after the last record are not the batch's
        return spiller.write(compressor.compress(data), first, items, len(data))

    for number, raw in enumerate(iter_raw_lines(task.path, files.MAX_LINE_BYTES), start=1):
        if isinstance(raw, OverlongLine):
            raise _OverlongFound
        payload = _payload(raw)
        if not payload.strip():
            if items:
                lines.append(raw)  # inside a batch: keeps the line numbers of the records after it
            continue
        if not items:
            lines, first = [], number
        lines.append(raw)
        items, size, kept = items + 1, size + len(payload), len(lines)
        if items >= task.batch_size or size >= task.batch_bytes:
            cuts.append(spill())
            items = size = 0
    if items:
        cuts.append(spill())
    return cuts


def _read_range(path: InputFile, cut: Cut) -> bytes:
    """The bytes of a batch read in place, after checking that the file is still the one its scan cut."""
    try:
        if cut.stamp is not None and file_stamp(path) != cut.stamp:
            raise input_changed(path)
        with open_binary(path) as raw:
            raw.seek(cut.start)
            return raw.read(cut.end - cut.start)
    except FileNotFoundError as exc:
        raise input_gone(path) from exc
    except OSError as exc:
        raise input_unreadable(path, exc) from exc


def read_span(path: InputFile, cut: Cut) -> tuple[list[int], list[Any]]:
    """Runs on a worker: the (line numbers, payloads) of one batch, as the driver-side reader gives them
    (payloads: JSON lines as bytes, or whatever the reader gives for spilled rows and items)."""
    if cut.kind == "rows":
        return read_parquet_spill(path, cut)
    if cut.kind == "items":
        return read_items_spill(path, cut)
    if cut.kind == "lines":
        try:
            data = zstandard.ZstdDecompressor().decompress(read_spill(path, cut), max_output_size=cut.end)
        except zstandard.ZstdError as exc:
            raise spill_damaged(path, cut, str(exc)) from exc
    else:
        data = _read_range(path, cut)
    lines, payloads = [], []
    for number, line in enumerate(data.split(b"\n"), start=cut.first_line):
        payload = _payload(line)
        if payload.strip():
            lines.append(number)
            payloads.append(payload)
    if len(payloads) != cut.items or len(data) != cut.end - cut.start:
        raise input_changed(path)
    return lines, payloads
