"""Finding input files and reading them through optional `.gz` / `.zst` compression."""

from __future__ import annotations

import glob
import io
import zlib
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import zstandard

from curate.ingest.remote import (
    RemoteError,
    RemoteFile,
    encode_options,
    fixed_prefix,
    is_url,
    open_remote,
    resolve_url,
)

#: An input file: a local path, or a file behind an fsspec URL.
InputFile = Path | RemoteFile

#: Record file extensions curate reads (each may end in .gz or .zst as well).
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".txt")
COMPRESSION_SUFFIXES = (".gz", ".zst")
_CHUNK = 1 << 20
#: The longest JSON value or CSV field a reader holds (characters): a longer one, and the rest of its
#: file, is quarantined, so that an unterminated string or unclosed quote in a damaged file does not
#: pull the rest of the file into memory. Python holds up to 4 bytes per character.
MAX_VALUE_CHARS = 1 << 26
#: The longest line of a JSON Lines file a reader holds (bytes): a longer one is quarantined
#: (`line_too_long`) and the file read on from the next line.
MAX_LINE_BYTES = 1 << 26
BOM = b"\xef\xbb\xbf"


class TruncatedInput(Exception):
    """A compressed stream ended before its end-of-stream marker (the file was cut short)."""


def input_name(path: InputFile) -> str:
    """How messages name an input: its path, or its URL."""
    return str(getattr(path, "url", path))


def split_suffix(path: str | InputFile) -> tuple[str, str | None]:
    """Return (data suffix, compression suffix) of a file name, e.g. ('.jsonl', '.zst')."""
    name = (path.name if isinstance(path, RemoteFile) else Path(path).name).lower()
    compression = None
    for comp in COMPRESSION_SUFFIXES:
        if name.endswith(comp):
            compression, name = comp, name[: -len(comp)]
    for suffix in DATA_SUFFIXES:
        if name.endswith(suffix):
            return suffix, compression
    return "", compression


def local_file(path: InputFile) -> Path | None:
    """Where an input lies on this machine's file system: a local path, or the file a `file://` URL
    names (None for other URLs), for the checks that keep inputs and the output apart."""
    return path.local_path() if isinstance(path, RemoteFile) else path


def is_hf_dataset_dir(path: InputFile) -> bool:
    """True for a folder written by `datasets.Dataset.save_to_disk` (or `DatasetDict.save_to_disk`)."""
    return (
        isinstance(path, Path)
        and path.is_dir()
        and (
            ((path / "dataset_info.json").exists() and (path / "state.json").exists())
            or (path / "dataset_dict.json").exists()
        )
    )


def _absolute_file_url(layer: str, base: Path) -> str:
    """One layer of a URL (chains join layers with `::`); a `file://` layer as an absolute URL: a
    relative one is relative to `base`, as a local path is (fsspec would take the working folder), and
    RFC 8089's `file://localhost/` is `file:///`."""
    if layer.startswith("file://localhost/"):
        return "file://" + layer[len("file://localhost") :]
    if layer.startswith("file://") and not layer[len("file://") :].startswith(("/", "~")):
        return f"file://{base / layer[len('file://') :]}"
    return layer


def resolve_paths(
    pattern: str,
    base: Path,
    urls: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    readable_only: bool = True,
) -> list[InputFile]:
    """Files (or one HF dataset folder) a source's `path` names: a file, a folder or a glob.

    With `urls`, a path with `://` is an fsspec URL (see `curate.ingest.remote`; RemoteError when it cannot
    be used), whose file system is built with `storage_options` (a relative `file://` URL, or layer of
    a chained URL, is relative to `base`, as a local path is); without, it is a local path like any other
    (for callers that need `Path`s).

    A folder is searched recursively for supported files, skipping hidden files and folders (names
    starting with "."; curate's work dir `.curate` among them); results are sorted, so the order in
    which records are read (and hence which duplicate is kept) does not depend on the file system.
    Without `readable_only`, a folder or glob gives the files curate does not read too (for messages).
    """
    readable = (lambda f: bool(split_suffix(f)[0])) if readable_only else (lambda f: True)
    if urls and is_url(pattern):
        pattern = "::".join(_absolute_file_url(layer, base) for layer in pattern.split("::"))
        if pattern.startswith("file://") and "::" not in pattern:
            return _file_url_files(pattern, base, readable_only, encode_options(storage_options))
        return list(resolve_url(pattern, readable, encode_options(storage_options)))
    full = Path(pattern).expanduser()
    if not full.is_absolute():
        full = base / full
    if any(ch in pattern for ch in "*?[") and not full.exists():  # a literal name may contain [ too
        matches = [Path(p) for p in glob.glob(str(full), recursive=True)]
        return sorted(p for p in matches if (p.is_file() and readable(p)) or is_hf_dataset_dir(p))
    if full.is_file():
        return [full]
    if is_hf_dataset_dir(full):
        return [full]
    if full.is_dir():
        found = [p for p in full.rglob("*") if not any(part.startswith(".") for part in p.relative_to(full).parts)]
        datasets = sorted(p for p in found if is_hf_dataset_dir(p))
        inside = lambda p: any(d in p.parents for d in datasets)  # noqa: E731
        files = [p for p in found if p.is_file() and readable(p) and not inside(p)]
        return sorted(files + datasets)
    return []


def _file_url_files(url: str, base: Path, readable_only: bool, options: str) -> list[InputFile]:
    """The files a plain `file://` URL names: what its local path names (the same files in the same
    order: symlinked folders followed, special files such as FIFOs and broken links skipped, `.*`
    patterns matching hidden names, as Python's glob does), each named as the URL names it."""
    pattern = url[len("file://") :]
    root = fixed_prefix(pattern).rstrip("/") or "/"  # the folders before the first wildcard, as written
    found = resolve_paths(pattern, base, urls=False, readable_only=readable_only)
    files: list[InputFile] = []
    for path in found:
        if is_hf_dataset_dir(path):
            raise RemoteError(
                f"{url!r} holds a folder written by datasets' save_to_disk ({path}), which curate reads by its "
                f"local path, not through a URL: write {pattern!r} as the source's path"
            )
        try:
            below = path.relative_to(Path(root).expanduser()).as_posix()
        except ValueError:  # not below the fixed part as written (`..` in it): by its own path
            files.append(RemoteFile(f"file://{path}", options, url, str(path)))
            continue
        shown = root if below == "." else root + ("" if root.endswith("/") else "/") + below
        files.append(RemoteFile(f"file://{shown}", options, url, str(path)))
    return files


#: Compressed bytes handed to a zstd decoder at once. zstandard's decoder has no output cap, and one
#: zstd block of 4 bytes (RLE) holds 128 KiB, so 1 KiB decompresses to at most 32 MiB: a decompression
#: bomb is read in bounded pieces, as zlib's `max_length` bounds a gzip stream. 100 MB of JSON Lines
#: (zstd level 3): 122 ms in 1 KiB feeds, 103 ms in 1 MiB ones, 180 ms in 256-byte ones.
_ZSTD_FEED = 1024


def _gzip_step(decoder: Any, data: memoryview) -> tuple[bytes, memoryview]:
    """Decompress at most `_CHUNK` bytes from the front of `data`; the input not yet used."""
    out = decoder.decompress(data, _CHUNK)
    left = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
    return out, data[len(data) - len(left) :]


def _zstd_step(decoder: Any, data: memoryview) -> tuple[bytes, memoryview]:
    """Decompress the first `_ZSTD_FEED` bytes of `data`; the input not yet used."""
    out = decoder.decompress(data[:_ZSTD_FEED])
    fed = min(_ZSTD_FEED, len(data)) - (len(decoder.unused_data) if decoder.eof else 0)
    return out, data[fed:]


def _frames(raw: IO[bytes], new_decoder: Callable[[], Any], step: Callable, name: str) -> Iterator[bytes]:
    """Decompress a stream of one or more frames (gzip members, zstd frames) with a decoder that has
    `decompress`, `eof` and `unused_data`, `step` feeding it so that no call returns much more than
    `_CHUNK` bytes. Yields pieces of at most `_CHUNK` bytes or one call's output (a 1 MiB read of a
    decompression bomb is not held whole), everything before a cut, then raises TruncatedInput."""
    decoder, pending = new_decoder(), False
    held: list[bytes] = []
    size = 0
    try:
        while chunk := raw.read(_CHUNK):
            data = memoryview(chunk)
            while data:
                out, data = step(decoder, data)
                pending = True
                if out:
                    if held and size + len(out) > _CHUNK:  # a piece is at most one call's output, or _CHUNK
                        yield b"".join(held)
                        held, size = [], 0
                    held.append(out)
                    size += len(out)
                if decoder.eof:
                    decoder, pending = new_decoder(), False
        if pending and (tail := decoder.flush()):
            held.append(tail)
    except (zlib.error, zstandard.ZstdError) as exc:
        if held:
            yield b"".join(held)
        raise TruncatedInput(f"the {name} stream is damaged ({exc})") from exc
    if held:
        yield b"".join(held)
    if pending and not decoder.eof:
        raise TruncatedInput(f"the {name} stream ends before its end-of-stream marker (file truncated?)")


def _gzip_chunks(raw: IO[bytes]) -> Iterator[bytes]:
    return _frames(raw, lambda: zlib.decompressobj(wbits=31), _gzip_step, ".gz")


def _zstd_chunks(raw: IO[bytes]) -> Iterator[bytes]:
    return _frames(raw, zstandard.ZstdDecompressor().decompressobj, _zstd_step, ".zst")


def _raw_chunks(raw: IO[bytes]) -> Iterator[bytes]:
    while chunk := raw.read(_CHUNK):
        yield chunk


def open_binary(path: InputFile) -> IO[bytes]:
    """The one place input files are opened: a local file, or a remote one streamed through fsspec."""
    return open_remote(path) if isinstance(path, RemoteFile) else open(path, "rb")


def iter_chunks(path: InputFile) -> Generator[bytes, None, None]:
    """Decompressed bytes of a file in chunks, without a leading UTF-8 byte-order mark."""
    compression = split_suffix(path)[1]
    decompress = {".gz": _gzip_chunks, ".zst": _zstd_chunks}.get(compression or "", _raw_chunks)
    with open_binary(path) as raw:
        first = True
        for chunk in decompress(raw):
            if first and chunk.startswith(BOM):
                chunk = chunk[len(BOM) :]
            first = False
            yield chunk


class OverlongLine(bytes):
    """In place of a line longer than the cap `iter_raw_lines` was given: its first bytes (for the
    quarantine entry); `length` is the line's length in bytes."""

    length: int

    def __new__(cls, head: bytes, length: int) -> OverlongLine:
        line = super().__new__(cls, head)
        line.length = length
        return line


def iter_raw_lines(path: InputFile, max_line: int | None = None) -> Iterator[bytes]:
    """Decompressed lines of a file without their `\\n` (a `\\r` before it is kept). With `max_line`, a
    longer line is not held: it comes as an `OverlongLine` once its end is read, so a file that is no
    JSON Lines (one huge line) is read in bounded memory."""
    pieces: list[bytes] = []  # the unfinished line, in pieces (joining once keeps huge lines linear)
    held = 0  # bytes in `pieces`
    skipped = -1  # bytes of an overlong line read so far (its head in `pieces`); -1: none
    for chunk in iter_chunks(path):
        if b"\n" not in chunk:
            if skipped >= 0:
                skipped += len(chunk)
                pieces[0] = _head(pieces[0], chunk)
            elif max_line is not None and held + len(chunk) > max_line:
                pieces, skipped = [_head(b"".join(pieces), chunk)], held + len(chunk)
            else:
                pieces.append(chunk)
                held += len(chunk)
            continue
        lines = chunk.split(b"\n")
        if skipped >= 0:
            lines[0] = OverlongLine(_head(pieces[0], lines[0]), skipped + len(lines[0]))
        else:
            lines[0] = b"".join([*pieces, lines[0]])
        skipped = -1
        pieces = [lines.pop()]
        held = len(pieces[0])
        if max_line is not None and len(chunk) > max_line:  # a small cap, or a chunk that decompressed big
            lines = [_capped(line, max_line) for line in lines]
        elif max_line is not None:  # only the first line, begun in earlier chunks, may be longer
            lines[0] = _capped(lines[0], max_line)
        yield from lines
    tail = OverlongLine(pieces[0], skipped) if skipped >= 0 else b"".join(pieces)
    if tail:
        yield tail if max_line is None else _capped(tail, max_line)


_OVERLONG_HEAD = 2000  # bytes of an overlong line kept for its quarantine entry


def _head(head: bytes, more: bytes) -> bytes:
    """An overlong line's first bytes, with `more` of it read."""
    return head[:_OVERLONG_HEAD] if len(head) >= _OVERLONG_HEAD else head + more[: _OVERLONG_HEAD - len(head)]


def _capped(line: bytes, max_line: int) -> bytes:
    """The line, or an `OverlongLine` in its place when it is longer than `max_line` bytes (a line that
    ends inside one chunk of the file is whole already; only longer ones are cut while read)."""
    if isinstance(line, OverlongLine) or len(line) <= max_line:
        return line
    return OverlongLine(line[:_OVERLONG_HEAD], len(line))


def iter_lines(path: InputFile, max_line: int | None = None) -> Iterator[bytes]:
    """Decompressed lines of a file, without their line ending (`\\n` or `\\r\\n`); `max_line` as for
    `iter_raw_lines`."""
    for line in iter_raw_lines(path, max_line):
        yield line[:-1] if line.endswith(b"\r") and not isinstance(line, OverlongLine) else line


class _ChunkStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks."""

    def __init__(self, chunks: Generator[bytes, None, None]):
        self._chunks = chunks
        self._chunk = memoryview(b"")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._chunks.close()  # the file behind the chunks
        super().close()

    def readinto(self, buffer: Any) -> int:
        while not self._chunk:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._chunk = memoryview(chunk)
        size = min(len(buffer), len(self._chunk))
        buffer[:size] = self._chunk[:size]
        self._chunk = self._chunk[size:]
        return size


def open_stream(path: InputFile) -> IO[bytes]:
    """The decompressed content of a file as a binary stream (as `iter_chunks`: no byte-order mark; a
    damaged compressed stream raises TruncatedInput where the damage is read)."""
    return io.BufferedReader(_ChunkStream(iter_chunks(path)), buffer_size=_CHUNK)


def read_all(path: InputFile) -> bytes:
    """The whole decompressed content of a file."""
    return b"".join(iter_chunks(path))
