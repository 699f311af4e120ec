"""`tokens`: flat token files for `numpy.memmap` readers (nanoGPT / torchtitan style), per shard.

In `tokens/`: `<stem>.tokens.bin` (every document's tokens back to back, each ending with the
encoding's end-of-text token; uint16 where the vocabulary fits, else uint32), `<stem>.offsets.bin`
(int64, documents + 1: document i is tokens[offsets[i]:offsets[i+1]]), `<stem>.mask.bin` (uint8 per
token: 1 = training target, per `[output] mask`) and `<stem>.json` (dtype, counts, encoding, files).
All little-endian. Read with:

    meta = json.load(open("tokens/train-00000.json"))
    tokens = np.memmap("tokens/train-00000.tokens.bin", dtype=meta["dtype"], mode="r")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from curate.formats.common import Shard, sha256_file, token_dtype

FOLDER = "tokens"


def write(shard: Shard, out: Path) -> dict[str, Any]:
    """Write the shard's token, offsets and mask files and the JSON header; return the manifest row."""
    tok = shard.tokenized()
    dtype = token_dtype(tok.n_vocab)
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / f"{shard.stem}.{kind}.bin" for kind in ("tokens", "offsets", "mask")}
    tok.tokens.astype(dtype.newbyteorder("<"), copy=False).tofile(paths["tokens"])
    tok.offsets.astype("<i8").tofile(paths["offsets"])
    tok.mask.tofile(paths["mask"])
    header = {
        "format": "curate-tokens",
        "version": 1,
        "dtype": dtype.name,
        "byteorder": "little",
        "documents": tok.documents,
        "tokens": int(tok.offsets[-1]),
        "target_tokens": int(tok.mask.sum()),
        "encoding": tok.encoding,
        "eod_token": tok.eod,
        "render": shard.output.render,
        "mask": shard.output.mask,
        "files": {kind: p.name for kind, p in paths.items()},
    }
    meta = folder / f"{shard.stem}.json"
    meta.write_text(json.dumps(header, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return {
        "path": f"{FOLDER}/{paths['tokens'].name}",
        "records": tok.documents,
        "tokens": header["tokens"],
        "sha256": sha256_file(paths["tokens"]),
        "files": {f"{FOLDER}/{p.name}": sha256_file(p) for p in (paths["offsets"], paths["mask"], meta)},
        "encoding": tok.encoding,
        "dtype": dtype.name,
    }


def open_shard(tokens_path: Path) -> tuple[dict[str, Any], np.memmap, np.ndarray, np.memmap]:
    """(header, tokens, offsets, mask) of a shard, by the path of its `.tokens.bin` (memory-mapped)."""
    stem = tokens_path.name.removesuffix(".tokens.bin")
    meta = json.loads((tokens_path.parent / f"{stem}.json").read_text(encoding="utf-8"))
    tokens = np.memmap(tokens_path, dtype=np.dtype(meta["dtype"]).newbyteorder("<"), mode="r")
    offsets = np.fromfile(tokens_path.parent / meta["files"]["offsets"], dtype="<i8")
    mask = np.memmap(tokens_path.parent / meta["files"]["mask"], dtype=np.uint8, mode="r")
    return meta, tokens, offsets, mask


def read_back(path: Path) -> tuple[int, int]:
    """(documents, tokens) of the shard whose `.tokens.bin` is `path`; sizes must agree."""
    meta, tokens, offsets, mask = open_shard(path)
    if len(offsets) != meta["documents"] + 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 1):
        raise ValueError(f"{path.name}: offsets do not describe {meta['documents']} documents")
    if not len(tokens) == len(mask) == offsets[-1] == meta["tokens"]:
        raise ValueError(
            f"{path.name}: {len(tokens)} tokens, {len(mask)} mask bytes, offsets end at {offsets[-1]}, "
            f"header says {meta['tokens']} (truncated?)"
        )
    return meta["documents"], int(offsets[-1])
