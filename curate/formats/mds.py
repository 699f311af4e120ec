"""`mds`: Mosaic streaming datasets (`mds/<split>/index.json` + `shard.NNNNN.mds`) for LLM Foundry.

Written from mosaicml/streaming's `MDSWriter` (streaming/base/format/mds/writer.py and encodings.py),
one MDS shard per curate shard. A shard file: sample count (uint32), sample offsets (uint32, count + 1,
from the file start), the shard's config as JSON, then the samples. A sample: the byte size of each
variable-size column (uint32 each) followed by the column values, columns in name order. Encodings:
`str` is UTF-8; `ndarray:<dtype>` is one byte `ndim << 2 | shape dtype code`, the shape, then the
values. `index.json`: `{"shards": [...], "version": 2}`, each shard with column_encodings/names/sizes,
compression, format, hashes, raw_data {basename, bytes, hashes}, samples, size_limit, version, zip_data.

Columns: `text` (str: the rendered text, which LLM Foundry's `StreamingTextDataset` tokenizes with the
model's tokenizer), `tokens` (ndarray, the pipeline encoding's tokens with the end-of-text token; LLM
Foundry reads a `tokens` column when a sample has no `text`), `loss_mask` (ndarray:uint8, 1 = training
target), `id` and `source` (str).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import FatalError
from curate.formats.common import Shard, sha256_file, token_dtype

FOLDER = "mds"
_SHAPE_DTYPES = {0: np.dtype(np.uint8), 1: np.dtype(np.uint16), 2: np.dtype(np.uint32), 3: np.dtype(np.uint64)}


def columns(dtype: str) -> dict[str, str]:
    """MDS column encodings by name, for a token dtype."""
    return {"id": "str", "loss_mask": "ndarray:uint8", "source": "str", "text": "str", "tokens": f"ndarray:{dtype}"}


def shard_config(dtype: str) -> dict[str, Any]:
    """The writer config stored in each shard and in its index entry (MDSWriter.get_config)."""
    cols = columns(dtype)
    names = sorted(cols)
    return {
        "column_encodings": [cols[n] for n in names],
        "column_names": names,
        "column_sizes": [None] * len(names),
        "compression": None,
        "format": "mds",
        "hashes": [],
        "size_limit": None,
        "version": 2,
    }


def _ndarray(values: np.ndarray) -> bytes:
    """MDS `ndarray:<dtype>` value (static dtype, dynamic shape) of a 1-d array."""
    n = len(values)
    code = 0 if n < 1 << 8 else 1 if n < 1 << 16 else 2 if n < 1 << 32 else 3
    return (
        bytes([(1 << 2) | code])
        + np.array([n], dtype=_SHAPE_DTYPES[code].newbyteorder("<")).tobytes()
        + values.tobytes()
    )


def write(shard: Shard, out: Path) -> dict[str, Any]:
    """Write `mds/<split>/shard.<number>.mds`; return the manifest row (index.json comes in `finish`)."""
    tok = shard.tokenized()
    dtype = token_dtype(tok.n_vocab).newbyteorder("<")
    config = shard_config(dtype.name)
    config_data = json.dumps(config, sort_keys=True).encode("utf-8")
    tokens = tok.tokens.astype(dtype, copy=False)
    samples = []
    rows = zip(shard.records["id"].to_list(), shard.records["source"].to_list(), tok.texts, strict=True)
    for i, (rid, source, text) in enumerate(rows):
        a, b = int(tok.offsets[i]), int(tok.offsets[i + 1])
        values = {
            "id": rid.encode("utf-8"),
            "loss_mask": _ndarray(tok.mask[a:b]),
            "source": source.encode("utf-8"),
            "text": text.encode("utf-8"),
            "tokens": _ndarray(tokens[a:b]),
        }
        body = [values[n] for n in config["column_names"]]
        samples.append(np.array([len(v) for v in body], dtype="<u4").tobytes() + b"".join(body))
    sizes = np.array([0] + [len(s) for s in samples], dtype=np.int64).cumsum()
    sizes += 4 + 4 * (len(samples) + 1) + len(config_data)
    if sizes[-1] >= 1 << 32:
        raise FatalError(
            f"mds shard {shard.stem} would be {sizes[-1]:,} bytes; MDS offsets are 32-bit: lower "
            "output.shard_max_records or set output.shard_max_tokens"
        )
    folder = out / FOLDER / shard.split
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"shard.{shard.number:05d}.mds"
    with open(path, "wb") as f:
        f.write(struct.pack("<I", len(samples)))
        f.write(sizes.astype("<u4").tobytes())
        f.write(config_data)
        for sample in samples:
            f.write(sample)
    return {
        "path": f"{FOLDER}/{shard.split}/{path.name}",
        "records": tok.documents,
        "tokens": int(tok.offsets[-1]),
        "sha256": sha256_file(path),
        "encoding": tok.encoding,
        "dtype": dtype.name,
    }


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Decode every sample of an MDS shard (a reader written from the format description)."""
    raw = path.read_bytes()
    (count,) = struct.unpack_from("<I", raw, 0)
    offsets = np.frombuffer(raw, dtype="<u4", count=count + 1, offset=4)
    if int(offsets[-1]) != len(raw):
        raise ValueError(f"{path.name}: {len(raw)} bytes, offsets end at {int(offsets[-1])} (truncated?)")
    config = json.loads(raw[4 + 4 * (count + 1) : int(offsets[0])])
    names, encodings = config["column_names"], config["column_encodings"]
    samples = []
    for i in range(count):
        data = raw[int(offsets[i]) : int(offsets[i + 1])]
        sizes = np.frombuffer(data, dtype="<u4", count=len(names))
        at = 4 * len(names)
        sample = {}
        for name, encoding, size in zip(names, encodings, sizes.tolist(), strict=True):
            sample[name] = _decode(encoding, data[at : at + size])
            at += size
        samples.append(sample)
    return samples


def _decode(encoding: str, data: bytes) -> Any:
    if encoding == "str":
        return data.decode("utf-8")
    if encoding.startswith("ndarray:"):
        head = data[0]
        ndim, shape_dtype = head >> 2, _SHAPE_DTYPES[head & 3]
        shape = np.frombuffer(data, dtype=shape_dtype.newbyteorder("<"), count=ndim, offset=1)
        start = 1 + ndim * shape_dtype.itemsize
        return np.frombuffer(data[start:], dtype=np.dtype(encoding.split(":")[1]).newbyteorder("<")).reshape(shape)
    raise ValueError(f"MDS encoding {encoding!r} is not one curate writes")


def read_back(path: Path) -> tuple[int, int]:
    """(samples, tokens) of one MDS shard."""
    samples = read_samples(path)
    return len(samples), sum(len(s["tokens"]) for s in samples)


def finish(out: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Write `index.json` for each split's MDS shards; return their paths for the manifest."""
    indexes: dict[str, str] = {}
    for split in dict.fromkeys(r.get("split", "train") for r in rows if r["format"] == "mds"):
        mine = [r for r in rows if r["format"] == "mds" and r.get("split", "train") == split]
        shards = []
        for r in sorted(mine, key=lambda r: r["path"]):
            path = out / r["path"]
            raw = {"basename": path.name, "bytes": path.stat().st_size, "hashes": {}}
            shards.append({**shard_config(r["dtype"]), "raw_data": raw, "samples": r["records"], "zip_data": None})
        index = out / FOLDER / split / "index.json"
        index.write_text(json.dumps({"shards": shards, "version": 2}, sort_keys=True), encoding="utf-8")
        indexes[split] = f"{FOLDER}/{split}/index.json"
    return {"index": indexes} if indexes else {}
