"""Worker-side reading of every other input file: the driver-side reader itself, run in a scan task.

JSON arrays, CSV, plain text, compressed Parquet and Hugging Face dataset folders cannot be cut
without parsing them. With several workers (or Ray), one task per file runs the driver-side reader
(`curate.ingest.readers.iter_file`) and cutter (`curate.ingest.batching.file_batches`) on a worker and
writes each batch's (line numbers, payloads) to a file of its own in the work dir (pickle, zstd level
1); each batch's task reads that file. The batches are the driver's by construction: the same code
cuts them. Payloads are bytes, strings, parsed objects (whatever types the format gives: pickle keeps
them as they are) and the reader's `Problem`s, which are quarantined as before. The spill files are
written and read only by the build's own processes, in its work dir, and each is checked against the
digest its scan recorded. A file the worker cannot find is left to the driver, as is one whose values
pickle cannot hold. Errors the reader raises reach the build as they would from the driver's reader
(an I/O error becomes a FatalError naming the input).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import zstandard

from curate.ingest.batching import file_batches
from curate.ingest.cut import Cut, ScanTask, Spiller, input_changed, read_spill, spill_damaged
from curate.ingest.files import InputFile
from curate.ingest.readers import iter_file


def spill_items(task: ScanTask, folder: Path) -> list[Cut] | None:
    """A file's batches as the driver-side reader cuts them, each written to `folder`; None when the
    driver must read the file (see the module docstring)."""
    spiller = Spiller(task, folder, "items", "pickle.zst")
    return spiller.run(lambda: _spill_items(task, spiller))


def _spill_items(task: ScanTask, spiller: Spiller) -> list[Cut] | None:
    compressor = zstandard.ZstdCompressor(level=1)
    cuts: list[Cut] = []
    items = iter_file(task.path, task.txt_mode, task.split)
    for lines, payloads in file_batches(items, task.batch_size, task.batch_bytes):
        try:
            data = pickle.dumps((lines, payloads), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
            return None  # values pickle cannot hold: the driver reads the file, as before
        cuts.append(spiller.write(compressor.compress(data), lines[0], len(lines), len(data)))
    return cuts


def read_items_spill(path: InputFile, cut: Cut) -> tuple[list[int], list[Any]]:
    """Runs on a worker: the (line numbers, payloads) of one spilled batch."""
    try:
        data = zstandard.ZstdDecompressor().decompress(read_spill(path, cut), max_output_size=cut.end)
        lines, payloads = pickle.loads(data)
    except (zstandard.ZstdError, pickle.UnpicklingError, ValueError, EOFError) as exc:
        raise spill_damaged(path, cut, str(exc)) from exc
    if len(payloads) != cut.items or len(data) != cut.end:
        raise input_changed(path)
    return lines, payloads
