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
from types import SimpleNamespace

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
    if megatron:
        problems += not gpt_blend(out, manifest)
    print("all readers agree with manifest.json" if not problems else f"{problems} problem(s)")
    return 1 if problems else 0


def gpt_blend(out: Path, manifest: dict) -> bool:
    """Build Megatron's GPTDataset blend from `megatron/data_path.txt`, as `--data-path` would."""
    import os

    import torch
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.utils import get_blend_from_list

    if not torch.distributed.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
        torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    words = (out / "megatron" / "data_path.txt").read_text().split()
    blend = [w if i % 2 == 0 else str(out / w) for i, w in enumerate(words)]  # prefixes are relative to OUT
    eod = next(r["eod_token"] for r in manifest["shards"] if r["format"] == "megatron")
    # GPTDataset reads only these tokenizer attributes
    tokenizer = SimpleNamespace(
        unique_identifiers={"encoding": manifest.get("tokenizer", "")}, eod=eod, pad=eod, vocab_size=1 << 20
    )
    with tempfile.TemporaryDirectory() as cache:
        config = GPTDatasetConfig(
            random_seed=1,
            sequence_length=256,
            blend=get_blend_from_list(blend),
            split="100,0,0",
            tokenizer=tokenizer,
            reset_position_ids=False,
            reset_attention_mask=False,
            eod_mask_loss=False,
            path_to_cache=cache,
        )
        train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [20, 0, 0], lambda: True, config).build()
        sample = train[0]
    ok = len(train) >= 20 and tuple(sample["tokens"].shape) == (256,)
    print(
        f"megatron-core GPTDataset blend from data_path.txt ({len(words) // 2} prefixes): {type(train).__name__} "
        f"of {len(train)} samples of 256 tokens: {'OK' if ok else 'DIFFERS'}"
    )
    return ok


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
