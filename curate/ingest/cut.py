"""What a worker's scan of an input file returns (`Cut`, one per batch), what it is given (`ScanTask`),
and the batch files ("spills") it writes for inputs that are not read in place."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from curate.errors import FatalError
from curate.ingest.files import InputFile, input_name
from curate.ingest.readers import TxtMode

#: How a batch is read: `range`, bytes [start, end) of the input (uncompressed JSON Lines); or from its
#: spill file: `lines` (compressed JSON Lines, zstd; `end` the lines' length), `rows` (Parquet, Arrow
#: IPC), `items` (any other input: the driver's reader's line numbers and payloads, pickled, zstd).
CutKind = Literal["range", "lines", "rows", "items"]


@dataclass(frozen=True)
class Cut:
    """One batch of an input file, of `kind` (see `CutKind`): its first item is line (or row)
    `first_line`, and it holds `items` items (blank lines are not items). A spilled batch names its
    file and that file's BLAKE2b `digest`, checked when the batch is read; a batch read in place carries
    the input's `stamp` as the scan saw it (`file_stamp`), checked when the batch is read."""

    start: int
    end: int
    first_line: int
    items: int
    spill: str | None = None
    kind: CutKind = "range"
    digest: str | None = None
    stamp: str | None = None


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
    txt_mode: TxtMode = "blocks"
    split: str | None = None


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class Spiller:
    """Writes the batch files of one scan task's input into `folder`: `<sha256 of the source number and
    the input's name>-<batch>.<suffix>`, each complete or absent (written under a temporary name, then
    renamed). A write that fails (the work dir full or not writable) is a FatalError."""

    def __init__(self, task: ScanTask, folder: Path, kind: CutKind, suffix: str):
        self.path, self.folder, self.kind, self.suffix = task.path, folder, kind, suffix
        self.key = hashlib.sha256(f"{task.source}\x00{input_name(task.path)}".encode()).hexdigest()
        self.written: list[Path] = []

    def write(self, data: bytes, first: int, items: int, end: int) -> Cut:
        """Write the next batch's file; return its cut (`end`: see `CutKind`)."""
        target = self.folder / f"{self.key}-{len(self.written):06d}.{self.suffix}"
        partial = self.folder / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        try:
            if not self.written:
                self.folder.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            self.remove()
            raise FatalError(
                f"cannot write batch files into {self.folder}: {exc}; check that the work dir has space"
            ) from exc
        self.written.append(target)
        return Cut(0, end, first, items, spill=str(target), kind=self.kind, digest=_digest(data))

    def run(self, cut: Callable[[], list[Cut] | None], declined: tuple[type[Exception], ...] = ()) -> list[Cut] | None:
        """The batches `cut` writes through this spiller. None, with the files written so far removed,
        when `cut` declines the file (returns None, or raises one of `declined`) or the file is not there
        for this worker (the file is then left to another path); another I/O error is a FatalError naming
        the input; any other error removes the files and is raised as it is."""
        try:
            cuts = cut()
        except (FileNotFoundError, *declined):
            cuts = None
        except OSError as exc:
            self.remove()
            raise input_unreadable(self.path, exc) from exc
        except BaseException:
            self.remove()
            raise
        if cuts is None:
            self.remove()
        return cuts

    def remove(self) -> None:
        """Remove the batch files written so far (the input is left to another path, or failed)."""
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written = []


def read_spill(path: InputFile, cut: Cut) -> bytes:
    """Runs on a worker: a spilled batch's file, as its scan wrote it (checked against its digest)."""
    try:
        data = Path(str(cut.spill)).read_bytes()
    except OSError as exc:
        raise spill_damaged(path, cut, str(exc)) from exc
    if _digest(data) != cut.digest:
        raise spill_damaged(path, cut, "its content is not what the scan wrote")
    return data


def spill_damaged(path: InputFile, cut: Cut, why: str) -> FatalError:
    """The error for a spilled batch that cannot be read back."""
    return FatalError(
        f"the spilled batch {cut.spill} of input {input_name(path)} is missing or damaged ({why}); run the "
        "build again (the input is read again)"
    )


def input_gone(path: InputFile) -> FatalError:
    """The error for an input that disappeared after the build listed it."""
    return FatalError(
        f"input {input_name(path)} is gone (deleted or moved after the build started); "
        "restore it and run the build again"
    )


def input_changed(path: InputFile) -> FatalError:
    """The error for an input that changed while it was read: a batch no longer holds what its scan
    found, or a file read by the driver is not what it was when its read began."""
    return FatalError(
        f"input {input_name(path)} changed while it was read (its size or modification time is not what it was "
        "when the build began reading it); run the build again once the file is complete. With Ray, every "
        "node must read the same shared file, not a copy"
    )


def input_failed(path: InputFile, exc: OSError) -> FatalError:
    """The error for an input the driver cannot read: `input_gone` for a missing file, else the I/O error."""
    if isinstance(exc, FileNotFoundError):
        return input_gone(path)
    return FatalError(f"cannot read input {input_name(path)}: {exc}")


def input_unreadable(path: InputFile, exc: BaseException) -> FatalError:
    """The error for an input a worker cannot read (an I/O error, not a missing file)."""
    return FatalError(f"cannot read input {input_name(path)} on a worker: {exc}; check that the workers can read it")
