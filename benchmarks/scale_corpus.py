"""A deterministic corpus of N records scaled from the real sets in ../shared/data (issue 6, "Scaling").

    .venv/bin/python benchmarks/scale_corpus.py 100000 [--data benchmarks/_data]

Written once into `benchmarks/_data/scale-N/` (git-ignored, never committed: several sources are
CC BY-NC 4.0 or other non-redistributable licenses, see LICENSES below) and reused while
`GENERATOR_VERSION` and the file sizes match `inputs.json`.

Mix by records: ~30% pretraining text (`{"id", "text"}` JSONL) and ~70% instruction records, each
source in its own format and fields; one JSONL per source, split into parts for the large ones.
Every record has an `id` (the configs read it with `id_field = "id"`). Kinds (`truth.parquet`: id,
source, file, line, origin, kind, cycle, jaccard, jaccard_full):

- `original`: a real record (sources are sampled without replacement while N is below their size).
- `cycled`: a real record perturbed with word edits towards a word-5-gram Jaccard uniform in
  [0.25, 0.45] with its original (prompt and response alike; an instruction prompt still above 0.5 is
  edited again, up to 3 times), so it is distinct for dedup at 0.8;
  line structure, GSM8K `<<calc>>` annotations and `####` answer lines are kept.
- `exact_dup` (~3%): a byte copy (new id) of an earlier record of the same source.
- `near_dup` (~8%): a copy of an earlier record of the same source perturbed towards a Jaccard uniform
  in [0.85, 1.0] on the prompt (pretraining: the text); a prompt too short for one edit to stay
  above 0.85 is kept and only the response is perturbed (most Alpaca-style near-duplicates: same
  prompt, edited answer); a text that cannot stay above 0.85 is replaced by another original.
  `jaccard` is the achieved Jaccard on the prompt/text, `jaccard_full` on prompt + response.
- `templated` (~10% before duplication): T0/P3 promptsource records (`origin` = template file) and
  synthetic skeletons filled with passages, sentences, names and numbers (`origin` = skeleton name).

Generation streams to the files; memory is bounded by the base sets plus a reservoir of earlier
records per source for the duplicates.

LICENSES of the inputs: Alpaca 52k and Code Alpaca CC BY-NC 4.0; GSM8K MIT; FLAN CoT, Self-Instruct,
T0/P3 (self-instruct repo) and LLaMA-Factory demos Apache-2.0; DCLM MIT; Dolma samples Apache-2.0;
WikiText-2 CC BY-SA; Gutenberg Project Gutenberg license; Tiny Shakespeare public domain.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GENERATOR_VERSION = 5
SEED = 0
NGRAM = 5
PRETRAIN_SHARE, TEMPLATED_SHARE, EXACT_SHARE, NEAR_SHARE = 0.30, 0.10, 0.03, 0.08
P3_SHARE_OF_TEMPLATED = 0.6
CYCLED_J, NEAR_J = (0.25, 0.45), (0.85, 1.0)
PART_RECORDS = 150_000  # records per file part; sources above 20k records get at least two parts
RESERVOIR = 20_000
NEAR_TRIES = 5  # near-duplicate attempts (on other originals) before a copy below 0.85 is kept
CYCLED_TRIES = 3  # instruction prompts still above 0.5 after perturbation are edited again (up to 3 times)
CYCLED_CHECK = 20  # every 20th cycled record gets its achieved Jaccard in truth.parquet

Record = dict[str, Any]
# source name -> (format, prompt keys, response keys); text sources have prompt key "text"
SOURCES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "alpaca": ("alpaca", ("instruction", "input"), ("output",)),
    "code_alpaca": ("alpaca", ("instruction", "input"), ("output",)),
    "gsm8k": ("prompt_response", ("question",), ("answer",)),
    "flan_cot": ("prompt_response", ("question",), ("response",)),
    "self_instruct": ("alpaca", ("instruction", "input"), ("output",)),
    "llamafactory": ("alpaca", ("instruction", "input"), ("output",)),
    "p3": ("prompt_response", ("prompt",), ("completion",)),
    "templates": ("prompt_response", ("prompt",), ("completion",)),
    "web": ("text", ("text",), ()),
    "c4": ("text", ("text",), ()),
    "wiki": ("text", ("text",), ()),
    "books": ("text", ("text",), ()),
}
INSTRUCTION = ["alpaca", "code_alpaca", "gsm8k", "flan_cot", "self_instruct", "llamafactory"]
PRETRAIN = ["web", "c4", "wiki", "books"]

from bench_minhash import _NON_WORD, jaccard  # noqa: E402  (the shared shingling)
from bench_minhash import _cached as cached_inputs  # noqa: E402
from scale_sources import SKELETONS, fillers, load_base  # noqa: E402

# ---------------------------------------------------------------- perturbation

_PIECES = re.compile(r"\S+|\s+")


def perturb(text: str, target: float, rng: random.Random, vocab: list[str]) -> str:
    """Word edits (replace, swap, delete, insert) whose count aims at word-5-gram Jaccard `target`.

    Whitespace runs (newlines included) stay in place; words holding `<<`, `>>` or `####` and the
    whole `####` line are never touched. k edits change about 5k of S shingles: J ~ (S - 5k) / (S + 5k).
    """
    pieces = _PIECES.findall(text)
    words = [i for i, p in enumerate(pieces) if not p.isspace()]
    if not words or target >= 1.0:
        return text
    locked, line_locked = set(), False
    for i, p in enumerate(pieces):
        if "\n" in p:
            line_locked = False
        if p.startswith("####"):
            line_locked = True
        if line_locked or "<<" in p or ">>" in p:
            locked.add(i)
    free = [i for i in words if i not in locked]
    if not free:
        return text
    total = max(1, len(_NON_WORD.sub(" ", text).split()) - NGRAM + 1)  # shingles, as the shingling counts
    edits = max(1, round(total * (1 - target) / (NGRAM * (1 + target))))
    for _ in range(edits):
        i = rng.choice(free)
        op = rng.randrange(4)
        if op == 1:  # swap with the next free word
            k = free.index(i)
            if k + 1 < len(free):
                j = free[k + 1]
                pieces[i], pieces[j] = pieces[j], pieces[i]
                continue
        if op == 2 and pieces[i]:  # delete (keeps the separators around it)
            pieces[i] = ""
            continue
        if op == 3:  # insert before
            pieces[i] = f"{rng.choice(vocab)} {pieces[i]}"
            continue
        pieces[i] = rng.choice(vocab)
    out = "".join(pieces)
    return re.sub(r"(?<=\S) {2,}(?=\S)", " ", out)


def prompt_text(rec: Record, source: str) -> str:
    return "\n".join(str(rec.get(k) or "") for k in SOURCES[source][1]).strip()


def full_text(rec: Record, source: str) -> str:
    keys = SOURCES[source][1] + SOURCES[source][2]
    return "\n".join(str(rec.get(k) or "") for k in keys).strip()


def perturb_record(rec: Record, source: str, target: float, rng: random.Random, vocab: list[str], near: bool) -> Record:
    """A copy of `rec` with every text field perturbed towards `target`. With `near`, a prompt that one
    edit would push below the target stays as it is (then only the response changes)."""
    out = dict(rec)
    for key in SOURCES[source][1] + SOURCES[source][2]:
        value = rec.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        new = perturb(value, target, rng, vocab)
        new = new.strip() if value == value.strip() else new
        if near and key in SOURCES[source][1] and SOURCES[source][2] and jaccard(value, new) < NEAR_J[0]:
            new = value
        out[key] = new
    return out


# ---------------------------------------------------------------- generation


def plan_counts(n: int, base: dict[str, list[Record]]) -> dict[str, int]:
    """Records (slots, duplicates included) per source summing to `n`."""
    dup = EXACT_SHARE + NEAR_SHARE
    templated = round(TEMPLATED_SHARE * n / (1 - dup))
    p3 = min(len(base["p3"]), round(P3_SHARE_OF_TEMPLATED * templated))
    counts = {"p3": p3, "templates": templated - p3}
    pretrain = round(PRETRAIN_SHARE * n)
    rest = n - pretrain - templated
    for group, total in ((PRETRAIN, pretrain), (INSTRUCTION, rest)):
        sizes = {s: len(base[s]) for s in group}
        whole = sum(sizes.values())
        shares = {s: total * v // whole for s, v in sizes.items()}
        shares[group[0]] += total - sum(shares.values())
        counts.update(shares)
    return {s: counts[s] for s in SOURCES}


def _records(
    source: str, slots: int, base: list[Record], rng: random.Random, vocab: list[str], fill: dict
) -> Iterator[tuple[Record, dict]]:
    """(record, truth) for every slot of `source`, duplicates of earlier records included."""
    dups = rng.sample(range(1, slots), min(slots - 1, round((EXACT_SHARE + NEAR_SHARE) * slots))) if slots > 1 else []
    n_exact = round(EXACT_SHARE * slots)
    kind_of = {pos: ("exact_dup" if k < n_exact else "near_dup") for k, pos in enumerate(dups)}
    order = list(range(len(base)))
    rng.shuffle(order)
    reservoir: list[tuple[Record, str]] = []
    fresh = 0
    for pos in range(slots):
        rid = f"{source}-{pos:07d}"
        kind = kind_of.get(pos)
        if kind and reservoir:
            for _ in range(NEAR_TRIES):  # a record too short to stay above 0.85 after one edit: another one
                rec, origin = reservoir[rng.randrange(len(reservoir))]
                truth = {"origin": origin, "kind": kind, "cycle": None, "jaccard": None, "jaccard_full": None}
                if kind == "exact_dup":
                    break
                copy = perturb_record(rec, source, rng.uniform(*NEAR_J), rng, vocab, near=True)
                truth["jaccard"] = round(jaccard(prompt_text(rec, source), prompt_text(copy, source)), 4)
                truth["jaccard_full"] = round(jaccard(full_text(rec, source), full_text(copy, source)), 4)
                if truth["jaccard"] >= NEAR_J[0]:
                    break
            yield {"id": rid, **(rec if kind == "exact_dup" else copy)}, truth
            continue
        if source == "templates":
            name = rng.choice(sorted(SKELETONS))
            prompt, completion = SKELETONS[name](rng, fill)
            rec = {"prompt": prompt, "completion": completion}
            truth = {"origin": name, "kind": "templated", "cycle": 0, "jaccard": None, "jaccard_full": None}
        else:
            cycle, i = divmod(fresh, len(base))
            rec = base[order[i]]
            origin = f"{source}:{order[i]}"
            if source == "p3":
                origin = f"p3:{rec['template']}"
                rec = {"prompt": rec["prompt"], "completion": rec["completion"]}
            kind = "templated" if source == "p3" else ("original" if cycle == 0 else "cycled")
            truth = {"origin": origin, "kind": kind, "cycle": cycle, "jaccard": None, "jaccard_full": None}
            if cycle:
                target = rng.uniform(*CYCLED_J)
                copy = perturb_record(rec, source, target, rng, vocab, near=False)
                # Short prompts: one edit at an edge or on punctuation may change little; edit further.
                for _ in range(CYCLED_TRIES * bool(SOURCES[source][2])):
                    if jaccard(prompt_text(rec, source), prompt_text(copy, source)) <= CYCLED_J[1] + 0.05:
                        break
                    copy = perturb_record(copy, source, target, rng, vocab, near=False)
                if fresh % CYCLED_CHECK == 0:  # a sample: the achieved Jaccard with the original
                    truth["jaccard"] = round(jaccard(prompt_text(rec, source), prompt_text(copy, source)), 4)
                    truth["jaccard_full"] = round(jaccard(full_text(rec, source), full_text(copy, source)), 4)
                rec = copy
        fresh += 1
        if len(reservoir) < RESERVOIR:
            reservoir.append((rec, rid))
        elif rng.random() < RESERVOIR / (pos + 1):
            reservoir[rng.randrange(RESERVOIR)] = (rec, rid)
        yield {"id": rid, **rec}, truth


def _cached(folder: Path) -> dict[str, Any] | None:
    """inputs.json of the folder when it was written by this generator version with these file sizes."""
    return cached_inputs(folder, GENERATOR_VERSION)


def generate(n: int, data_root: Path) -> dict[str, Any]:
    """The corpus of `n` records in `data_root/scale-n/` (cached); returns inputs.json's content."""
    import polars as pl

    folder = data_root / f"scale-{n}"
    if info := _cached(folder):
        return info
    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    rng = random.Random(SEED)
    base = load_base(rng)
    vocab = rng.sample([w for r in base["alpaca"][:8000] for w in r["output"].split() if w.isalpha()], 8000)
    fill = fillers(base, rng)
    counts = plan_counts(n, base)
    info: dict[str, Any] = {"generator_version": GENERATOR_VERSION, "records": n, "folder": str(folder)}
    info.update(base_records={s: len(v) for s, v in base.items()}, sources={}, bytes={}, sha256={})
    keys = ("id", "source", "file", "line", "origin", "kind", "cycle", "jaccard", "jaccard_full")
    truth_cols: dict[str, list] = {k: [] for k in keys}
    for source, slots in counts.items():
        parts = max(1 if slots < 20_000 else 2, math.ceil(slots / PART_RECORDS)) if slots else 0
        per_part = math.ceil(slots / parts) if parts else 0
        srng = random.Random(f"{SEED}-{source}")
        stream = _records(source, slots, base.get(source, []), srng, vocab, fill)
        names = []
        for p in range(parts):
            name = f"data/{source}/part-{p:03d}.jsonl"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with open(folder / name, "wb") as fh:
                for line_no in range(1, min(per_part, slots - p * per_part) + 1):
                    rec, truth = next(stream)
                    line = (json.dumps(rec, ensure_ascii=False) + "\n").encode()
                    fh.write(line)
                    digest.update(line)
                    truth_cols["id"].append(rec["id"])
                    truth_cols["source"].append(source)
                    truth_cols["file"].append(name)
                    truth_cols["line"].append(line_no)
                    for k in ("origin", "kind", "cycle", "jaccard", "jaccard_full"):
                        truth_cols[k].append(truth[k])
            info["bytes"][name] = (folder / name).stat().st_size
            info["sha256"][name] = digest.hexdigest()
            names.append(name)
        info["sources"][source] = {"format": SOURCES[source][0], "records": slots, "files": names}
    truth = pl.DataFrame(
        truth_cols, schema_overrides={"cycle": pl.Int32, "jaccard": pl.Float64, "jaccard_full": pl.Float64}
    )
    truth.write_parquet(folder / "truth.parquet")
    info["rates"] = rates(truth)
    info["seconds"] = round(time.perf_counter() - started, 1)
    info["peak_rss_mb"] = round(_maxrss_mb(), 1)
    (folder / "inputs.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def rates(truth: Any) -> dict[str, Any]:
    """Achieved shares by kind and by pretrain/instruction, and the near-duplicate Jaccard spread."""
    import polars as pl

    n = truth.height
    kinds = {k: round(c / n, 4) for k, c in truth.group_by("kind").len().sort("kind").iter_rows()}
    pretrain = truth.filter(pl.col("source").is_in(PRETRAIN)).height / n
    near = truth.filter(pl.col("kind") == "near_dup")["jaccard"]
    cycled = truth.filter((pl.col("kind") == "cycled") & pl.col("jaccard").is_not_null())["jaccard"]
    return {
        "by_kind": kinds,
        "pretrain": round(pretrain, 4),
        "instruction": round(1 - pretrain, 4),
        "near_dup_jaccard": {
            "min": near.min(),
            "median": near.median(),
            "share_ge_0_85": round(float((near >= NEAR_J[0]).mean()), 4) if near.len() else None,
            "share_prompt_unchanged": round(float((near == 1.0).mean()), 4) if near.len() else None,
        },
        "cycled_jaccard_sample": {
            "records": cycled.len(),
            "median": cycled.median(),
            "p99": cycled.quantile(0.99) if cycled.len() else None,
            "share_ge_0_8": round(float((cycled >= 0.8).mean()), 4) if cycled.len() else None,
        },
        "max_cycle": truth["cycle"].max(),
    }


def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", type=int, help="records to generate (e.g. 100000, 1000000)")
    parser.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "_data", help="where scale-N/ goes")
    args = parser.parse_args(argv)
    info = generate(args.records, args.data.resolve())
    print(
        json.dumps(
            {k: info[k] for k in ("records", "folder", "rates", "seconds", "peak_rss_mb") if k in info}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
