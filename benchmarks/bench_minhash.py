"""Benchmark curate's `minhash_dedup` against a plain datasketch loop and datatrove's MinHash pipeline.

    .venv/bin/python benchmarks/bench_minhash.py --records 100000 [--repeats 1] [--big 1000000]

Same input file, same parameters, measured side by side in one run (issue 3, "Performance"):
word 5-grams of lower-cased text (every non-word character a space; a text with fewer than 5 words
is one n-gram of all its words), 128 permutations, threshold 0.8. The LSH bands x rows are what the
measured curate's stage derives for these parameters (asked at start-up; 12 x 10 since curate favours
recall when pairs are verified), and datatrove gets the same; the datasketch loop keeps MinHashLSH's
own choice for threshold 0.8 (9 x 13), as a user of that loop would.

1. Input (deterministic; `benchmarks/_data/minhash-N/`, git-ignored): Alpaca 52k, Code Alpaca (both
   files) and GSM8K train+test from ../shared/data as text records ({"id", "text"}: instruction,
   blank line, input, newline, output; question, newline, answer), plus planted near-duplicate copies
   of random originals (word deletions, insertions, swaps, replacements, aiming at a Jaccard drawn
   uniformly from [0.5, 1]; 5% exact copies) up to N records, shuffled, split into two JSONL files.
   The true Jaccard of every planted pair is computed exactly on the shared shingling.
2. Runs (each a fresh process; wall = process start to exit; peak RSS = whole process tree):
   - `datasketch`: json.loads each line, then per record `MinHash(num_perm=128)` + `update` per
     shingle, `MinHashLSH(threshold=0.8, num_perm=128)` insert of every record, `query` of every
     record, union-find over the query results (connected components). Afterwards (not in its
     timings) the same query edges are verified with `MinHash.jaccard >= 0.8`, giving a second
     clustering that is like-for-like with curate's verified pairs.
   - `curate build --workers 1|2`: a config with one text source (id_field = "id") and only
     `minhash_dedup` (fields = "all", template = false, unit = "word", ngram 5, 128 perms, threshold
     0.8), parquet output, a fresh --work-dir. This is the whole build: reading JSON, token counting
     (always done for the output), the stage, shards, ledger, manifest.
   - `curate stage`: `MinhashDedup(...).apply_with_reasons(df)` on a DataFrame of the same records
     (read with polars before the clock starts): the stage alone, in one process.
   - `datatrove` (its own virtualenv, benchmarks/.venv-datatrove): LocalPipelineExecutor runs of
     JsonlReader + MinhashDedupSignature, MinhashDedupBuckets, MinhashDedupCluster (save_cluster_id),
     JsonlReader + MinhashDedupFilter (load_cluster_ids, removed records to an exclusion writer) +
     JsonlWriter, uncompressed output; MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows),
     default 64-bit xxhash; the word tokenizer is the shared shingling (a WordTokenizer subclass) and
     its text normalization is switched off, so it shingles exactly like the other two.
     tasks=1 for signatures and filter (the cluster step always runs as 1 task; the bucket step
     needs one task per bucket), workers=1; and tasks=2 (one per input file), workers=2. For
     context only (one run each, workers=1): datatrove with MinHashLSH's own 9 x 13 for threshold 0.8
     (the better choice for a pipeline that does not verify pairs), and datatrove as shipped: its
     default TextNormConfig and English word tokenizer (spaCy), a different shingling.
3. Quality: recall of planted pairs with true Jaccard >= 0.85 that end up in one cluster; precision
   = share of co-clustered pairs whose true Jaccard is >= 0.7 (pairs below 0.7 are wrong merges);
   agreement between clusterings (adjusted Rand index, pairwise precision/recall).
4. `--big N`: curate alone (`curate build`, workers 1 and 2) on N records made by cycling the input
   and perturbing each cycled copy (target Jaccard uniform in [0.2, 1]); wall time and peak RSS.

curate is run from a snapshot of HEAD's curate/ (`git archive`, PYTHONPATH; every curate process is
started with `python -P` so the current directory's curate/ does not shadow it) so edits in the working
tree during the run do not change what is measured (`--worktree` runs the working tree instead).
Results: benchmarks/out/minhash/results.json and benchmarks/BENCH_MINHASH.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
SHARED = ROOT.parent / "shared" / "data"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
DATATROVE_VENV = BENCH_DIR / ".venv-datatrove"

GENERATOR_VERSION = 1
NGRAM, NUM_PERM, THRESHOLD = 5, 128, 0.8
SEED = 0
EXACT_SHARE = 0.05
POSITIVE_J, NEGATIVE_J = 0.85, 0.7
MAX_PAIRS_PER_CLUSTER = 2000  # precision: larger clusters are sampled
TARGETS = {"datasketch": 5.0, "datatrove": 2.0, "big_rss_gb": 6.0}

# ---------------------------------------------------------------- the shared shingling (stdlib only)

_NON_WORD = re.compile(r"[^\w⟨⟩]+")


def units(text: str) -> list[str]:
    """Words of the lower-cased text, every run of non-word characters a separator (as curate folds)."""
    return _NON_WORD.sub(" ", text.lower()).split()


def shingles(text: str, n: int = NGRAM) -> list[str]:
    """Word n-grams in order; a text with at most n words is one n-gram of all of them; none if empty."""
    words = units(text)
    if len(words) <= n:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def read_docs(folder: Path) -> tuple[list[str], list[str]]:
    """(ids, texts) of the input files, in file and line order."""
    ids, texts = [], []
    for path in sorted(folder.glob("docs-*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                obj = json.loads(line)
                ids.append(obj["id"])
                texts.append(obj["text"])
    return ids, texts


# ---------------------------------------------------------------- input generation


def load_base() -> list[tuple[str, str]]:
    """(id, text) of the real records: Alpaca 52k, Code Alpaca (both files), GSM8K train + test."""

    def instruction(obj: dict[str, Any]) -> str:
        user = obj["instruction"]
        if (obj.get("input") or "").strip():
            user = f"{user}\n\n{obj['input']}"
        return f"{user}\n{obj['output']}"

    out = []
    alpaca = json.loads((SHARED / "alpaca_52k" / "alpaca_data.json").read_text("utf-8"))
    out += [(f"alpaca-{i:05d}", instruction(o)) for i, o in enumerate(alpaca)]
    for name in ("code_alpaca_2k", "new_codealpaca"):
        items = json.loads((SHARED / "code_alpaca" / f"{name}.json").read_text("utf-8"))
        out += [(f"{name}-{i:05d}", instruction(o)) for i, o in enumerate(items)]
    for split in ("train", "test"):
        lines = (SHARED / "gsm8k" / f"{split}.jsonl").read_text("utf-8").split("\n")
        objs = [json.loads(line) for line in lines if line.strip()]
        out += [(f"gsm8k-{split}-{i:05d}", f"{o['question']}\n{o['answer']}") for i, o in enumerate(objs)]
    return out


def jaccard(a: str, b: str) -> float:
    x, y = set(shingles(a)), set(shingles(b))
    return len(x & y) / len(x | y) if x or y else 1.0


def perturb(text: str, target: float, rng: random.Random, vocab: list[str]) -> str:
    """Word edits (delete, insert, swap with the next, replace) whose count aims at Jaccard `target`.

    An edit changes at most ~NGRAM shingles of S, so k edits give about (S - 5k) / (S + 5k).
    """
    tokens = re.findall(r"\S+\s*", text)
    lead = text[: len(text) - len(text.lstrip())]
    if not tokens or target >= 1.0:
        return text
    total = max(1, len(tokens) - NGRAM + 1)
    edits = max(1, round(total * (1 - target) / (NGRAM * (1 + target))))
    for _ in range(edits):
        op, i = rng.randrange(4), rng.randrange(len(tokens))
        word = rng.choice(vocab)
        if op == 0 and len(tokens) > 1:
            del tokens[i]
        elif op == 1 or len(tokens) == 1:
            tokens.insert(i, word + " ")
        elif op == 2 and i + 1 < len(tokens):
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
        else:
            tail = tokens[i][len(tokens[i].rstrip()) :]
            tokens[i] = word + (tail or " ")
    return (lead + "".join(tokens)).rstrip()


def _write_parts(folder: Path, records: list[tuple[str, str]], parts: int = 2) -> dict[str, Any]:
    info: dict[str, Any] = {"bytes": {}, "sha256": {}}
    size = -(-len(records) // parts)
    for p in range(parts):
        chunk = records[p * size : (p + 1) * size]
        data = "".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in chunk).encode()
        name = f"docs-{p:03d}.jsonl"
        (folder / name).write_bytes(data)
        info["bytes"][name] = len(data)
        info["sha256"][name] = hashlib.sha256(data).hexdigest()
    return info


def _cached(folder: Path, version: int = GENERATOR_VERSION) -> dict[str, Any] | None:
    """inputs.json of a generated folder whose generator version and file sizes still match, else None."""
    stamp = folder / "inputs.json"
    if not stamp.exists():
        return None
    info = json.loads(stamp.read_text())
    ok = info.get("generator_version") == version and all(
        (folder / name).exists() and (folder / name).stat().st_size == size for name, size in info["bytes"].items()
    )
    return info if ok else None


def generate(records: int, data_root: Path) -> dict[str, Any]:
    """The real records plus planted near-duplicates up to `records`, shuffled; truth.json has the pairs."""
    folder = data_root / f"minhash-{records}"
    if info := _cached(folder):
        return info
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(SEED)
    base = load_base()
    if records < len(base) * 4 // 3:  # small runs: a third planted copies of a sample
        base = rng.sample(base, records - records // 3)
    vocab = rng.sample([w for _, t in base[:5000] for w in t.split() if w.isalpha()], 5000)
    planted, truth = [], []
    for j in range(records - len(base)):
        oid, text = base[rng.randrange(len(base))]
        target = 1.0 if rng.random() < EXACT_SHARE else rng.uniform(0.5, 1.0)
        copy = perturb(text, target, rng, vocab)
        cid = f"planted-{j:06d}"
        planted.append((cid, copy))
        truth.append([cid, oid, round(jaccard(text, copy), 4), round(target, 3)])
    everything = base + planted
    rng.shuffle(everything)
    info = {
        "generator_version": GENERATOR_VERSION,
        "records": records,
        "real_records": len(base),
        "planted_copies": len(planted),
        "folder": str(folder),
        **_write_parts(folder, everything),
    }
    (folder / "truth.json").write_text(json.dumps(truth) + "\n")
    (folder / "inputs.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def generate_big(records: int, source: Path, data_root: Path) -> dict[str, Any]:
    """`records` records cycling the input; each cycled copy perturbed towards a Jaccard in [0.2, 1]."""
    folder = data_root / f"minhash-big-{records}"
    if info := _cached(folder):
        return info
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(SEED + 1)
    ids, texts = read_docs(source)
    vocab = rng.sample([w for t in texts[:5000] for w in t.split() if w.isalpha()], 5000)
    out = []
    for k in range(records):
        cycle, i = divmod(k, len(ids))
        if cycle == 0:
            out.append((ids[i], texts[i]))
        else:
            out.append((f"{ids[i]}~{cycle}", perturb(texts[i], rng.uniform(0.2, 1.0), rng, vocab)))
    info = {
        "generator_version": GENERATOR_VERSION,
        "records": records,
        "folder": str(folder),
        **_write_parts(folder, out),
    }
    (folder / "inputs.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def write_config(folder: Path) -> Path:
    text = f"""# Written by benchmarks/bench_minhash.py.
[pipeline]
name = "bench_minhash"
seed = 0
output = "out"

[[sources]]
name = "docs"
path = "docs-*.jsonl"
format = "text"
id_field = "id"

[[stages]]
use = "minhash_dedup"
fields = "all"
template = false
unit = "word"
ngram = {NGRAM}
num_perm = {NUM_PERM}
threshold = {THRESHOLD}

[output]
formats = ["parquet"]
"""
    path = folder / "bench.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- children (each runs in its own process)


def child_datasketch(folder: Path, out: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    from datasketch import MinHash, MinHashLSH

    t_import = time.perf_counter()
    ids, texts = read_docs(folder)
    t_read = time.perf_counter()
    sketches, has = [], []
    for text in texts:
        m = MinHash(num_perm=NUM_PERM)
        grams = shingles(text)
        for s in grams:
            m.update(s.encode("utf-8"))
        sketches.append(m)
        has.append(bool(grams))
    t_minhash = time.perf_counter()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    for i, m in enumerate(sketches):
        if has[i]:
            lsh.insert(i, m)
    t_insert = time.perf_counter()
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    edges = []
    for i, m in enumerate(sketches):
        if has[i]:
            for j in lsh.query(m):
                if j != i:
                    edges.append((i, j))
                    a, b = find(i), find(j)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    labels = [find(i) for i in range(len(texts))]
    t_done = time.perf_counter()
    # Not part of the timed loop: the same edges verified against the estimated Jaccard.
    parent = list(range(len(texts)))
    for i, j in edges:
        if i < j and sketches[i].jaccard(sketches[j]) >= THRESHOLD:
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    verified = [find(i) for i in range(len(texts))]
    t_verify = time.perf_counter()
    out.write_text(json.dumps({"ids": ids, "labels": labels, "labels_verified": verified}))
    return {
        "records": len(texts),
        "seconds": {
            "import": round(t_import - t0, 3),
            "read_json": round(t_read - t_import, 3),
            "shingle_minhash": round(t_minhash - t_read, 3),
            "lsh_insert": round(t_insert - t_minhash, 3),
            "lsh_query_components": round(t_done - t_insert, 3),
            "loop_total": round(t_done - t_read, 3),
            "verify_extra": round(t_verify - t_done, 3),
        },
        "lsh_params": [lsh.b, lsh.r],
        "query_edges": len(edges),
    }


def child_curate_stage(folder: Path, out: Path, profile: Path | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    import polars as pl

    from curate.stages import MinhashDedup

    t_import = time.perf_counter()
    df = pl.concat([pl.read_ndjson(p) for p in sorted(folder.glob("docs-*.jsonl"))])
    df = df.select(
        pl.col("id"),
        pl.lit("docs").alias("source"),
        pl.lit("pretrain").alias("kind"),
        pl.col("text"),
        pl.lit(None, dtype=pl.List(pl.Struct({"role": pl.String, "content": pl.String}))).alias("messages"),
        pl.lit(0, dtype=pl.Int64).alias("n_tokens"),
        pl.lit("{}").alias("meta"),
    )
    stage = MinhashDedup(fields="all", template=False, unit="word", ngram=NGRAM, num_perm=NUM_PERM, threshold=THRESHOLD)
    t_read = time.perf_counter()
    if profile:
        import cProfile

        prof = cProfile.Profile()
        result = prof.runcall(stage.apply_with_reasons, df)
        prof.dump_stats(profile)
    else:
        result = stage.apply_with_reasons(df)
    t_done = time.perf_counter()
    result = result.sort("_row")
    out.write_text(json.dumps({"ids": result["id"].to_list(), "labels": result["dup_cluster"].to_list()}))
    return {
        "records": df.height,
        "seconds": {
            "import": round(t_import - t0, 3),
            "read_frame": round(t_read - t_import, 3),
            "stage": round(t_done - t_read, 3),
        },
        "dropped": int(result["_drop"].is_not_null().sum()),
    }


def child_datatrove(
    folder: Path, work: Path, tasks: int, workers: int, lsh: tuple[int, int], native: bool = False
) -> dict[str, Any]:
    """datatrove's four MinHash steps; `native`: its default text normalization and English word tokenizer
    (spaCy) instead of the shared shingling."""
    t0 = time.perf_counter()
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.text import TextNormConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    class SharedTokenizer(WordTokenizer):
        """The benchmark's shared word split (lower case, non-word characters separate words)."""

        def word_tokenize(self, text: str) -> list[str]:
            return units(text)

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    off = TextNormConfig(
        lowercase=False,
        norm_whitespace=False,
        remove_punctuation=False,
        norm_unicode_diacritics=False,
        norm_numbers=False,
    )
    config = MinhashConfig(
        n_grams=NGRAM,
        num_buckets=lsh[0],
        hashes_per_bucket=lsh[1],
        seed=1,
        norm_config=TextNormConfig() if native else off,
        hash_config=HashConfig(),
    )
    tokenizer = "eng" if native else SharedTokenizer()
    t_import = time.perf_counter()

    def reader() -> JsonlReader:
        return JsonlReader(str(folder), glob_pattern="docs-*.jsonl", text_key="text", id_key="id", compression=None)

    steps = [
        (
            "signatures",
            [reader(), MinhashDedupSignature(str(work / "sigs"), config=config, language=tokenizer)],
            tasks,
        ),
        ("buckets", [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)], lsh[0]),
        (
            "cluster",
            [MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config, save_cluster_id=True)],
            1,
        ),
        (
            "filter",
            [
                reader(),
                MinhashDedupFilter(
                    str(work / "remove"),
                    exclusion_writer=JsonlWriter(str(work / "removed"), compression=None),
                    load_cluster_ids=True,
                ),
                JsonlWriter(str(work / "kept"), compression=None),
            ],
            tasks,
        ),
    ]
    seconds = {"import": round(t_import - t0, 3)}
    for name, pipeline, n_tasks in steps:
        t = time.perf_counter()
        LocalPipelineExecutor(
            pipeline=pipeline, tasks=n_tasks, workers=min(workers, n_tasks), logging_dir=str(work / "logs" / name)
        ).run()
        seconds[name] = round(time.perf_counter() - t, 3)
    seconds["pipeline_total"] = round(time.perf_counter() - t_import, 3)
    return {"seconds": seconds, "tasks": tasks, "workers": workers, "native": native}


# ---------------------------------------------------------------- measuring


def _bench_build():
    """bench_build's process-tree RSS sampler, machine and git helpers (stdlib only)."""
    sys.path.insert(0, str(BENCH_DIR))
    import bench_build

    return bench_build


def run_child(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`bench_build.measure` with an environment: wall, peak tree RSS, largest process RSS, last JSON line."""
    bb = _bench_build()
    saved = dict(os.environ)
    load_before = os.getloadavg()
    try:
        if env:
            os.environ.update(env)
        result = bb.measure(cmd, log)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    stdout = result.pop("stdout").strip().splitlines()
    result["child"] = json.loads(stdout[-1]) if stdout and stdout[-1].startswith("{") else {}
    result["load_before"] = [round(x, 2) for x in load_before]
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def curate_lsh(env: dict[str, str]) -> tuple[int, int]:
    """(bands, rows) the measured curate's stage uses for the benchmark parameters."""
    script = (
        "from curate.stages import MinhashDedup\n"
        f"stage = MinhashDedup(fields='all', template=False, unit='word', ngram={NGRAM}, num_perm={NUM_PERM}, "
        f"threshold={THRESHOLD})\n"
        "print(*[(s.bands, s.rows) for s in stage.steps() if hasattr(s, 'bands')][0])\n"
    )
    done = subprocess.run(
        [str(VENV_PYTHON), "-P", "-c", script], capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    bands, rows = map(int, done.stdout.split())
    return bands, rows


def curate_snapshot(data_root: Path, worktree: bool) -> tuple[dict[str, str], str]:
    """PYTHONPATH env for the curate to measure: HEAD's curate/ exported, or the working tree."""
    if worktree:
        return {}, "working tree"
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    target = data_root / f"curate-src-{commit[:12]}"
    if not (target / "curate" / "__init__.py").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", "curate"], capture_output=True, check=True)
        tar = target / "src.tar"
        tar.write_bytes(archive.stdout)
        with tarfile.open(tar) as tf:
            tf.extractall(target, filter="data")
        tar.unlink()
    return {"PYTHONPATH": str(target)}, f"HEAD {commit} (snapshot {target})"


def run_datasketch(folder: Path, scratch: Path, logs: Path, tag: str) -> dict[str, Any]:
    labels = scratch / f"{tag}.labels.json"
    cmd = [str(VENV_PYTHON), str(Path(__file__).resolve()), "--child", "datasketch", str(folder), str(labels)]
    result = run_child(cmd, logs / f"{tag}.log")
    result["labels_file"] = str(labels)
    return result


def run_stage(folder: Path, scratch: Path, logs: Path, tag: str, env: dict, profile: Path | None = None) -> dict:
    labels = scratch / f"{tag}.labels.json"
    cmd = [str(VENV_PYTHON), str(Path(__file__).resolve()), "--child", "curate-stage", str(folder), str(labels)]
    if profile:
        cmd += ["--profile-to", str(profile)]
    result = run_child(cmd, logs / f"{tag}.log", env)
    result["labels_file"] = str(labels)
    return result


def run_curate(config: Path, workers: int, scratch: Path, logs: Path, tag: str, env: dict, keep: bool) -> dict:
    output, work = scratch / f"{tag}-output", scratch / f"{tag}-work"
    for path in (output, work):
        shutil.rmtree(path, ignore_errors=True)
    cmd = [str(VENV_PYTHON), "-P", "-m", "curate.cli", "build", str(config), "--workers", str(workers)]
    cmd += ["--output", str(output), "--work-dir", str(work), "--no-progress"]
    result = run_child(cmd, logs / f"{tag}.log", env)
    run = json.loads((output / "run.json").read_text())
    manifest = json.loads((output / "manifest.json").read_text())
    result["run_json"] = {k: run[k] for k in ("seconds", "timings", "peak_rss_mb", "peak_rss_children_mb")}
    result["records"] = run["records_in"]
    result["records_out"] = manifest["totals"]["records_out"]
    result["stage_stats"] = manifest.get("stage_stats", {}).get("minhash_dedup", {})
    result["phases"] = pass_phases(work)
    if keep:
        labels = scratch / f"{tag}.labels.json"
        labels.write_text(json.dumps(curate_labels(output)))
        result["labels_file"] = str(labels)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(output, ignore_errors=True)
    return result


def pass_phases(work: Path) -> dict[str, float]:
    """From work-dir file times: the map phase (first to last batch file) and the barrier (last batch file
    to `decisions.parquet`) of the pass that holds `minhash_dedup`'s barrier."""
    for folder in work.glob("pass-*"):
        decisions = folder / "decisions.parquet"
        times = sorted(f.stat().st_mtime for f in folder.glob("batch-*.parquet"))
        if decisions.exists() and times:
            return {
                "batches": len(times),
                "first_to_last_batch": round(times[-1] - times[0], 2),
                "barrier": round(decisions.stat().st_mtime - times[-1], 2),
            }
    return {}


def curate_labels(output: Path) -> dict[str, list]:
    """Cluster id per record id: `dup_cluster` of kept records, the ledger reason's id for dropped ones."""
    import polars as pl

    kept = pl.read_parquet(output / "shards" / "*.parquet", columns=["id", "dup_cluster"])
    ledger = pl.read_parquet(output / "ledger.parquet").filter(pl.col("status") == "dropped")
    dropped = ledger.select("id", pl.col("reason").str.strip_prefix("near_duplicate:").alias("dup_cluster"))
    both = pl.concat([kept, dropped])
    return {"ids": both["id"].to_list(), "labels": both["dup_cluster"].to_list()}


def run_datatrove(
    folder: Path, scratch: Path, logs: Path, tag: str, workers: int, lsh: tuple[int, int], native: bool = False
) -> dict[str, Any]:
    """datatrove with tasks = workers (signature and filter steps; one task per input file at most)."""
    tasks = workers
    work = scratch / f"{tag}-work"
    shutil.rmtree(work, ignore_errors=True)
    python = DATATROVE_VENV / "bin" / "python"
    cmd = [str(python), str(Path(__file__).resolve()), "--child", "datatrove", str(folder), str(work)]
    cmd += ["--tasks", str(tasks), "--workers", str(workers), "--bands", str(lsh[0]), "--rows", str(lsh[1])]
    cmd += ["--native"] if native else []
    result = run_child(cmd, logs / f"{tag}.log")
    ids, labels = [], []
    for sub in ("kept", "removed"):
        for path in sorted((work / sub).glob("*.jsonl")):
            for line in path.read_text("utf-8").split("\n"):  # not splitlines: U+2028 may sit inside a string
                if not line:
                    continue
                doc = json.loads(line)
                ids.append(doc["id"])
                cluster = doc["metadata"].get("minhash_cluster_id", -1)
                labels.append(f"c{cluster}" if cluster != -1 else f"s{doc['id']}")
    labels_file = scratch / f"{tag}.labels.json"
    labels_file.write_text(json.dumps({"ids": ids, "labels": labels}))
    result["labels_file"] = str(labels_file)
    result["records_out"] = sum(
        1 for p in (work / "kept").glob("*.jsonl") for line in p.read_text("utf-8").split("\n") if line
    )
    shutil.rmtree(work, ignore_errors=True)
    return result


# ---------------------------------------------------------------- quality and agreement


def load_labels(path: str, order: dict[str, int]) -> list[int]:
    """Labels as small ints in input order."""
    data = json.loads(Path(path).read_text())
    if len(data["ids"]) != len(order):
        raise SystemExit(f"{path}: {len(data['ids'])} records, expected {len(order)}")
    out = [0] * len(order)
    codes: dict[Any, int] = {}
    for rid, label in zip(data["ids"], data["labels"], strict=True):
        out[order[rid]] = codes.setdefault(label, len(codes))
    return out


def _comb2(x: int) -> int:
    return x * (x - 1) // 2


def agreement(a: list[int], b: list[int]) -> dict[str, float]:
    """Adjusted Rand index and pairwise precision/recall of clustering `a` against reference `b`."""
    from collections import Counter

    cells = Counter(zip(a, b, strict=True))
    both = sum(_comb2(v) for v in cells.values())
    pa = sum(_comb2(v) for v in Counter(a).values())
    pb = sum(_comb2(v) for v in Counter(b).values())
    total = _comb2(len(a))
    expected = pa * pb / total if total else 0.0
    top = (pa + pb) / 2 - expected
    return {
        "adjusted_rand": round((both - expected) / top, 4) if top else 1.0,
        "pairwise_precision": round(both / pa, 4) if pa else 1.0,
        "pairwise_recall": round(both / pb, 4) if pb else 1.0,
        "pairs_a": pa,
        "pairs_b": pb,
        "pairs_both": both,
    }


class Truth:
    """Planted pairs and exact Jaccard of any pair (shingle sets cached)."""

    def __init__(self, folder: Path, ids: list[str], texts: list[str]):
        self.order = {rid: i for i, rid in enumerate(ids)}
        self.texts = texts
        self._sets: dict[int, frozenset] = {}
        families: dict[int, list[int]] = {}
        for cid, oid, _j, _target in json.loads((folder / "truth.json").read_text()):
            families.setdefault(self.order[oid], []).append(self.order[cid])
        self.pairs: list[tuple[int, int, float]] = []  # every pair within a family (original + its copies)
        for orig, copies in families.items():
            members = [orig, *copies]
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    self.pairs.append((members[x], members[y], self.jaccard(members[x], members[y])))

    def jaccard(self, i: int, j: int) -> float:
        x, y = self._set(i), self._set(j)
        return len(x & y) / len(x | y) if x or y else 1.0

    def _set(self, i: int) -> frozenset:
        if i not in self._sets:
            self._sets[i] = frozenset(shingles(self.texts[i]))
        return self._sets[i]

    def evaluate(self, labels: list[int], rng: random.Random) -> dict[str, Any]:
        positives = [(i, j) for i, j, jac in self.pairs if jac >= POSITIVE_J]
        grey = [(i, j) for i, j, jac in self.pairs if THRESHOLD <= jac < POSITIVE_J]
        found = sum(labels[i] == labels[j] for i, j in positives)
        found_grey = sum(labels[i] == labels[j] for i, j in grey)
        clusters: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            clusters.setdefault(label, []).append(i)
        checked = wrong = 0.0
        multi = [m for m in clusters.values() if len(m) > 1]
        for members in multi:
            n_pairs = _comb2(len(members))
            if n_pairs <= MAX_PAIRS_PER_CLUSTER:
                sample = [(members[x], members[y]) for x in range(len(members)) for y in range(x + 1, len(members))]
            else:
                sample = [tuple(rng.sample(members, 2)) for _ in range(MAX_PAIRS_PER_CLUSTER)]
            bad = sum(self.jaccard(i, j) < NEGATIVE_J for i, j in sample)
            checked += n_pairs
            wrong += bad * n_pairs / len(sample)
        return {
            "recall_j_ge_085": round(found / len(positives), 4) if positives else None,
            "positives": len(positives),
            "recall_j_08_085": round(found_grey / len(grey), 4) if grey else None,
            "co_clustered_pairs": int(checked),
            "wrong_pairs_j_lt_07": round(wrong, 1),
            "precision": round(1 - wrong / checked, 4) if checked else 1.0,
            "clusters": len(multi),
            "records_in_clusters": sum(len(m) for m in multi),
            "records_removed": sum(len(m) - 1 for m in multi),
            "largest_cluster": max((len(m) for m in multi), default=1),
        }


def shingling_check(ids: list[str], texts: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run curate's own shingling on every record (child process, measured curate) and compare n-grams."""
    script = (
        "import json,sys,polars as pl\n"
        "from curate.minhash import shingles as s\n"
        "texts=json.load(sys.stdin)\n"
        "df=pl.DataFrame({'t':texts}).with_columns(s.fold(pl.col('t'),False).alias('f'))\n"
        "u=df.select(s.units(pl.col('f'),'word').alias('u')).to_series()\n"
        f"n={NGRAM}\n"
        "g=[[' '.join(w[i:i+n]) for i in range(len(w)-n+1)] if len(w)>=n else ([' '.join(w)] if w else [])"
        " for w in u.to_list()]\n"
        "json.dump(g,sys.stdout)\n"
    )
    done = subprocess.run(
        [str(VENV_PYTHON), "-P", "-c", script],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    theirs = json.loads(done.stdout)
    differ = [i for i, text in enumerate(texts) if shingles(text) != theirs[i]]
    return {
        "records": len(texts),
        "identical": len(texts) - len(differ),
        "differ_examples": [ids[i] for i in differ[:5]],
        "short_records_lt_5_words": sum(len(units(t)) < NGRAM for t in texts),
    }


# ---------------------------------------------------------------- reporting


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("curate", "polars", "numpy", "scipy", "datasketch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "?"
    probe = (
        "import json,importlib.metadata as m;"
        "print(json.dumps({p: m.version(p) for p in ('datatrove','numpy','xxhash','orjson')}))"
    )
    python = DATATROVE_VENV / "bin" / "python"
    if python.exists():
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
        if done.returncode == 0:
            for key, value in json.loads(done.stdout).items():
                out[f"{key} (datatrove venv)" if key != "datatrove" else key] = value
    return out


def median_of(results: list[dict[str, Any]], *path: str) -> float:
    values = []
    for r in results:
        value: Any = r
        for key in path:
            value = value[key]
        values.append(value)
    return round(statistics.median(values), 3)


LABELS = {
    "datasketch": "datasketch loop (MinHash.update per shingle, MinHashLSH insert + query, union-find)",
    "stage": "curate stage only (`MinhashDedup.apply_with_reasons`, in process)",
    "curate_w1": "curate build --workers 1 (whole build)",
    "curate_w2": "curate build --workers 2 (whole build)",
    "datatrove_w1": "datatrove 4 steps, tasks=1 (bucket step: 1 task per band), workers=1",
    "datatrove_w2": "datatrove 4 steps, tasks=2 (bucket step: 1 task per band), workers=2",
    "datatrove_dslsh_w1": "datatrove with MinHashLSH's own bands x rows for 0.8 (9 x 13), tasks=1, workers=1",
    "datatrove_native_w1": "datatrove as shipped (default normalization + spaCy word tokenizer), tasks=1, workers=1",
}


def in_process(name: str, results: list[dict[str, Any]]) -> float:
    """The run's own timing without interpreter start-up and imports (see the report for each)."""
    key = {
        "datasketch": ("child", "seconds", "loop_total"),
        "stage": ("child", "seconds", "stage"),
        "datatrove_w1": ("child", "seconds", "pipeline_total"),
        "datatrove_w2": ("child", "seconds", "pipeline_total"),
        "datatrove_native_w1": ("child", "seconds", "pipeline_total"),
        "datatrove_dslsh_w1": ("child", "seconds", "pipeline_total"),
    }.get(name, ("run_json", "seconds"))
    return median_of(results, *key)


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    rows = {}
    for name, results in runs.items():
        if not results:
            continue
        rows[name] = {
            "runs": len(results),
            "wall_seconds_median": median_of(results, "wall_seconds"),
            "wall_seconds_all": [r["wall_seconds"] for r in results],
            "in_process_seconds_median": in_process(name, results),
            "peak_rss_tree_mb": median_of(results, "peak_rss_tree_mb"),
            "peak_rss_process_mb": median_of(results, "peak_rss_process_mb"),
            "load": [[r["load_before"][0], r["load_after"][0]] for r in results],
        }
    return rows


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def ratio(a: str, b: str, key: str) -> float | None:
        if a in rows and b in rows:
            return round(rows[a][key] / rows[b][key], 2)
        return None

    out = {
        "datasketch_loop_over_stage": ratio("datasketch", "stage", "in_process_seconds_median"),
        "datasketch_wall_over_curate_w1_wall": ratio("datasketch", "curate_w1", "wall_seconds_median"),
        "datasketch_wall_over_stage_wall": ratio("datasketch", "stage", "wall_seconds_median"),
        "datatrove_w1_over_curate_w1_wall": ratio("datatrove_w1", "curate_w1", "wall_seconds_median"),
        "datatrove_w2_over_curate_w2_wall": ratio("datatrove_w2", "curate_w2", "wall_seconds_median"),
        "datatrove_native_w1_over_curate_w1_wall": ratio("datatrove_native_w1", "curate_w1", "wall_seconds_median"),
        "datatrove_dslsh_w1_over_curate_w1_wall": ratio("datatrove_dslsh_w1", "curate_w1", "wall_seconds_median"),
        "datatrove_w1_over_curate_w1_in_process": ratio("datatrove_w1", "curate_w1", "in_process_seconds_median"),
        "datatrove_w2_over_curate_w2_in_process": ratio("datatrove_w2", "curate_w2", "in_process_seconds_median"),
    }
    out["datasketch_target_met"] = (
        out["datasketch_loop_over_stage"] is not None and out["datasketch_loop_over_stage"] >= TARGETS["datasketch"]
    )
    out["datatrove_target_met"] = (
        out["datatrove_w1_over_curate_w1_wall"] is not None
        and out["datatrove_w1_over_curate_w1_wall"] >= TARGETS["datatrove"]
    )
    return out


def profile_build(config: Path, scratch: Path, out: Path, env: dict[str, str]) -> Path:
    """cProfile one `curate build --workers 1` (batches run in the main process, so this is everything)."""
    output, work, prof = scratch / "profile-output", scratch / "profile-work", out / "profile_build_w1.prof"
    cmd = [str(VENV_PYTHON), "-P", "-m", "cProfile", "-o", str(prof), "-m", "curate.cli", "build", str(config)]
    cmd += ["--workers", "1", "--output", str(output), "--work-dir", str(work), "--no-progress"]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env={**os.environ, **env})
    shutil.rmtree(output, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return prof


def profile_table(prof: Path, what: str, top: int = 20) -> str:
    import pstats

    bb = _bench_build()
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    total = max(ct for _, _, _, ct, _ in stats.values())
    lines = [f"cProfile of {what} on the benchmark input: {total:.1f} s", ""]
    for title, column in (("cumulative", 3), ("self", 2)):
        rows = sorted(((v[column], k, v) for k, v in stats.items()), reverse=True)[:top]
        lines += [
            f"top {top} by {title} time:",
            "",
            "| ncalls | self s | cumulative s | function |",
            "|---:|---:|---:|---|",
        ]
        for _, (where, line, func), (_, ncalls, tottime, cumtime, _) in rows:
            lines.append(f"| {ncalls} | {tottime:.2f} | {cumtime:.2f} | `{bb._short(where)}:{line}({func})` |")
        lines.append("")
    return "\n".join(lines)


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown(report: dict[str, Any]) -> str:
    rows, m, r = report["summary"], report["machine"], report["ratios"]
    inputs, git = report["inputs"], report["git"]
    load = report["load_average_1_5_15"]
    bands, band_rows = report["lsh"]
    lines = [
        "# Benchmark: `minhash_dedup` vs datasketch and datatrove",
        "",
        "Generated by `benchmarks/bench_minhash.py` (method in its docstring). Do not edit by hand.",
        "",
        f"- curate measured: {report['curate_measured']}; working tree commit `{git['commit']}`"
        + (" (curate/ had uncommitted changes)" if git["curate_dir_dirty"] else ""),
        f"- machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['memory']} RAM; Python {m['python']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}",
        f"- input: {inputs['records']:,} records ({inputs['real_records']:,} real: Alpaca 52k, Code Alpaca, "
        f"GSM8K train+test; {inputs['planted_copies']:,} planted near-duplicate copies), "
        f"{sum(inputs['bytes'].values()) / 2**20:.0f} MiB in 2 JSONL files",
        f"- parameters: word {NGRAM}-grams, {NUM_PERM} permutations, threshold {THRESHOLD}; curate's stage derives "
        f"{bands} bands x {band_rows} rows (and verifies candidate pairs against the signature estimate); datatrove "
        f"gets the same: num_buckets={bands}, hashes_per_bucket={band_rows} ({bands * band_rows} hashes; curate "
        f"computes all "
        f"{NUM_PERM} and uses them for verification; datatrove does not verify); the datasketch loop keeps "
        f"`MinHashLSH(threshold=0.8, num_perm=128)`'s own choice, b x r = "
        f"{' x '.join(map(str, report['datasketch_lsh_params'] or []))}, unverified",
        f"- shingling check: curate's own n-grams equal the shared Python shingling on "
        f"{report['shingling']['identical']:,} of {report['shingling']['records']:,} records; "
        f"{report['shingling']['short_records_lt_5_words']} records have fewer than 5 words (datatrove gives them "
        "no shingles, so never clusters them)",
        f"- {report['repeats']} interleaved repetition(s), medians; load average (1/5/15) before "
        f"{' '.join(f'{x:.2f}' for x in load['before'])}, after {' '.join(f'{x:.2f}' for x in load['after'])}",
        "",
        "## Speed and memory",
        "",
        "| run | wall s | in-process s | peak RSS tree MB | largest process MB | load 1-min before/after |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in rows.items():
        loads = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in row["load"])
        lines.append(
            f"| {LABELS[name]} | {row['wall_seconds_median']:.2f} | {row['in_process_seconds_median']:.2f} "
            f"| {row['peak_rss_tree_mb']} | {row['peak_rss_process_mb']} | {loads} |"
        )
    lines += [
        "",
        "What each timing includes:",
        "",
        "- wall s: the whole command, process start to exit (interpreter start-up and imports included).",
        "- in-process s: datasketch: after reading the JSON, shingling + `MinHash.update` + LSH insert + query + "
        "union-find; curate stage: `apply_with_reasons` on an in-memory DataFrame (text folding, shingling, "
        "hashing, signatures, banding, verification, components, keep policy); curate build: `run.json` "
        "`seconds` (reading JSON, token counting, the stage, shards, ledger, manifest); datatrove: the four "
        "executor runs (reading JSONL twice, signatures, sorting and writing signature files, buckets, "
        "clustering, filtering, writing kept and removed JSONL).",
        "- peak RSS tree: summed RSS of the command's whole process tree, sampled every 0.05 s; largest "
        "process: GNU time's maximum resident set size.",
        "",
        "Ratios (higher = curate faster):",
        "",
        f"- datasketch loop / curate stage (in process): **{fmt(r['datasketch_loop_over_stage'])}x** "
        f"(target >= {TARGETS['datasketch']:.0f}x: **{'met' if r['datasketch_target_met'] else 'NOT met'}**); "
        f"whole processes: datasketch / curate stage {fmt(r['datasketch_wall_over_stage_wall'])}x, "
        f"datasketch / `curate build -j1` {fmt(r['datasketch_wall_over_curate_w1_wall'])}x",
        f"- datatrove / curate end to end (wall), workers=1: **{fmt(r['datatrove_w1_over_curate_w1_wall'])}x** "
        f"(target >= {TARGETS['datatrove']:.0f}x: **{'met' if r['datatrove_target_met'] else 'NOT met'}**); "
        f"workers=2: {fmt(r['datatrove_w2_over_curate_w2_wall'])}x; in process: "
        f"{fmt(r['datatrove_w1_over_curate_w1_in_process'])}x (w1), "
        f"{fmt(r['datatrove_w2_over_curate_w2_in_process'])}x (w2)",
        f"- for context, datatrove as shipped (its own normalization and spaCy tokenizer, a different shingling) / "
        f"curate, workers=1, wall: {fmt(r['datatrove_native_w1_over_curate_w1_wall'])}x; datatrove with 9 x 13 "
        f"(MinHashLSH's choice for 0.8 without verification) / curate, workers=1, wall: "
        f"{fmt(r['datatrove_dslsh_w1_over_curate_w1_wall'])}x",
        "",
    ]
    if report.get("curate_timings"):
        keys = report["curate_timing_keys"]
        lines += [
            "curate build `run.json` timings (median, s): pass_0 = reading JSON + the shingle map step + token "
            "count (per batch, in the workers), then the barrier (signatures, LSH banding, verification, "
            "components, keep policy, templates.jsonl) in the main process; finish = shards, ledger, manifest. "
            "From work-dir file times: batches = first to last batch file written (the map phase, minus the first "
            "batch), barrier = last batch file to `decisions.parquet`.",
            "",
            "| run | " + " | ".join(keys) + " | batches | map phase | barrier |",
            "|---|" + "---:|" * (len(keys) + 3),
        ]
        for name, timings in report["curate_timings"].items():
            phases = report["curate_phases"].get(name, {})
            cells = [f"{timings.get(k, 0):.2f}" for k in keys]
            cells += [
                str(phases.get("batches", "-")),
                fmt(phases.get("first_to_last_batch")),
                fmt(phases.get("barrier")),
            ]
            lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
        lines.append("")
    if report.get("parts"):
        lines += ["Breakdown (median, s):", ""]
        for name, parts in report["parts"].items():
            lines.append(f"- {LABELS[name]}: " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
        lines.append("")
    quality = report["quality"]
    lines += [
        "## Quality against the planted ground truth",
        "",
        f"Positives: pairs within a planted family (an original and its copies) with true Jaccard >= {POSITIVE_J} "
        f"({quality['truth']['positives']:,} pairs); a co-clustered pair with true Jaccard < {NEGATIVE_J} is a "
        f"wrong merge (precision = 1 - wrong / co-clustered pairs; clusters with more than "
        f"{MAX_PAIRS_PER_CLUSTER} pairs are sampled). True Jaccard is exact, on the shared shingling.",
        "",
        "| clustering | recall J>=0.85 | recall 0.8<=J<0.85 | precision | co-clustered pairs | wrong pairs "
        "| clusters | records in clusters | records removed | largest cluster |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, q in quality["methods"].items():
        lines.append(
            f"| {name} | {fmt(q['recall_j_ge_085'], 4)} | {fmt(q['recall_j_08_085'], 4)} | {fmt(q['precision'], 4)} "
            f"| {q['co_clustered_pairs']:,} | {q['wrong_pairs_j_lt_07']:,.0f} | {q['clusters']:,} "
            f"| {q['records_in_clusters']:,} | {q['records_removed']:,} | {q['largest_cluster']} |"
        )
    lines += [
        "",
        "## Agreement between clusterings",
        "",
        "Pairwise precision = share of the first clustering's co-clustered pairs that the second also "
        "co-clusters; recall the other way round. curate and datasketch use different shingle hashes, so "
        "exact equality is not expected.",
        "",
        "| first | second (reference) | adjusted Rand | pairwise precision | pairwise recall | pairs first "
        "| pairs second |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (a, b), g in quality["agreement"].items():
        lines.append(
            f"| {a} | {b} | {g['adjusted_rand']:.4f} | {g['pairwise_precision']:.4f} | {g['pairwise_recall']:.4f} "
            f"| {g['pairs_a']:,} | {g['pairs_b']:,} |"
        )
    if report.get("big"):
        big = report["big"]
        lines += [
            "",
            f"## curate alone at {big['records']:,} records",
            "",
            f"Input: the benchmark input cycled to {big['records']:,} records, every cycled copy perturbed towards a "
            f"Jaccard uniform in [0.2, 1] ({big['bytes'] / 2**20:.0f} MiB). Target: peak RSS under "
            f"{TARGETS['big_rss_gb']:.0f} GB.",
            "",
            "| run | wall s | run.json s | peak RSS tree MB | largest process MB | records out | clusters "
            "| load 1-min before/after | under 6 GB |",
            "|---|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for name, res in big["runs"].items():
            ok = res["peak_rss_tree_mb"] < TARGETS["big_rss_gb"] * 1000
            lines.append(
                f"| {LABELS[name]} | {res['wall_seconds']:.1f} | {res['run_json']['seconds']:.1f} "
                f"| {res['peak_rss_tree_mb']} | {res['peak_rss_process_mb']} | {res['records_out']:,} "
                f"| {res['stage_stats'].get('clusters', 0):,} | {res['load_before'][0]:.1f}/{res['load_after'][0]:.1f} "
                f"| {'yes' if ok else '**no**'} |"
            )
        lines += ["", "`run.json` timings:", ""]
        for name, res in big["runs"].items():
            lines.append(
                f"- {LABELS[name]}: "
                + ", ".join(f"{k} {v:.1f}" for k, v in res["run_json"]["timings"].items())
                + f"; barrier {fmt(res['phases'].get('barrier'), 1)} (work-dir file times); stage stats: "
                + ", ".join(f"{k} {v}" for k, v in res["stage_stats"].items())
            )
    if report.get("profile"):
        lines += ["", "## Profile of the stage (a target was missed)", "", report["profile"]]
    if report.get("profile_build"):
        lines += ["", "## Profile of the whole build (the datatrove target was missed)", "", report["profile_build"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="input records (default 100000)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repetitions (default 1)")
    parser.add_argument("--big", type=int, default=0, help="also run curate alone on this many records (e.g. 1000000)")
    parser.add_argument("--big-workers", default="1,2", help="worker counts for --big (default 1,2)")
    parser.add_argument("--skip", default="", help="comma list of runs to skip: datasketch,datatrove,curate_w2,...")
    parser.add_argument("--profile", action="store_true", help="cProfile the stage even when the targets are met")
    parser.add_argument("--worktree", action="store_true", help="measure the working tree's curate, not HEAD's")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out" / "minhash", help="results folder")
    parser.add_argument("--data", type=Path, default=BENCH_DIR / "_data", help="generated inputs (git-ignored)")
    parser.add_argument("--markdown", type=Path, default=BENCH_DIR / "BENCH_MINHASH.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("child_args", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--tasks", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--native", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bands", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        paths = [Path(p) for p in args.child_args]
        if args.child == "datasketch":
            result = child_datasketch(*paths)
        elif args.child == "curate-stage":
            result = child_curate_stage(paths[0], paths[1], args.profile_to)
        else:
            result = child_datatrove(paths[0], paths[1], args.tasks, args.workers, (args.bands, args.rows), args.native)
        print(json.dumps(result))
        return 0

    bb = _bench_build()
    out = args.out.resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    data = args.data.resolve()
    skip = set(filter(None, args.skip.split(",")))
    print(f"generating {args.records:,} records into {data} ...", flush=True)
    inputs = generate(args.records, data)
    folder = Path(inputs["folder"])
    config = write_config(folder)
    scratch = folder / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    env, measured = curate_snapshot(data, args.worktree)
    lsh = curate_lsh(env)
    print(f"curate's LSH for threshold {THRESHOLD}, {NUM_PERM} perms: {lsh[0]} bands x {lsh[1]} rows", flush=True)
    print(f"curate measured: {measured}", flush=True)

    ids, texts = read_docs(folder)
    shingling = shingling_check(ids, texts, env)
    print(f"shingling check: {shingling}", flush=True)

    git_before, load_before = bb.git_commit(), os.getloadavg()
    names = ["datasketch", "stage", "curate_w1", "curate_w2", "datatrove_w1", "datatrove_w2"]
    names += ["datatrove_dslsh_w1", "datatrove_native_w1"]  # context only: one run each
    from datasketch.lsh import _optimal_param

    datasketch_lsh = _optimal_param(THRESHOLD, NUM_PERM, 0.5, 0.5)
    names = [n for n in names if n not in skip and n.split("_")[0] not in skip]
    if any(n.startswith("datatrove") for n in names) and not (DATATROVE_VENV / "bin" / "python").exists():
        raise SystemExit(
            f"{DATATROVE_VENV} is missing; create it with\n"
            f"  {VENV_PYTHON} -m venv {DATATROVE_VENV}\n"
            f"  {DATATROVE_VENV}/bin/pip install datatrove orjson regex 'xxhash<4' tokenizers spacy\n"
            "or pass --skip datatrove"
        )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for rep in range(args.repeats):
        for name in names:
            tag, first = f"{name}-r{rep}", rep == 0
            if ("native" in name or "dslsh" in name) and not first:
                continue  # context only: one run
            if name == "datasketch":
                result = run_datasketch(folder, scratch, logs, tag)
            elif name == "stage":
                result = run_stage(folder, scratch, logs, tag, env)
            elif name.startswith("curate"):
                result = run_curate(config, int(name[-1]), scratch, logs, tag, env, keep=first)
            else:
                workers = int(name[-1])
                native = "native" in name
                bands_rows = datasketch_lsh if "dslsh" in name else lsh
                result = run_datatrove(folder, scratch, logs, tag, workers, bands_rows, native)
            runs[name].append(result)
            print(
                f"  {tag:16s} wall {result['wall_seconds']:8.2f} s  tree RSS {result['peak_rss_tree_mb']} MB  "
                f"load {result['load_before'][0]:.2f}->{result['load_after'][0]:.2f}  {result.get('child', '')}",
                flush=True,
            )
    load_after, git_after = os.getloadavg(), bb.git_commit()

    print("evaluating clusterings ...", flush=True)
    truth = Truth(folder, ids, texts)
    rng = random.Random(SEED)
    clusterings: dict[str, list[int]] = {}
    for name, results in runs.items():
        first = results[0]
        if "labels_file" in first:
            clusterings[name] = load_labels(first["labels_file"], truth.order)
            if name == "datasketch":
                raw = json.loads(Path(first["labels_file"]).read_text())
                path = scratch / "datasketch-verified.labels.json"
                path.write_text(json.dumps({"ids": raw["ids"], "labels": raw["labels_verified"]}))
                clusterings["datasketch_verified"] = load_labels(str(path), truth.order)
    quality_names = {
        "curate_w1": "curate (build -j1)",
        "curate_w2": "curate (build -j2)",
        "stage": "curate (stage in process)",
        "datasketch": "datasketch loop (LSH query, unverified)",
        "datasketch_verified": "datasketch loop + verify J>=0.8",
        "datatrove_w1": "datatrove (w1)",
        "datatrove_w2": "datatrove (w2)",
        "datatrove_native_w1": "datatrove as shipped (own normalization, spaCy words)",
        "datatrove_dslsh_w1": "datatrove (w1) with 9 x 13 bands x rows",
    }
    methods = {quality_names[k]: truth.evaluate(v, rng) for k, v in clusterings.items()}
    curate_key = next((k for k in ("curate_w1", "stage", "curate_w2") if k in clusterings), None)
    pairs = []
    if curate_key:
        pairs = [(curate_key, other) for other in clusterings if other != curate_key]
    if "datasketch_verified" in clusterings and "datatrove_w1" in clusterings:
        pairs.append(("datatrove_w1", "datasketch_verified"))
    agreement_rows = {(quality_names[a], quality_names[b]): agreement(clusterings[a], clusterings[b]) for a, b in pairs}
    summary = summarize(runs)
    ratio = ratios(summary)
    curate_timings = {n: {} for n in ("curate_w1", "curate_w2") if n in runs}
    for name in curate_timings:
        keys = sorted({k for r in runs[name] for k in r["run_json"]["timings"]})
        curate_timings[name] = {k: median_of([r["run_json"]["timings"] for r in runs[name]], k) for k in keys}
    parts = {}
    for name in ("datasketch", "stage", "datatrove_w1", "datatrove_w2", "datatrove_dslsh_w1", "datatrove_native_w1"):
        if name in runs:
            keys = runs[name][0]["child"]["seconds"]
            parts[name] = {k: median_of([r["child"]["seconds"] for r in runs[name]], k) for k in keys}
    report: dict[str, Any] = {
        "benchmark": "minhash_dedup vs datasketch loop vs datatrove",
        "curate_measured": measured,
        "git": git_before,
        "git_after": git_after,
        "load_average_1_5_15": {"before": load_before, "after": load_after},
        "machine": bb.machine(),
        "versions": versions(),
        "inputs": inputs,
        "repeats": args.repeats,
        "shingling": shingling,
        "lsh": list(lsh),
        "datasketch_lsh_params": runs["datasketch"][0]["child"]["lsh_params"] if "datasketch" in runs else None,
        "summary": summary,
        "ratios": ratio,
        "curate_timings": curate_timings,
        "curate_timing_keys": sorted({k for t in curate_timings.values() for k in t}),
        "curate_phases": {
            n: {k: median_of([r["phases"] for r in runs[n]], k) for k in runs[n][0]["phases"]} for n in curate_timings
        },
        "parts": parts,
        "quality": {
            "truth": {"positives": sum(j >= POSITIVE_J for _, _, j in truth.pairs), "family_pairs": len(truth.pairs)},
            "methods": methods,
            "agreement": agreement_rows,
        },
        "runs": runs,
    }

    if args.profile or not ratio["datasketch_target_met"] or not ratio["datatrove_target_met"]:
        print("profiling the stage (cProfile) ...", flush=True)
        prof = out / "profile_stage.prof"
        run_stage(folder, scratch, logs, "profile", env, profile=prof)
        report["profile"] = profile_table(prof, "`MinhashDedup.apply_with_reasons`")
        (out / "profile_stage.md").write_text(report["profile"])
    if args.profile or not ratio["datatrove_target_met"]:
        print("profiling curate build --workers 1 (cProfile) ...", flush=True)
        prof = profile_build(config, scratch, out, env)
        report["profile_build"] = profile_table(prof, "`curate build --workers 1` (the whole build, one process)")
        (out / "profile_build_w1.md").write_text(report["profile_build"])

    if args.big:
        print(f"generating {args.big:,} records ...", flush=True)
        big = generate_big(args.big, folder, data)
        big_folder = Path(big["folder"])
        big_config = write_config(big_folder)
        big_scratch = big_folder / "scratch"
        big_scratch.mkdir(exist_ok=True)
        big_runs = {}
        for w in [int(x) for x in args.big_workers.split(",") if x]:
            name = f"curate_w{w}"
            res = run_curate(big_config, w, big_scratch, logs, f"big-{name}", env, keep=False)
            print(f"  big {name}: wall {res['wall_seconds']:.1f} s, tree RSS {res['peak_rss_tree_mb']} MB", flush=True)
            big_runs[name] = res
        shutil.rmtree(big_scratch, ignore_errors=True)
        report["big"] = {"records": args.big, "bytes": sum(big["bytes"].values()), "runs": big_runs}

    shutil.rmtree(scratch, ignore_errors=True)
    report["quality"]["agreement"] = {f"{a} | {b}": g for (a, b), g in agreement_rows.items()}
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    report["quality"]["agreement"] = agreement_rows
    text = markdown(report)
    args.markdown.write_text(text)
    print()
    print(text)
    print(f"wrote {out / 'results.json'} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
