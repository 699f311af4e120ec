"""`hf`: a `datasets.DatasetDict` (`train`, and `validation` with a validation split) saved with
`save_to_disk` under `hf/`, loadable with `datasets.load_from_disk("OUT/hf")`.

Built after every shard is written, from the Parquet shards (or, without the `parquet` format, from
scratch Parquet copies of the shards, removed afterwards) with `Dataset.from_parquet`, which streams
record batches into Arrow files: the mixture is never held in memory. Columns are the record shards'
(rendered `text` when `[output] render` names a template).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from curate.formats.common import Shard

FOLDER = "hf"
SCRATCH = ".hf-parts"


def write(shard: Shard, out: Path) -> None:
    """Keep a Parquet copy of the (rendered) shard for `finish` unless Parquet shards are written anyway."""
    if "parquet" in shard.output.formats:
        return
    folder = out / SCRATCH / shard.split
    folder.mkdir(parents=True, exist_ok=True)
    shard.rendered().write_parquet(folder / f"{shard.stem}.parquet")


def tree_sha256(folder: Path) -> str:
    """SHA-256 over the names and bytes of a dataset folder's Arrow data files, in name order."""
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.arrow")):
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _stable_fingerprint(folder: Path) -> None:
    """`datasets` fingerprints a dataset built from files by their (temporary) paths; replace it by a
    hash of the Arrow data, so the same records give byte-identical output."""
    state_path = folder / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8"))
    state["_fingerprint"] = tree_sha256(folder)[:16]
    state_path.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")


def _release_freed_memory() -> None:
    """Hand memory freed by the shard loop back to the OS before `datasets` maps the Arrow files (glibc
    keeps freed heap otherwise, and the process's RSS would be the loop's high-water mark plus this)."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def finish(out: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Build and save the DatasetDict; return one manifest row per split (path = `hf/<split>`)."""
    import datasets

    _release_freed_memory()
    from datasets import utils as hf_tqdm

    splits: dict[str, list[str]] = {}
    for r in rows:
        if r["format"] == "parquet":
            splits.setdefault(r.get("split", "train"), []).append(str(out / r["path"]))
    scratch = out / SCRATCH
    for folder in sorted(scratch.iterdir()) if scratch.exists() else []:
        splits.setdefault(folder.name, []).extend(str(p) for p in sorted(folder.glob("*.parquet")))
    if not splits:
        return []
    cache = out / ".hf-cache"
    bars_were_off = hf_tqdm.are_progress_bars_disabled()
    hf_tqdm.disable_progress_bars()
    try:
        parts = {
            split: datasets.Dataset.from_parquet(files, cache_dir=str(cache), split=split)
            for split, files in splits.items()
        }
        datasets.DatasetDict(parts).save_to_disk(str(out / FOLDER))
    finally:
        if not bars_were_off:
            hf_tqdm.enable_progress_bars()
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    found = []
    for split, ds in parts.items():
        tokens = pc.sum(ds.data.column("n_tokens")).as_py() or 0
        path = out / FOLDER / split
        _stable_fingerprint(path)
        found.append(
            {
                "path": f"{FOLDER}/{split}",
                "format": "hf",
                "split": split,
                "records": ds.num_rows,
                "tokens": int(tokens),
                "sha256": tree_sha256(path),
            }
        )
    return found


def read_back(path: Path) -> tuple[int, int]:
    """(records, tokens = sum of n_tokens) of one saved split, loaded with `datasets.load_from_disk`."""
    import datasets

    ds = datasets.load_from_disk(str(path))
    return ds.num_rows, int(pc.sum(ds.data.column("n_tokens")).as_py() or 0)
