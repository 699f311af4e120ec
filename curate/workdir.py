"""The work dir: cache keys for inputs, and locks that keep two builds apart.

Locks are `flock`s on files, so the kernel releases them when a build dies, even by SIGKILL: a killed
build never leaves a stuck lock behind.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from curate import __version__
from curate.config import Config
from curate.errors import FatalError
from curate.ingest.convert import SourceSpec
from curate.ingest.cut import input_failed
from curate.ingest.files import InputFile
from curate.ingest.remote import RemoteFile
from curate.ingest.remote import fingerprint as remote_fingerprint
from curate.stages.base import Context


class BuildLock:
    """Exclusive, non-blocking locks on the output and the work dir for the length of a build."""

    def __init__(self, output: Path, work_dir: Path):
        self.paths = [output.parent / f".{output.name}.lock", work_dir / ".lock"]
        self._stack = ExitStack()

    def __enter__(self) -> BuildLock:
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = self._stack.enter_context(open(path, "a+"))
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._stack.close()
                raise FatalError(
                    f"another build is running with the same output or work dir (lock {path} is held); "
                    "wait for it to finish, or use --output / --work-dir to build elsewhere"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stack.close()


def _data_fingerprint(data: object) -> str:
    fingerprint = getattr(data, "_fingerprint", None)  # datasets.Dataset
    if fingerprint:
        return str(fingerprint)
    import polars as pl

    if isinstance(data, pl.DataFrame):
        return f"{data.height}:{data.hash_rows(seed=0).sum()}:{data.schema}"
    return f"object:{id(data)}"


def input_key(config: Config, specs: list[SourceSpec], ctx: Context) -> str:
    """Key of everything pass 0 reads: curate's code, sources, their files (path, size, mtime), format,
    tokenizer. Files are identified by size and modification time (as make does): editing an input re-runs.
    Remote (fsspec URL) files by size and the version fields their backend reports, else their bytes.
    """
    parts = [
        f"curate {code_fingerprint()}",
        f"tokenizer {ctx.tokenizer}",
        f"batch {config.pipeline.batch_size} {config.pipeline.batch_bytes}",
    ]
    for src, spec in zip(config.sources, specs, strict=True):
        parts.append(repr((spec, src.txt_mode, src.split)))
        if src.data is not None:
            parts.append(_data_fingerprint(src.data))
        for path in src.files:
            try:
                parts += _file_keys(path)
            except OSError as exc:  # gone since the config listed it, or the backend failed
                raise input_failed(path, exc) from exc
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _file_keys(path: InputFile) -> list[str]:
    """What identifies this version of an input: a remote file's size plus mtime/ETag/LastModified or a
    hash of its bytes; a local file's (or each file of a dataset folder's) path, size and mtime."""
    if isinstance(path, RemoteFile):
        return [remote_fingerprint(path)]
    files = [f for f in (sorted(path.rglob("*")) if path.is_dir() else [path]) if f.is_file()]
    return [f"{f.resolve()}:{stat.st_size}:{stat.st_mtime_ns}" for f in files for stat in [f.stat()]]


@functools.cache
def code_fingerprint() -> str:
    """Hash of curate's own source files: a changed stage implementation never reuses stale caches."""
    h = hashlib.sha256(__version__.encode())
    package = Path(__file__).parent
    for file in sorted(package.rglob("*.py")):
        h.update(str(file.relative_to(package)).encode())
        h.update(file.read_bytes())
    return h.hexdigest()
