"""The canonical record: one schema for pretraining documents and instruction/chat examples.

Defined once here; `schemas/record.schema.json` is generated from `record_json_schema()` (run
`python -m curate.schema`), and a test fails when the two drift apart.

Columns whose names start with `_` are internal bookkeeping (row ordinal, input file and line); they
feed the ledger and are never written to output shards.
"""

from __future__ import annotations

from typing import Any

import polars as pl

KINDS = ("pretrain", "instruction")
ROLES = ("system", "user", "assistant")

MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})

#: Public columns, in output order, with their polars type and their documentation.
RECORD_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "id": (
        pl.String(),
        "Stable id: the source's own id field if configured, else a hash of source and content.",
    ),
    "source": (pl.String(), "Name of the configured source the record came from."),
    "kind": (
        pl.String(),
        "'pretrain' (a document in `text`) or 'instruction' (a conversation in `messages`).",
    ),
    "text": (
        pl.String(),
        "The document text (pretrain records); for instruction records null, or the rendered conversation in "
        "shards written with a chat template (`[output] render`).",
    ),
    "messages": (
        pl.List(MESSAGE),
        "The conversation (instruction records; null for pretrain, and in shards rendered with a chat "
        "template): a list of {role, content}.",
    ),
    "n_tokens": (pl.Int64(), "Token count of the training text with the pipeline's tiktoken encoding."),
    "meta": (pl.String(), "The source's leftover fields as a JSON object (JSON text in Parquet)."),
}

#: Internal columns carried through the pipeline for the ledger.
INTERNAL_COLUMNS: dict[str, pl.DataType] = {
    "_row": pl.Int64(),  # global input ordinal: source order, then file order, then line order
    "_file": pl.String(),  # input file (relative to the config folder when possible)
    "_line": pl.Int64(),  # 1-based line (JSONL, CSV, TXT) or record number (JSON array, Parquet, HF)
}

RECORD_SCHEMA = pl.Schema({**INTERNAL_COLUMNS, **{name: dtype for name, (dtype, _) in RECORD_COLUMNS.items()}})


def empty_records() -> pl.DataFrame:
    """An empty frame with the canonical schema."""
    return pl.DataFrame(schema=RECORD_SCHEMA)


def training_text() -> pl.Expr:
    """Expression for the text a record trains on: `text`, or the message contents joined by newlines.

    This is what `n_tokens` counts and what content hashes are computed from. Chat templates are applied
    only when a mixture is rendered for a trainer, so counts do not depend on one template.
    """
    contents = pl.col("messages").list.eval(pl.element().struct.field("content")).list.join("\n")
    return pl.when(pl.col("kind") == "pretrain").then(pl.col("text")).otherwise(contents)


def public_columns(df: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """The columns of a frame that are written to output (no internal `_` columns)."""
    names = df.collect_schema().names() if isinstance(df, pl.LazyFrame) else df.columns
    return [c for c in names if not c.startswith("_")]


def record_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one output record, as written to JSONL shards."""
    message = {
        "type": "object",
        "properties": {"role": {"enum": list(ROLES)}, "content": {"type": "string"}},
        "required": ["role", "content"],
        "additionalProperties": False,
    }
    props: dict[str, Any] = {
        "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "pattern": "^[a-z0-9_-]+$"},
        "kind": {"enum": list(KINDS)},
        "text": {"type": ["string", "null"]},
        "messages": {"anyOf": [{"type": "array", "items": message, "minItems": 1}, {"type": "null"}]},
        "n_tokens": {"type": "integer", "minimum": 0},
        "meta": {"type": "object"},
    }
    for name, (_, doc) in RECORD_COLUMNS.items():
        props[name]["description"] = doc
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/curate/curate/schemas/record.schema.json",
        "title": "curate record",
        "description": "One record of a curate shard. Stages add further columns (e.g. lang, lang_score).",
        "type": "object",
        "properties": props,
        "required": list(RECORD_COLUMNS),
        "additionalProperties": True,
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": "pretrain"}}},
                "then": {"properties": {"text": {"type": "string", "minLength": 1}, "messages": {"type": "null"}}},
            },
            {  # a conversation, or (with `[output] render = "chatml"` etc.) its rendered text
                "if": {"properties": {"kind": {"const": "instruction"}}},
                "then": {
                    "oneOf": [
                        {"properties": {"text": {"type": "null"}, "messages": {"type": "array"}}},
                        {"properties": {"text": {"type": "string", "minLength": 1}, "messages": {"type": "null"}}},
                    ]
                },
            },
        ],
    }
