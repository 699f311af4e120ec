"""`megatron`: Megatron-LM / NeMo indexed datasets, one `.bin` + `.idx` pair per shard.

Layout of `megatron/<split>-<n>.idx`, as written and read by megatron-core's
`megatron/core/datasets/indexed_dataset.py` (`_IndexWriter` / `_IndexReader`), all little-endian:
the header `MMIDIDX\\x00\\x00` (9 bytes), version (uint64, 1), dtype code (uint8: 8 = uint16, 4 = int32),
sequence count (uint64), document count (uint64, documents + 1), sequence lengths (int32 each),
sequence pointers (int64 byte offsets into the `.bin`), document indices (int64: 0, then the end
sequence of each document). No modes (not multimodal). One sequence per document. The `.bin` holds
the tokens; dtype uint16 where the vocabulary size is below 65500, else int32, as Megatron chooses
(`DType.optimal_dtype`). Each document ends with the encoding's end-of-text token.

`megatron/data_path.txt` (and `valid_data_path.txt` with a validation split) holds the blend for
`--data-path` / `--train-data-path` / `--valid-data-path`: "weight prefix" pairs, weights = the
shard's share of the split's tokens, prefixes relative to the output folder.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from curate.formats.common import Shard, sha256_file

HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}
FOLDER = "megatron"
DATA_PATH_FILES = {"train": "data_path.txt", "validation": "valid_data_path.txt"}


def megatron_dtype(n_vocab: int) -> np.dtype:
    """uint16 where the vocabulary size is below 65500, else int32 (megatron-core's optimal_dtype)."""
    return np.dtype(np.uint16) if n_vocab < 65500 else np.dtype(np.int32)


def index_bytes(lengths: np.ndarray, dtype: np.dtype) -> bytes:
    """The `.idx` file for documents of these token lengths (one sequence per document)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    pointers = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1] * dtype.itemsize, out=pointers[1:])
    documents = np.arange(len(lengths) + 1, dtype=np.int64)
    return b"".join(
        [
            HEADER,
            struct.pack("<Q", 1),
            struct.pack("<B", DTYPE_CODES[dtype]),
            struct.pack("<Q", len(lengths)),
            struct.pack("<Q", len(documents)),
            lengths.astype("<i4").tobytes(),
            pointers.astype("<i8").tobytes(),
            documents.astype("<i8").tobytes(),
        ]
    )


def write(shard: Shard, out: Path) -> dict[str, Any]:
    """Write `megatron/<stem>.bin` and `.idx`; return the manifest row (path = the `.bin`)."""
    tok = shard.tokenized()
    dtype = megatron_dtype(tok.n_vocab)
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    data, index = folder / f"{shard.stem}.bin", folder / f"{shard.stem}.idx"
    tok.tokens.astype(dtype.newbyteorder("<"), copy=False).tofile(data)
    index.write_bytes(index_bytes(np.diff(tok.offsets), dtype))
    return {
        "path": f"{FOLDER}/{data.name}",
        "records": tok.documents,
        "tokens": int(tok.offsets[-1]),
        "sha256": sha256_file(data),
        "files": {f"{FOLDER}/{index.name}": sha256_file(index)},
        "encoding": tok.encoding,
        "eod_token": tok.eod,
        "dtype": dtype.name,
    }


def read_index(path: Path) -> dict[str, Any]:
    """Parse an `.idx` file field by field (a reader written from megatron-core's layout)."""
    raw = path.read_bytes()
    if raw[:9] != HEADER:
        raise ValueError(f"{path.name}: not a Megatron index (header {raw[:9]!r})")
    version, code, sequences, documents = struct.unpack_from("<QBQQ", raw, 9)
    if version != 1 or code not in CODE_DTYPES:
        raise ValueError(f"{path.name}: version {version}, dtype code {code} not supported")
    at = 9 + 8 + 1 + 8 + 8
    need = at + sequences * 12 + documents * 8
    if len(raw) != need:
        raise ValueError(f"{path.name}: {len(raw)} bytes, the header announces {need} (truncated?)")
    lengths = np.frombuffer(raw, dtype="<i4", count=sequences, offset=at)
    pointers = np.frombuffer(raw, dtype="<i8", count=sequences, offset=at + sequences * 4)
    doc_index = np.frombuffer(raw, dtype="<i8", count=documents, offset=at + sequences * 12)
    return {"dtype": CODE_DTYPES[code], "lengths": lengths, "pointers": pointers, "documents": doc_index}


def read_back(path: Path) -> tuple[int, int]:
    """(documents, tokens) of the shard whose `.bin` is `path`, checked against the `.bin`'s size."""
    index = read_index(path.with_suffix(".idx"))
    tokens = int(index["lengths"].sum())
    if path.stat().st_size != tokens * index["dtype"].itemsize:
        raise ValueError(f"{path.name}: {path.stat().st_size} bytes, the index announces {tokens} tokens")
    return len(index["documents"]) - 1, tokens


def finish(out: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the `--data-path` blend per split; return it for the manifest."""
    blends: dict[str, str] = {}
    for split, name in DATA_PATH_FILES.items():
        mine = [r for r in rows if r["format"] == "megatron" and r.get("split", "train") == split]
        total = sum(r["tokens"] for r in mine)
        if not mine or not total:
            continue
        blend = " ".join(f"{r['tokens'] / total:.8g} {r['path'].removesuffix('.bin')}" for r in mine)
        (out / FOLDER / name).write_text(blend + "\n", encoding="utf-8")
        blends[split] = blend
    return {"data_path": blends} if blends else {}
