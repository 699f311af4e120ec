"""Trainer-ready output formats beside the record shards: `hf`, `megatron`, `tokens`, `mds`.

`FORMATS` maps each name to its module, which provides:

- `write(shard: Shard, out: Path) -> dict | None`: write one shard (called once per shard, in output
  order, by `curate.output.write_shard`) and return its manifest row (`path` relative to the output
  folder, `records`, `tokens`, `sha256` of the file at `path`, and `files`: other files of the shard
  with their sha256), or None when the format is written at the end (`hf`).
- `finish(out: Path, rows: list[dict])`: called once after all shards with every shard row; writes
  what needs all shards (`hf/`, MDS `index.json`, Megatron `data_path.txt`).
- `read_back(path: Path) -> (documents, tokens)`: a manifest row's counts recomputed from the files,
  with `path = out / row["path"]` (the reader for `curate verify`). `RECORD_FORMATS` do the same for
  `jsonl`, `jsonl.zst` and `parquet` shards.

Tokens: record shards and `hf` count `n_tokens` (content tokens, the mixture's unit). The tokenized
formats (`TOKENIZED`: megatron, tokens, mds) count the tokens actually written: the rendered text
(`[output] render`) plus one end-of-document token per record, in the pipeline's tiktoken encoding; so
their totals differ from the manifest's `tokens_out`, and they hold no per-source `n_tokens`.
Document order in every format equals the record shards' order.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from curate.formats import hf, mds, megatron, records, tokenfile
from curate.formats.common import Shard, Tokenized, sha256_file, shard_stem, tokenize

FORMATS: dict[str, ModuleType] = {"hf": hf, "megatron": megatron, "tokens": tokenfile, "mds": mds}
RECORD_FORMATS = ("jsonl", "jsonl.zst", "parquet")
TOKENIZED = ("megatron", "tokens", "mds")

__all__ = [
    "FORMATS",
    "RECORD_FORMATS",
    "TOKENIZED",
    "Shard",
    "Tokenized",
    "finish_formats",
    "read_back",
    "sha256_file",
    "shard_stem",
    "tokenize",
]


def read_back(path: Path, fmt: str) -> tuple[int, int]:
    """(documents, tokens) of one manifest row's file, read back with its format's reader."""
    if fmt in RECORD_FORMATS:
        return records.read_back(path)
    if fmt not in FORMATS:
        raise ValueError(f"no reader for format {fmt!r}")
    return FORMATS[fmt].read_back(path)


def finish_formats(out: Path, formats: list[str], shards: list[dict[str, Any]]) -> dict[str, Any]:
    """After all shards: write what needs every shard; return manifest updates (`shards` with the `hf`
    rows added, and `formats` with the Megatron blends and MDS index paths)."""
    rows = list(shards)
    info: dict[str, Any] = {}
    if "hf" in formats:
        rows += hf.finish(out, rows)
        info["hf"] = {"path": hf.FOLDER, "load": f"datasets.load_from_disk('<output>/{hf.FOLDER}')"}
    if "megatron" in formats:
        info["megatron"] = megatron.finish(out, rows)
    if "mds" in formats:
        info["mds"] = mds.finish(out, rows)
    return {"shards": rows, "formats": info} if info else {"shards": rows}
