"""Worker-side reading of every other input file: the driver-side reader itself, run in a scan task.

JSON arrays, CSV, plain text, compressed Parquet and Hugging Face dataset folders cannot be cut
without parsing them. With several workers (or Ray), one task per file runs the driver-side reader
(`curate.ingest.readers.iter_file`) and cutter (`curate.ingest.batching.file_batches`) on a worker and
writes each batch's (line numbers, payloads) to a file of its own in the work dir (pickle, zstd level
1); each batch's task reads that file. The batches are the driver's by construction: the same code
cuts them. Payloads are bytes, strings, parsed objects (whatever types the format gives: pickle keeps
them as they are) and the reader's `Problem`s, which are quarantined as before. The spill files are
written and read only by the build's own processes, in its work dir. A file the worker cannot find is
left to the driver, as is one whose reader fails with an error other than an I/O error (the driver's
reader then meets it as before).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pyarrow as pa
import zstandard

from curate.errors import FatalError
from curate.ingest.batching import file_batches
from curate.ingest.cut import Cut, ScanTask, Spiller, input_name
from curate.ingest.files import InputFile
from curate.ingest.readers import iter_file


def spill_items(task: ScanTask, folder: Path) -> list[Cut] | None:
    """A file's batches as the driver-side reader cuts them, each written to `folder`; None when the
    driver must read the file (see the module docstring; the batches written so far are removed)."""
    spiller = Spiller(task, folder, "pickle.zst")
    compressor = zstandard.ZstdCompressor(level=1)
    cuts: list[Cut] = []
    try:
        items = iter_file(task.path, task.txt_mode, task.split)  # type: ignore[arg-type]
        for lines, payloads in file_batches(items, task.batch_size, task.batch_bytes):
            data = pickle.dumps((lines, payloads), protocol=pickle.HIGHEST_PROTOCOL)
            cuts.append(Cut(0, len(data), lines[0], len(lines), spill=spiller.write(compressor.compress(data))))
    except FileNotFoundError:  # not there for this worker: the driver reads it
        spiller.remove()
        return None
    except OSError as exc:  # the work dir is full or not writable, or the input not readable
        spiller.remove()
        raise FatalError(
            f"cannot cut {input_name(task.path)} into batch files in {folder}: {exc}; check that the input is "
            "readable by the workers and that the work dir has space"
        ) from exc
    except (ValueError, pa.ArrowException):  # a reader error the driver's reader will meet and report
        spiller.remove()
        return None
    return cuts


def read_items_spill(path: InputFile, cut: Cut) -> tuple[list[int], list[Any]]:
    """Runs on a worker: the (line numbers, payloads) of one spilled batch."""
    try:
        data = zstandard.ZstdDecompressor().decompress(Path(str(cut.spill)).read_bytes())
        lines, payloads = pickle.loads(data)
    except (OSError, zstandard.ZstdError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise FatalError(
            f"the spilled batch {cut.spill} of input {input_name(path)} is missing or damaged ({exc}); run the "
            "build again (the input is read again)"
        ) from exc
    if len(payloads) != cut.items or len(data) != cut.end:
        raise FatalError(f"input {input_name(path)} changed while it was read; run the build again")
    return lines, payloads
