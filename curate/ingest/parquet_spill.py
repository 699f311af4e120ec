"""Worker-side reading of Parquet inputs: a worker's scan cuts each file into batches and spills them.

The driver-side reader (`curate.ingest.readers`) gives a Parquet file's rows as dicts, numbered from 1,
and cuts them into batches of at most `batch_size` rows or once `batch_bytes` of payload is reached, the
payload of a row being the length of its string values. A row group can hold many batches, and reading
one batch's rows from the middle of a row group decodes the row group from its start, so batches are
not read in place: with several workers (or Ray) one task per file reads it once, computes each row's
payload with Arrow (`row_sizes`, the same figure), cuts by the same rule and writes each batch's rows to
a file of its own in the work dir (Arrow IPC, zstd). Each batch's task reads that file (`read_parquet_spill`)
and gets the driver-side reader's rows. A file that is not Parquet, cannot be decoded, or has a column
whose Python values cannot be sized from Arrow (an extension type, a repeated column name) is left to
the driver, whose reader reports it as before.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import FatalError
from curate.ingest.cut import Cut, ScanTask, Spiller, input_name
from curate.ingest.files import InputFile, is_hf_dataset_dir, open_binary, split_suffix

_READ_ROWS = 65_536  # rows per record batch while scanning (memory: one record batch)
_IPC = pa.ipc.IpcWriteOptions(compression="zstd")  # smaller and faster than LZ4 here (measured)


def reads_by_rows(path: InputFile) -> bool:
    """Whether a file can be cut by a worker into spilled batches of rows: uncompressed Parquet."""
    return split_suffix(path) == (".parquet", None) and not is_hf_dataset_dir(path)


def _stringy(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def row_sizes(batch: pa.RecordBatch) -> list[int] | None:
    """Each row's payload as the driver-side reader counts it: the summed length (in characters) of the
    row's string values. None when that cannot be told from Arrow types (see the module docstring)."""
    if len(set(batch.schema.names)) != batch.num_columns:
        return None  # a repeated name: the row's dict keeps one of the values
    total = pa.array([0] * batch.num_rows, pa.int64())
    for column in batch.columns:
        kind = column.type
        if isinstance(kind, pa.BaseExtensionType):
            return None
        if pa.types.is_dictionary(kind):
            if not _stringy(kind.value_type):
                continue
            column = column.dictionary_decode()
        elif not _stringy(kind):
            continue
        total = pc.add(total, pc.utf8_length(column).cast(pa.int64()).fill_null(0))
    return total.to_pylist()


def spill_parquet(task: ScanTask, folder: Path) -> list[Cut] | None:
    """A Parquet file's batches, each written to `folder`; None when the driver must read the file (see
    the module docstring; the batches written so far are removed)."""
    spiller = Spiller(task, folder, "arrow")
    cuts: list[Cut] = []
    pending: list[pa.RecordBatch] = []  # the current batch's rows, in slices
    items = size = 0
    first = 1

    def spill() -> None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, pending[0].schema, options=_IPC) as writer:
            for part in pending:
                writer.write_batch(part)
        cuts.append(Cut(0, items, first, items, spill=spiller.write(sink.getvalue().to_pybytes())))

    try:
        with open_binary(task.path) as raw:
            if raw.seek(0, io.SEEK_END) == 0:  # an empty file holds no records
                return []
            raw.seek(0)
            for batch in pq.ParquetFile(raw).iter_batches(batch_size=_READ_ROWS):
                sizes = row_sizes(batch)
                if sizes is None:
                    spiller.remove()
                    return None
                start = 0
                for row, row_size in enumerate(sizes):
                    items, size = items + 1, size + row_size
                    if items >= task.batch_size or size >= task.batch_bytes:
                        pending.append(batch.slice(start, row + 1 - start))
                        spill()
                        first, start, pending, items, size = first + items, row + 1, [], 0, 0
                if start < batch.num_rows:
                    pending.append(batch.slice(start))
        if items:
            spill()
    except FileNotFoundError:  # not there for this worker: the driver reads it
        spiller.remove()
        return None
    except OSError as exc:  # the work dir is full or not writable, or the input not readable
        spiller.remove()
        raise FatalError(
            f"cannot cut {input_name(task.path)} into batch files in {folder}: {exc}; check that the input is "
            "readable by the workers and that the work dir has space"
        ) from exc
    except (pa.ArrowException, ValueError):  # not Parquet, or damaged: the driver's reader reports it
        spiller.remove()
        return None
    return cuts


def read_parquet_spill(path: InputFile, cut: Cut) -> tuple[list[int], list[Any]]:
    """Runs on a worker: the (row numbers, rows as dicts) of one spilled batch of a Parquet input."""
    try:
        with pa.ipc.open_file(pa.py_buffer(Path(str(cut.spill)).read_bytes())) as reader:
            table = reader.read_all()
    except (OSError, pa.ArrowException) as exc:
        raise FatalError(
            f"the spilled batch {cut.spill} of input {input_name(path)} is missing or damaged ({exc}); run the "
            "build again (the input is read again)"
        ) from exc
    if table.num_rows != cut.items:
        raise FatalError(f"input {input_name(path)} changed while it was read; run the build again")
    return list(range(cut.first_line, cut.first_line + cut.items)), table.to_pylist()
