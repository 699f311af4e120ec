"""Worker-side reading of Parquet inputs: a worker's scan cuts each file into batches and spills them.

The driver-side reader (`curate.ingest.readers`) gives a Parquet file's rows as dicts, numbered from 1,
and cuts them into batches of at most `batch_size` rows or once `batch_bytes` of payload is reached, the
payload of a row being the length of its string values. A row group can hold many batches, and reading
one batch's rows from the middle of a row group decodes the row group from its start, so batches are
not read in place: with several workers (or Ray) one task per file reads it once, computes each row's
payload with Arrow (`row_sizes`, the same figure), cuts by the same rule and writes each batch's rows to
a file of its own in the work dir (Arrow IPC, zstd). Each batch's task reads that file
(`read_parquet_spill`) and gets the driver-side reader's rows. A file this path declines (not Parquet,
or a column whose Python values it cannot size from Arrow types: an extension type, a repeated column
name) goes through the driver's own reader on the worker instead (`curate.ingest.reader_spill`). A file
that cannot be decoded past its footer is a FatalError naming it, as in the driver's reader.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.arrow_arrays import arrow_from_numpy
from curate.ingest.cut import Cut, ScanTask, Spiller, input_changed, read_spill, spill_damaged
from curate.ingest.files import InputFile, is_hf_dataset_dir, open_binary, split_suffix
from curate.ingest.readers import parquet_damaged, parquet_rows

_READ_ROWS = 65_536  # rows per record batch while scanning
_IPC = pa.ipc.IpcWriteOptions(compression="zstd")  # smaller and faster than LZ4 here (measured)


def reads_by_rows(path: InputFile) -> bool:
    """Whether a file can be cut by a worker into spilled batches of rows: uncompressed Parquet."""
    return split_suffix(path) == (".parquet", None) and not is_hf_dataset_dir(path)


_STRINGS = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)


def _as_string(column: pa.Array) -> pa.Array | None:
    """A column's strings as an array `utf8_length` takes; None for a column without string values."""
    kind = column.type
    if pa.types.is_dictionary(kind) and any(test(kind.value_type) for test in _STRINGS):
        column, kind = column.dictionary_decode(), kind.value_type
    if not any(test(kind) for test in _STRINGS):
        return None
    return column.cast(pa.large_string()) if pa.types.is_string_view(kind) else column  # no view kernel


def row_sizes(batch: pa.RecordBatch) -> list[int] | None:
    """Each row's payload as the driver-side reader counts it: the summed length (in characters) of the
    row's string values. None when that cannot be told from Arrow types (see the module docstring)."""
    if len(set(batch.schema.names)) != batch.num_columns:
        return None  # a repeated name: the row's dict keeps one of the values
    total = arrow_from_numpy(np.zeros(batch.num_rows, np.int64))
    for column in batch.columns:
        if isinstance(column.type, pa.BaseExtensionType):
            return None
        strings = _as_string(column)
        if strings is not None:
            total = pc.add(total, pc.utf8_length(strings).cast(pa.int64()).fill_null(0))
    return total.to_pylist()


def _ipc(pending: list[pa.RecordBatch]) -> bytes:
    """The rows as one Arrow IPC file (dictionaries unified: a file holds one per column)."""
    table = pa.Table.from_batches(pending).unify_dictionaries()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=_IPC) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def spill_parquet(task: ScanTask, folder: Path) -> list[Cut] | None:
    """A Parquet file's batches, each written to `folder`; None when this path declines the file (not
    Parquet, or a type it cannot size or write: see the module docstring) or the file is not there."""
    spiller = Spiller(task, folder, "rows", "arrow")
    return spiller.run(lambda: _spill_rows(task, spiller), declined=(pa.ArrowException,))


def _spill_rows(task: ScanTask, spiller: Spiller) -> list[Cut] | None:
    cuts: list[Cut] = []
    pending: list[pa.RecordBatch] = []  # the current batch's rows, in slices
    items = size = 0
    first = 1
    with open_binary(task.path) as raw:
        if raw.seek(0, io.SEEK_END) == 0:  # an empty file holds no records
            return []
        raw.seek(0)
        try:
            batches = pq.ParquetFile(raw).iter_batches(batch_size=_READ_ROWS)  # not Parquet: ArrowInvalid
        except OSError as exc:  # a footer that does not decode: the error the driver's reader gives
            raise parquet_damaged(task.path, exc) from exc
        while True:
            try:
                batch = next(batches, None)
            except (OSError, pa.ArrowException) as exc:  # the file is damaged past its footer
                raise parquet_damaged(task.path, exc) from exc
            if batch is None:
                break
            try:
                batch.validate(full=True)
            except pa.ArrowInvalid:  # a string that is not valid UTF-8: the reader's path quarantines its row
                return None
            sizes = row_sizes(batch)
            if sizes is None:
                return None
            start = 0
            for row, row_size in enumerate(sizes):
                items, size = items + 1, size + row_size
                if items >= task.batch_size or size >= task.batch_bytes:
                    pending.append(batch.slice(start, row + 1 - start))
                    cuts.append(spiller.write(_ipc(pending), first, items, items))
                    first, start, pending, items, size = first + items, row + 1, [], 0, 0
            if start < batch.num_rows:
                pending.append(batch.slice(start))
    if items:
        cuts.append(spiller.write(_ipc(pending), first, items, items))
    return cuts


def read_parquet_spill(path: InputFile, cut: Cut) -> tuple[list[int], list[Any]]:
    """Runs on a worker: the (row numbers, rows as dicts) of one spilled batch of a Parquet input."""
    try:
        with pa.ipc.open_file(pa.py_buffer(read_spill(path, cut))) as reader:
            table = reader.read_all()
    except pa.ArrowException as exc:
        raise spill_damaged(path, cut, str(exc)) from exc
    if table.num_rows != cut.items:
        raise input_changed(path)
    return list(range(cut.first_line, cut.first_line + cut.items)), parquet_rows(table)
