"""The real base sets of `scale_corpus.py` (read from ../shared/data) and its synthetic template skeletons."""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
Record = dict[str, Any]
_PIECES = re.compile(r"\S+|\s+")


# ---------------------------------------------------------------- the real base sets


def _json_items(path: Path) -> list[Record]:
    text = path.read_text("utf-8").strip()
    return json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]


def _alpaca(items: list[Record]) -> list[Record]:
    return [{"instruction": o["instruction"], "input": o.get("input") or "", "output": o["output"]} for o in items]


def _chunks(text: str, rng: random.Random, low: int = 200, high: int = 600) -> list[str]:
    """`text` cut into documents of `low`..`high` words (whitespace kept)."""
    pieces = _PIECES.findall(text)
    docs, start = [], 0
    while start < len(pieces):
        want, count, end = rng.randint(low, high), 0, start
        while end < len(pieces) and count < want:
            count += not pieces[end].isspace()
            end += 1
        doc = "".join(pieces[start:end]).strip()
        if count >= low // 2 and doc:
            docs.append(doc)
        start = end
    return docs


def load_base(rng: random.Random) -> dict[str, list[Record]]:
    """Real records per source, without ids, in their source's fields."""
    d = SHARED
    base: dict[str, list[Record]] = {}
    base["alpaca"] = _alpaca(_json_items(d / "alpaca_52k" / "alpaca_data.json"))
    base["code_alpaca"] = _alpaca(
        _json_items(d / "code_alpaca" / "code_alpaca_2k.json") + _json_items(d / "code_alpaca" / "new_codealpaca.json")
    )
    base["gsm8k"] = [
        {"question": o["question"], "answer": o["answer"]} for o in _json_items(d / "gsm8k" / "train.jsonl")
    ]
    flan = []
    for path in sorted((d / "flan_cot" / "cot_data").glob("*.tsv")):
        with open(path, encoding="utf-8", newline="") as fh:
            for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
                if len(row) >= 3:
                    q, a, r = row[0], row[1], row[2]
                    flan.append({"question": q, "answer": a, "rationale": r, "response": f"{r} So the answer is {a}."})
    base["flan_cot"] = flan
    tasks = []
    for name in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        for task in _json_items(d / "self_instruct" / name):
            for inst in task.get("instances", []):
                tasks.append(
                    {"instruction": task["instruction"], "input": inst.get("input", ""), "output": inst["output"]}
                )
    base["self_instruct"] = tasks
    base["llamafactory"] = _alpaca(_json_items(d / "llamafactory_demo" / "alpaca_en_demo.json"))
    p3 = []
    for path in sorted((d / "t0_p3_templated" / "data_per_template").glob("*.jsonl")):
        p3 += [{"prompt": o["prompt"], "completion": o["completion"], "template": path.stem} for o in _json_items(path)]
    base["p3"] = p3
    web = d / "web_pretrain_samples"
    base["web"] = [
        {"text": o["text"]}
        for name in ("dclm_agreement_data", "dclm_majority_data", "dolma_cc_en_head-0091", "dolma_cc_en_head-0174")
        for o in _json_items(web / f"{name}.jsonl")
        if len(o.get("text", "").split()) >= 50
    ]
    base["c4"] = [{"text": o["text"]} for o in _json_items(d / "llamafactory_demo" / "c4_demo.jsonl")]
    wiki_texts = (d / "llamafactory_demo" / "wiki_demo.txt").read_text("utf-8").splitlines()
    wiki_texts += [(d / "wikitext2_pytorch_examples" / f"{s}.txt").read_text("utf-8") for s in ("valid", "test")]
    base["wiki"] = [{"text": t} for text in wiki_texts for t in _chunks(text, rng)]
    books = [p.read_text("utf-8", errors="replace") for p in sorted((d / "gutenberg_gitenberg").glob("*.txt"))]
    books.append((d / "tinyshakespeare" / "input.txt").read_text("utf-8"))
    base["books"] = [{"text": t} for text in books for t in _chunks(text, rng)]
    return base


# ---------------------------------------------------------------- synthetic templates

SKELETONS: dict[str, Callable[[random.Random, dict[str, list[str]]], tuple[str, str]]] = {
    "summarize": lambda r, f: (
        f"Summarize the following text in one sentence.\n\n{r.choice(f['passages'])}",
        r.choice(f["sentences"]),
    ),
    "sentiment": lambda r, f: (
        f"Is the sentiment of this review positive or negative?\nReview: {r.choice(f['sentences'])}",
        r.choice(["positive", "negative"]),
    ),
    "passive": lambda r, f: (
        f"Rewrite the following sentence in the passive voice: {r.choice(f['sentences'])}",
        r.choice(f["sentences"]),
    ),
    "arithmetic": lambda r, f: (
        lambda a, b, n: (
            f"{n} has {a} apples and buys {b} more. How many apples does {n} have now?",
            f"{n} has {a} + {b} = {a + b} apples.\n#### {a + b}",
        )
    )(r.randint(2, 999), r.randint(2, 999), r.choice(f["names"])),
    "email": lambda r, f: (
        f"Write a short email to {r.choice(f['names'])} about {r.choice(f['topics'])}.",
        f"Dear {r.choice(f['names'])},\n\n{r.choice(f['sentences'])}\n\nBest regards,\n{r.choice(f['names'])}",
    ),
    "qa": lambda r, f: (
        f"Read the passage and answer the question.\nPassage: {r.choice(f['passages'])}\n"
        "Question: What is the passage mainly about?",
        r.choice(f["sentences"]),
    ),
}


def fillers(base: dict[str, list[Record]], rng: random.Random) -> dict[str, list[str]]:
    docs = [r["text"] for r in rng.sample(base["web"] + base["wiki"] + base["c4"], 600)]
    sentences = [s.strip() for t in docs for s in re.split(r"(?<=[.!?])\s+", t) if 6 <= len(s.split()) <= 30]
    passages = [" ".join(t.split()[i : i + 60]) for t in docs for i in range(0, max(1, len(t.split()) - 60), 60)]
    names = sorted({w for s in sentences for w in s.split()[1:] if w.istitle() and w.isalpha() and len(w) > 3})[:2000]
    topics = [" ".join(s.split()[:4]).lower() for s in sentences[:3000]]
    return {"sentences": sentences, "passages": passages, "names": names, "topics": topics}
