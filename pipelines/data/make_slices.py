#!/usr/bin/env python3
"""Regenerate the demo-pipeline data slices in this folder from the shared data folder.

Usage (from the repository root):

    .venv/bin/python pipelines/data/make_slices.py ../shared/data
    .venv/bin/python pipelines/data/make_slices.py /work/shared/data --out pipelines/data

The shared folder is read only by this script, never by the demo pipeline.
Each source file is checked against the sha256 in ``PROVENANCE.jsonl``, so the
slices come out byte-identical on every run (``web.jsonl.zst``: its
*decompressed* bytes are identical; the compressed bytes could differ with
another libzstd version). See LICENSES.md for sources and licenses.

Requires the ``zstandard`` package (in the project's .venv).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from pathlib import Path

import zstandard

# --- slice rules (documented in LICENSES.md) --------------------------------
# Self-Instruct (Apache-2.0): seed tasks, then user-oriented tasks, in file order.
# Every task is {"instruction", "instances": [{"input", "output"}, ...]}; each
# instance becomes one {instruction, input, output} record (the task's
# instruction is repeated for each of its instances). Instances whose output is
# empty or whitespace-only are skipped. Stop at ALPACA_N records.
ALPACA_SRCS = (
    "self_instruct/seed_tasks.jsonl",
    "self_instruct/user_oriented_instructions.jsonl",
)
ALPACA_N = 300

GSM8K_SRC = "gsm8k/train.jsonl"
GSM8K_N = 300  # first 300 lines, byte-identical

WEB_SRC = "web_pretrain_samples/dclm_majority_data.jsonl"
WEB_N = 200  # first 200 lines, byte-identical, then zstd level 10
ZSTD_LEVEL = 10
# If alpaca.json + gsm8k.jsonl + the *uncompressed* web lines exceed this,
# drop the longest web lines (file order is kept) until they fit.
UNCOMPRESSED_BUDGET = 1_500_000

WIKI_SRC = "llamafactory_demo/wiki_demo.txt"
WIKI_MAX_DOCS = 150
# wiki_demo.txt holds one whole Wikipedia article per line (30 lines, ~1 MB).
# Take whole articles in file order while the output stays under this size.
WIKI_MAX_BYTES = 500_000

FLAN_FILES = ("aqua", "creak", "ecqa", "qasc", "sensemaking", "strategyqa")  # not gsm8k: in gsm8k.jsonl already
FLAN_PER_FILE = 50  # first 50 rows of each cot_data/<task>_train.tsv (question, answer, rationale)

IDENTITY_SRC = "llamafactory_demo/identity.json"  # whole file, byte-identical (91 persona answers)

# Keep the whole folder (slices + this script + LICENSES.md) under ~1.5 MB.
DISK_BUDGET = 1_500_000


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_provenance(shared: Path) -> dict[str, dict]:
    prov = {}
    with open(shared / "PROVENANCE.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                prov[rec["file"]] = rec
    return prov


def read_source(shared: Path, rel: str, prov: dict[str, dict]) -> bytes:
    data = (shared / rel).read_bytes()
    rec = prov.get(rel)
    if rec is None:
        print(f"warning: {rel} not in PROVENANCE.jsonl", file=sys.stderr)
    elif sha256(data) != rec["sha256"]:
        sys.exit(f"error: {rel} sha256 {sha256(data)} != PROVENANCE {rec['sha256']}")
    return data


def first_lines(data: bytes, n: int) -> list[bytes]:
    """First n lines, each with its own b'\\n' (byte-identical to the source)."""
    lines = data.splitlines(keepends=True)[:n]
    if len(lines) < n:
        sys.exit(f"error: source has only {len(lines)} lines, need {n}")
    return lines


def iter_alpaca(shared: Path, prov):
    """Yield {instruction, input, output} records: every instance of every task, in file order."""
    for rel in ALPACA_SRCS:
        # split on b"\n" only: str.splitlines() would also split on U+2028 etc. inside strings
        for line in read_source(shared, rel, prov).split(b"\n"):
            if not line.strip():
                continue
            task = json.loads(line.decode("utf-8"))
            for inst in task["instances"]:
                rec = {"instruction": task["instruction"], "input": inst["input"], "output": inst["output"]}
                if not all(isinstance(v, str) for v in rec.values()):
                    sys.exit(f"error: {rel} {task.get('id')}: instruction/input/output must be strings")
                if rec["output"].strip():  # keep non-empty outputs only
                    yield rec


def make_alpaca(shared: Path, out: Path, prov) -> int:
    records = list(itertools.islice(iter_alpaca(shared, prov), ALPACA_N))
    if len(records) < ALPACA_N:
        sys.exit(f"error: sources give only {len(records)} alpaca records, need {ALPACA_N}")
    with open(out / "alpaca.json", "w", encoding="utf-8", newline="\n") as f:
        json.dump(records, f, ensure_ascii=False, indent=1)
    return len(records)


def make_gsm8k(shared: Path, out: Path, prov) -> int:
    lines = first_lines(read_source(shared, GSM8K_SRC, prov), GSM8K_N)
    (out / "gsm8k.jsonl").write_bytes(b"".join(lines))
    return len(lines)


def make_gsm8k_test(shared: Path, out: Path, prov) -> int:
    """The quickstart's evaluation set for `decontaminate`: the first 200 GSM8K test questions."""
    lines = first_lines(read_source(shared, "gsm8k/test.jsonl", prov), 200)
    (out / "gsm8k_test.jsonl").write_bytes(b"".join(lines))
    return len(lines)


def make_web(shared: Path, out: Path, prov) -> int:
    lines = first_lines(read_source(shared, WEB_SRC, prov), WEB_N)
    other = (out / "alpaca.json").stat().st_size + (out / "gsm8k.jsonl").stat().st_size
    keep = list(range(len(lines)))
    while keep and other + sum(len(lines[i]) for i in keep) > UNCOMPRESSED_BUDGET:
        keep.remove(max(keep, key=lambda i: (len(lines[i]), i)))  # drop the longest
    raw = b"".join(lines[i] for i in keep)
    comp = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw)
    assert zstandard.ZstdDecompressor().decompress(comp) == raw
    (out / "web.jsonl.zst").write_bytes(comp)
    return len(keep)


def make_wiki(shared: Path, out: Path, prov) -> int:
    text = read_source(shared, WIKI_SRC, prov).decode("utf-8")
    docs, size = [], 0
    for line in text.split("\n"):
        if not line.strip():
            continue
        add = len(line.encode("utf-8")) + 2  # the document plus its "\n\n"/"\n"
        if len(docs) >= WIKI_MAX_DOCS or size + add > WIKI_MAX_BYTES:
            break
        docs.append(line)
        size += add
    # one article per block, blocks separated by exactly one blank line
    with open(out / "wiki.txt", "w", encoding="utf-8", newline="\n") as f:
        f.write("\n\n".join(docs) + "\n")
    return len(docs)


def make_flan_cot(shared: Path, out: Path, prov) -> int:
    """FLAN chain-of-thought rows as JSON Lines {task, question, answer, rationale, response}, where
    response = "<rationale> So the answer is <answer>." (the answer-after-rationale form of FLAN's CoT
    templates), so the pipeline can read it as prompt = question, response = response."""
    rows = []
    for task in FLAN_FILES:
        data = read_source(shared, f"flan_cot/cot_data/{task}_train.tsv", prov).decode("utf-8")
        lines = [line for line in data.split("\n") if line.strip()][:FLAN_PER_FILE]
        for line in lines:
            question, answer, rationale = line.split("\t")
            response = f"{rationale.strip()} So the answer is {answer.strip()}."
            rows.append({"task": task, "question": question, "answer": answer, "rationale": rationale,
                         "response": response})
    with open(out / "flan_cot.jsonl", "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return len(rows)


def make_identity(shared: Path, out: Path, prov) -> int:
    data = read_source(shared, IDENTITY_SRC, prov)
    (out / "identity.json").write_bytes(data)
    return len(json.loads(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shared_data", type=Path, help="path to the shared data folder (e.g. ../shared/data)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                    help="output folder (default: the folder of this script)")
    args = ap.parse_args()
    shared, out = args.shared_data, args.out
    out.mkdir(parents=True, exist_ok=True)
    prov = load_provenance(shared)

    counts = {
        "alpaca.json": make_alpaca(shared, out, prov),
        "gsm8k.jsonl": make_gsm8k(shared, out, prov),
        "gsm8k_test.jsonl": make_gsm8k_test(shared, out, prov),
        "web.jsonl.zst": make_web(shared, out, prov),
        "wiki.txt": make_wiki(shared, out, prov),
        "flan_cot.jsonl": make_flan_cot(shared, out, prov),
        "identity.json": make_identity(shared, out, prov),
    }
    for name, n in counts.items():
        data = (out / name).read_bytes()
        print(f"{name:15s} {n:4d} records {len(data):9,d} bytes  sha256 {sha256(data)}")
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"folder total   {total:,d} bytes on disk (budget {DISK_BUDGET:,d})")
    if total > DISK_BUDGET:
        sys.exit("error: folder is over budget")


if __name__ == "__main__":
    main()
