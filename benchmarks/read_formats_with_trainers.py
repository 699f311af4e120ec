"""Read a curate output's `megatron` and `mds` shards with the trainers' own readers.

megatron-core's `IndexedDataset` and mosaicml-streaming's `StreamingDataset` need torch, which curate
does not depend on; install them in a throwaway venv (git-ignored) and run this script with it:

    python -m venv benchmarks/out/.venv-readers
    benchmarks/out/.venv-readers/bin/pip install torch megatron-core mosaicml-streaming
    .venv/bin/curate build CONFIG            # with formats = [..., "megatron", "mds"]
    benchmarks/out/.venv-readers/bin/python benchmarks/read_formats_with_trainers.py OUT

Checks, per shard, that the readers see the manifest's documents and tokens, and that document i of
the Megatron shard has the same tokens as sample i of the MDS shard (same order in both formats).
Needs only the standard library, numpy and the two readers (curate need not be importable).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


def main(out: Path) -> int:
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from streaming import StreamingDataset

    manifest = json.loads((out / "manifest.json").read_text())
    rows = manifest["shards"]
    megatron = [r for r in rows if r["format"] == "megatron"]
    mds = [r for r in rows if r["format"] == "mds"]
    problems = 0
    megatron_docs: list[np.ndarray] = []
    for row in megatron:
        ds = IndexedDataset(str(out / row["path"]).removesuffix(".bin"))
        docs = [np.array(ds[i]) for i in range(len(ds))]  # copies: the reader unmaps its file when freed
        tokens = sum(len(d) for d in docs)
        ok = len(ds) == row["records"] and tokens == row["tokens"]
        problems += not ok
        print(
            f"megatron-core IndexedDataset {row['path']}: {len(ds)} documents, {tokens} tokens, dtype "
            f"{ds.index.dtype.__name__}; manifest {row['records']}/{row['tokens']}: {'OK' if ok else 'DIFFERS'}"
        )
        if row.get("split", "train") == "train":
            megatron_docs += docs
    for split in sorted({r.get("split", "train") for r in mds}):
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / split
            shutil.copytree(out / "mds" / split, local)
            ds = StreamingDataset(local=str(local), shuffle=False, batch_size=1)
            # copy: the samples' arrays point into the reader's memory, gone with the temporary folder
            samples = [
                {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in ds[i].items()}
                for i in range(ds.num_samples)
            ]
            del ds
        want = [r for r in mds if r.get("split", "train") == split]
        tokens = sum(len(s["tokens"]) for s in samples)
        ok = len(samples) == sum(r["records"] for r in want) and tokens == sum(r["tokens"] for r in want)
        problems += not ok
        print(
            f"streaming StreamingDataset mds/{split}: {len(samples)} samples, {tokens} tokens, columns "
            f"{sorted(samples[0]) if samples else []}; manifest {'OK' if ok else 'DIFFERS'}"
        )
        if split == "train" and megatron_docs:
            same = len(samples) == len(megatron_docs) and all(
                np.array_equal(s["tokens"], d) for s, d in zip(samples, megatron_docs, strict=False)
            )
            problems += not same
            print(f"  document order: MDS sample i == Megatron document i for all {len(samples)}: {same}")
    print("all readers agree with manifest.json" if not problems else f"{problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
