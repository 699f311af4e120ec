"""Turning a batch of raw items into canonical records (runs in worker processes).

A record that cannot be used becomes a quarantine row (file, line, reason, raw input) instead of
stopping the build.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from curate.errors import RecordError
from curate.ingest.formats import check_conversation, convert
from curate.ingest.readers import Problem
from curate.record import RECORD_SCHEMA

QUARANTINE_SCHEMA = pl.Schema(
    {
        "_row": pl.Int64(),
        "_file": pl.String(),
        "_line": pl.Int64(),
        "source": pl.String(),
        "id": pl.String(),
        "_error": pl.String(),
        "_raw": pl.String(),
    }
)
_RAW_LIMIT = 100_000  # characters of raw input kept in the quarantine file per record


@dataclass(frozen=True)
class SourceSpec:
    """What a worker needs to know about a source to convert its records."""

    name: str
    format: str
    text_field: str = "text"
    id_field: str = ""
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class RawBatch:
    """Consecutive raw items of one input file: their line numbers and payloads, or, with `span`, where
    the worker reads them itself (the file and a `curate.ingest.spans.Cut`; `lines` and `payloads`
    are then empty)."""

    index: int
    source: SourceSpec
    file: str
    is_text: bool  # .txt: bytes payloads are documents, not JSON
    first_row: int
    lines: list[int]
    payloads: list[Any]
    span: tuple[Any, Any] | None = None


def _decode_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise RecordError(f"invalid_utf8: byte {uexc.start} is not valid UTF-8 ({uexc.reason})") from None
        raise RecordError(f"invalid_json: {exc}") from None


def _raw_text(payload: Any) -> str:
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "backslashreplace")[:_RAW_LIMIT]
    if isinstance(payload, Problem):
        return payload.raw[:_RAW_LIMIT]
    try:
        return orjson.dumps(payload, default=str).decode()[:_RAW_LIMIT]
    except TypeError:
        return repr(payload)[:_RAW_LIMIT]


def record_id(source: str, kind: str, content: bytes, meta: bytes) -> str:
    """Content hash id: 16 hex digits of BLAKE2b over source name, kind, content (the text or the messages
    as JSON) and meta."""
    h = hashlib.blake2b(digest_size=8)
    h.update(source.encode())
    h.update(b"\x1e" + kind.encode() + b"\x1e")
    h.update(content)
    h.update(b"\x1e" + meta)
    return h.hexdigest()


def _utf8_json(value: Any, **options: Any) -> bytes:
    """`value` as JSON; a string that cannot be UTF-8 (a lone surrogate, which JSON escapes such as
    `"\\ud800"` decode to) makes the record a RecordError instead of failing the batch later."""
    try:
        return orjson.dumps(value, **options)
    except TypeError as exc:
        raise RecordError(f"invalid_utf8: the record holds a string that is not valid UTF-8 ({exc})") from None


def _to_record(payload: Any, spec: SourceSpec, is_text: bool) -> tuple:
    if isinstance(payload, Problem):
        raise RecordError(payload.reason)
    if is_text:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(f"invalid_utf8: byte {exc.start} is not valid UTF-8 ({exc.reason})") from None
        kind, messages, meta = "pretrain", None, {}
        obj: dict[str, Any] = {}
    else:
        obj = _decode_json(payload) if isinstance(payload, bytes) else payload
        if not isinstance(obj, dict):
            raise RecordError(f"not_an_object: the line holds a JSON {type(obj).__name__}, expected an object")
        kind, text, messages, meta = convert(obj, spec.format, {"text_field": spec.text_field, "fields": spec.fields})
    if kind == "pretrain" and not (text or "").strip():
        raise RecordError("empty_text: the document is empty")
    if kind == "instruction":
        check_conversation(messages)
    content = _utf8_json(text if kind == "pretrain" else messages)
    meta_json = _utf8_json(meta, default=str, option=orjson.OPT_NON_STR_KEYS)
    if spec.id_field:
        if obj.get(spec.id_field) in (None, ""):
            raise RecordError(f"missing_field: id field {spec.id_field!r} is missing or empty")
        rid = str(obj[spec.id_field])
        _utf8_json(rid)  # an id is stored as UTF-8 too
    else:
        rid = record_id(spec.name, kind, content, meta_json)
    return rid, kind, text, messages, meta_json.decode()


def _quarantine_id(payload: Any, batch: RawBatch) -> str | None:
    """The id of a record that failed conversion, when the source names an id field and the item is
    an object that has it (so the ledger can name the record); None otherwise."""
    field = batch.source.id_field
    if not field or batch.is_text or isinstance(payload, Problem):
        return None
    try:
        obj = _decode_json(payload) if isinstance(payload, bytes) else payload
    except RecordError:
        return None  # not JSON: the quarantine row's file and line name it
    value = obj.get(field) if isinstance(obj, dict) else None
    # a lone surrogate (not UTF-8, so not storable) is written as its escape
    return None if value in (None, "") else str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def convert_batch(batch: RawBatch) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Canonical records of a raw batch, and the quarantine rows of items that failed."""
    cols: dict[str, list] = {name: [] for name in RECORD_SCHEMA.names()}
    bad: dict[str, list] = {name: [] for name in QUARANTINE_SCHEMA.names()}
    for offset, (line, payload) in enumerate(zip(batch.lines, batch.payloads, strict=True)):
        row = batch.first_row + offset
        try:
            rid, kind, text, messages, meta = _to_record(payload, batch.source, batch.is_text)
        except RecordError as exc:
            for key, value in zip(
                bad,
                (
                    row,
                    batch.file,
                    line,
                    batch.source.name,
                    _quarantine_id(payload, batch),
                    str(exc),
                    _raw_text(payload),
                ),
                strict=True,
            ):
                bad[key].append(value)
            continue
        values = (row, batch.file, line, rid, batch.source.name, kind, text, messages, None, meta)
        for key, value in zip(cols, values, strict=True):
            cols[key].append(value)
    return pl.DataFrame(cols, schema=RECORD_SCHEMA), pl.DataFrame(bad, schema=QUARANTINE_SCHEMA)
