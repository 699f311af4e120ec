"""Reading configured sources: format detection and raw batches in a deterministic order."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson

from curate.config import SourceConfig
from curate.errors import ConfigError
from curate.ingest.batching import file_batches
from curate.ingest.convert import RawBatch, SourceSpec
from curate.ingest.cut import Cut, input_changed, input_failed
from curate.ingest.files import InputFile, split_suffix
from curate.ingest.formats import detect_format
from curate.ingest.readers import Payload, iter_file, iter_rows
from curate.ingest.remote import RemoteFile
from curate.ingest.spans import read_stamp

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


#: The batches workers cut themselves (see `curate.ingest.spans`), by (source index, file).
Cuts = Mapping[tuple[int, InputFile], list[Cut]]


def _items_or_cuts(
    index: int, src: SourceConfig, cuts: Cuts
) -> Iterator[tuple[InputFile | None, bool, Iterator[tuple[int, Payload]] | list[Cut]]]:
    """`iter_source_items`, with the batches of the files in `cuts` instead of their items."""
    for path, is_text, items in iter_source_items(src):
        found = cuts.get((index, path)) if path is not None else None
        yield path, is_text, (found if found is not None else items)


def resolve_format(src: SourceConfig, index: int) -> str:
    """The source's record format: as configured, or detected from the first of its first 50 objects
    whose keys fit a format (objects that fit none are quarantined later, one by one)."""
    if src.format != "auto":
        return src.format
    first_unknown: tuple[str, list[str]] | None = None
    for path, is_text, items in iter_source_items(src):
        if is_text:
            return "text"
        for line, obj in _head_objects(items, path):
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


def _head_objects(items: Iterator[tuple[int, Payload]], path: InputFile | None) -> Iterator[tuple[int, dict]]:
    """(line, object) of the JSON objects among a file's first items, read as they are asked for; an
    input that cannot be read stops the build with its name (`input_failed`)."""
    try:
        for line, payload in itertools.islice(items, _DETECT_LOOKAHEAD):
            obj = payload
            if isinstance(payload, bytes):
                try:
                    obj = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    continue
            if isinstance(obj, dict):
                yield line, obj
    except OSError as exc:  # only files are read here: data given in memory raises no OSError
        raise input_failed(path or Path("<data>"), exc) from exc


def spec_for(src: SourceConfig, index: int) -> SourceSpec:
    """The worker-side description of a source (format resolved)."""
    return SourceSpec(src.name, resolve_format(src, index), src.text_field, src.id_field, dict(src.fields))


def iter_raw_batches(
    sources: list[SourceConfig],
    specs: list[SourceSpec],
    base: Path,
    batch_size: int,
    warnings: list[str],
    batch_bytes: int = 1 << 62,
    cuts: Cuts | None = None,
) -> Iterator[RawBatch]:
    """Raw batches of every source, in config order, files sorted, items in file order.

    Rows are numbered globally in this order (`_row`), which makes every "first" deterministic. A batch
    holds at most `batch_size` items and ends once it reaches `batch_bytes` of input, so a few huge
    documents do not make one batch that keeps a worker busy while the others idle. An input file
    without a single record adds a line to `warnings`. The files in `cuts` (scanned by workers, see
    `curate.ingest.spans`) become batches that the workers read themselves; the same batches. A file
    read here that changes while it is read (size, modification time; a remote file's version) stops
    the build with a FatalError once it is read, as a scanned one does (`curate.ingest.spans`).
    """
    row = 0
    index = 0
    cuts = {} if cuts is None else cuts  # not `cuts or {}`: the truth of a ScanStream waits for every scan
    for number, (src, spec) in enumerate(zip(sources, specs, strict=True)):
        for path, is_text, items in _items_or_cuts(number, src, cuts):
            file = display_path(path, base) if path else f"<{src.name} data>"
            empty = True
            if isinstance(items, list):  # cut by a worker's scan: the worker reads each batch
                for cut in items:
                    yield RawBatch(index, spec, file, is_text, row, [], [], span=(path, cut))
                    row, index, empty = row + cut.items, index + 1, False
            else:  # read here, as it is read: stamped before and checked after, as a worker's scan is
                try:
                    stamp = read_stamp(path) if path is not None else None
                    for lines, payloads in file_batches(items, batch_size, batch_bytes):
                        yield RawBatch(index, spec, file, is_text, row, lines, payloads)
                        row, index, empty = row + len(lines), index + 1, False
                    if path is not None and read_stamp(path) != stamp:
                        raise input_changed(path)
                except OSError as exc:  # gone since it was listed, or I/O (readers quarantine damage)
                    raise input_failed(path or Path(file), exc) from exc
            if empty:
                warnings.append(f"{src.name}: {file}: empty file (no records)")
