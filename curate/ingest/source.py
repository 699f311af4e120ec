"""Reading configured sources: format detection and raw batches in a deterministic order."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson

from curate.config import SourceConfig
from curate.errors import ConfigError
from curate.ingest.convert import RawBatch, SourceSpec
from curate.ingest.files import InputFile, split_suffix
from curate.ingest.formats import detect_format
from curate.ingest.readers import Payload, iter_file, iter_rows
from curate.ingest.remote import RemoteFile
from curate.ingest.spans import Cut

_DETECT_LOOKAHEAD = 50


def display_path(path: InputFile, base: Path) -> str:
    """A file name as the ledger shows it: relative to the config folder when inside it; a URL as is."""
    if isinstance(path, RemoteFile):
        return path.url
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def iter_source_items(src: SourceConfig) -> Iterator[tuple[InputFile | None, bool, Iterator[tuple[int, Payload]]]]:
    """(file, is_text, items) for each input of a source, files in sorted order."""
    if src.data is not None:
        yield None, False, iter_rows(src.data)
        return
    for path in src.files:
        is_text = split_suffix(path)[0] == ".txt"
        yield path, is_text, iter_file(path, src.txt_mode, src.split or None)


def _items_or_cuts(
    src: SourceConfig, cuts: Mapping[InputFile, list[Cut]]
) -> Iterator[tuple[InputFile | None, bool, Iterator[tuple[int, Payload]] | list[Cut]]]:
    """`iter_source_items`, with the batches of the files in `cuts` instead of their items."""
    for path, is_text, items in iter_source_items(src):
        yield (path, is_text, cuts[path]) if path is not None and path in cuts else (path, is_text, items)


def resolve_format(src: SourceConfig, index: int) -> str:
    """The source's record format: as configured, or detected from the first of its first 50 objects
    whose keys fit a format (objects that fit none are quarantined later, one by one)."""
    if src.format != "auto":
        return src.format
    first_unknown: tuple[str, list[str]] | None = None
    for path, is_text, items in iter_source_items(src):
        if is_text:
            return "text"
        for line, payload in itertools.islice(items, _DETECT_LOOKAHEAD):
            obj = payload
            if isinstance(payload, bytes):
                try:
                    obj = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    continue
            if not isinstance(obj, dict):
                continue
            fmt = detect_format(obj, src.text_field)
            if fmt is not None:
                return fmt
            if first_unknown is None:
                first_unknown = (f"{path.name} line {line}" if path else f"record {line}", list(obj))
    if first_unknown is not None:  # no record among the first ones fits a format
        where, keys = first_unknown
        raise ConfigError(
            [
                f"sources[{index}].format: cannot detect the record format of {where} "
                f"(keys: {', '.join(keys[:12])}); set format = 'text', 'alpaca', 'sharegpt', 'messages', "
                "'dolly' or 'prompt_response' with fields = {prompt = ..., response = ...}"
            ]
        )
    return "text"


def spec_for(src: SourceConfig, index: int) -> SourceSpec:
    """The worker-side description of a source (format resolved)."""
    return SourceSpec(src.name, resolve_format(src, index), src.text_field, src.id_field, dict(src.fields))


def _size(payload: Payload) -> int:
    if isinstance(payload, bytes | str):
        return len(payload)
    if isinstance(payload, dict):
        return sum(len(v) for v in payload.values() if isinstance(v, str))
    return 0


def _chunks(items: Iterator[tuple[int, Payload]], max_items: int, max_bytes: int) -> Iterator[list]:
    """Consecutive items, cut at `max_items` or once `max_bytes` of payload is reached."""
    chunk: list = []
    size = 0
    for item in items:
        chunk.append(item)
        size += _size(item[1])
        if len(chunk) >= max_items or size >= max_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def iter_raw_batches(
    sources: list[SourceConfig],
    specs: list[SourceSpec],
    base: Path,
    batch_size: int,
    warnings: list[str],
    batch_bytes: int = 1 << 62,
    cuts: Mapping[InputFile, list[Cut]] | None = None,
) -> Iterator[RawBatch]:
    """Raw batches of every source, in config order, files sorted, items in file order.

    Rows are numbered globally in this order (`_row`), which makes every "first" deterministic. A batch
    holds at most `batch_size` items and ends once it reaches `batch_bytes` of input, so a few huge
    documents do not make one batch that keeps a worker busy while the others idle. An input file
    without a single record adds a line to `warnings`. The files in `cuts` (scanned by workers, see
    `curate.ingest.spans`) become batches that the workers read themselves; the same batches.
    """
    row = 0
    index = 0
    cuts = cuts or {}
    for src, spec in zip(sources, specs, strict=True):
        for path, is_text, items in _items_or_cuts(src, cuts):
            file = display_path(path, base) if path else f"<{src.name} data>"
            if isinstance(items, list):  # cut by a worker's scan: the worker reads each batch
                for cut in items:
                    yield RawBatch(index, spec, file, False, row, [], [], span=(path, cut))
                    row += cut.items
                    index += 1
                if not items:
                    warnings.append(f"{src.name}: {file}: empty file (no records)")
                continue
            last_line = 0
            for chunk in _chunks(items, batch_size, batch_bytes):
                lines = []
                for line, _ in chunk:
                    if line < 0:  # a problem with the file as a whole, found after its last record
                        line = last_line + 1
                    lines.append(line)
                    last_line = max(last_line, line)
                payloads = [payload for _, payload in chunk]
                yield RawBatch(index, spec, file, is_text, row, lines, payloads)
                row += len(chunk)
                index += 1
            if last_line == 0:
                warnings.append(f"{src.name}: {file}: empty file (no records)")
