"""What a worker's scan of an input file returns (`Cut`, one per batch), what it is given (`ScanTask`),
and the batch files ("spills") it writes for inputs that cannot be read from the middle."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from curate.ingest.files import InputFile


@dataclass(frozen=True)
class Cut:
    """One batch of an input file. JSON Lines read in place: bytes [start, end) hold its lines (end: after
    the last line's content, before its line ending). With `spill`, the batch is in a file of its own
    (a compressed JSON Lines input: its lines, `end` their length; a Parquet input: its rows, `end` their
    count). The first item is line (or row) `first_line`, and `items` are not blank."""

    start: int
    end: int
    first_line: int
    items: int
    spill: str | None = None  # the file holding the batch, when not the input


@dataclass(frozen=True)
class ScanTask:
    """An input file of source number `source` to cut into batches, with the batch limits, the size the
    driver sees, and the source's reading options."""

    path: InputFile
    batch_size: int
    batch_bytes: int
    size: int | None  # None: not checked (a URL)
    spill: str | None = None  # folder for spilled batches (None: such files are left to the driver)
    source: int = 0
    txt_mode: str = "blocks"
    split: str | None = None


def input_name(path: InputFile) -> str:
    """The name errors give an input: its URL or path."""
    return str(getattr(path, "url", path))


class Spiller:
    """Writes the batch files of one scan task's input into `folder`: `<sha256 of the source number and
    the input's name>-<batch>.<suffix>`, each complete or absent (written under a temporary name, then
    renamed)."""

    def __init__(self, task: ScanTask, folder: Path, suffix: str):
        self.folder, self.suffix = folder, suffix
        self.key = hashlib.sha256(f"{task.source}\x00{input_name(task.path)}".encode()).hexdigest()
        self.written: list[Path] = []

    def write(self, data: bytes) -> str:
        """Write the next batch's file; return its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{self.key}-{len(self.written):06d}.{self.suffix}"
        partial = self.folder / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        partial.write_bytes(data)
        os.replace(partial, target)
        self.written.append(target)
        return str(target)

    def remove(self) -> None:
        """Remove the batch files written so far (the input is left to the driver, or failed)."""
        for path in self.written:
            path.unlink(missing_ok=True)
