"""Train the bundled reasoning classifier `curate/models/reasoning_v1.ftz` and evaluate it on data it
never saw (issue 4, `fasttext_classifier`).

    .venv/bin/python benchmarks/train_reasoning_classifier.py --shared /work/shared/data
    .venv/bin/python benchmarks/train_reasoning_classifier.py --shared /work/shared/data --eval-only

Training data: only sets whose license allows redistributing a model (MIT / Apache-2.0), read from
SHARED at run time, written as `messages` JSONL (one user turn, one assistant turn) into OUT, and
trained with `curate.train_classifier` (field = response, labels `reasoning` / `other`, seed 0,
thread 1: the same command gives the same model). See `positives()` and `negatives()` for the exact
rules. Evaluation: zero-shot-CoT outputs and GSM8K *test* answers (positives) against Alpaca, Code
Alpaca and LLaMA-Factory GPT-4 answers to non-reasoning prompts and zero-shot direct answers
(negatives), read at run time and used for evaluation only. Writes the figures section of
benchmarks/EVAL_CLASSIFIER.md (between the `figures` markers) and OUT/eval.json.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curate.classify import bundled_model, classifier_text, score_texts, train_classifier
from curate.classify.metrics import binary_scores, roc_auc
from curate.classify.model import load_classifier

CALC = re.compile(r"<<[^>]*>>")
FINAL = re.compile(r"\n?#### *(.+)\s*$")
#: Prompts about maths or logic (evaluation negatives must not match): the rule for "non-reasoning".
REASONING_PROMPT = re.compile(
    r"\d|calculat|comput|solve|equation|how many|how much|math|sum|total|average|percent|probabilit|"
    r"logic|reason|prove|puzzle|riddle|step|explain why|why|deduc|infer|evaluate|estimate|convert|"
    r"difference|multiply|divide|add |subtract|algorithm|complexity|number|factor|ratio|area|volume",
    re.I,
)
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
TRIGGERS = (
    "Let's think step by step.",
    "Let's work this out step by step.",
    "Let's solve it step by step.",
    "Step by step:",
)
STRUCTURE = re.compile(r"\b(first|firstly)\b.*\b(second|secondly|then|next)\b.*\b(finally|lastly|third)\b", re.I | re.S)


def chat(prompt: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def flan_rows(shared: Path) -> dict[str, list[list[str]]]:
    out = {}
    for f in sorted((shared / "flan_cot" / "cot_data").glob("*_train.tsv")):
        rows = list(csv.reader(f.open(encoding="utf-8"), delimiter="\t", quoting=csv.QUOTE_NONE))
        out[f.stem] = [[c.replace("\\n", "\n") for c in r] for r in rows if len(r) == 3]
    return out


def positives(shared: Path, rng: np.random.Generator) -> list[dict]:
    """GSM8K train answers (MIT): 4,000 sampled, half as published (`<<calc>>` annotations, `#### n`),
    half without annotations ending "The answer is n."; FLAN CoT rationales (Apache-2.0): 1,200 sampled
    per task file, followed by "So the answer is <answer>." (FLAN's CoT template; for the arithmetic
    sets aqua and gsm8k only every other one, the rationale alone ends in the result). One in five
    positives starts with a chain-of-thought trigger (`TRIGGERS`), as prompted CoT answers do."""
    out = []
    gsm = jsonl(shared / "gsm8k" / "train.jsonl")
    for i, k in enumerate(rng.choice(len(gsm), 4000, replace=False)):
        q, a = gsm[k]["question"], gsm[k]["answer"]
        if i % 2:
            m = FINAL.search(a)
            a = CALC.sub("", FINAL.sub("", a)) + (f"\nThe answer is {m.group(1).strip()}." if m else "")
        out.append(chat(q, a))
    for name, rows in flan_rows(shared).items():
        for i, k in enumerate(rng.choice(len(rows), min(1200, len(rows)), replace=False)):
            q, answer, rationale = rows[k]
            bare = name.startswith(("aqua", "gsm8k")) and i % 2
            out.append(chat(q, rationale + ("" if bare else f" So the answer is {answer}.")))
    for k in rng.choice(len(out), len(out) // 5, replace=False):
        trigger = TRIGGERS[int(rng.integers(len(TRIGGERS)))]
        out[k]["messages"][1]["content"] = trigger + "\n" + out[k]["messages"][1]["content"]
    return out


def snippets(text: str, rng: np.random.Generator, n: int) -> list[str]:
    """`n` random runs of 1-5 consecutive sentences from a long text (short prose without reasoning)."""
    sentences = [x.strip() for x in SENTENCE.split(" ".join(text.split())) if len(x.split()) >= 4]
    if len(sentences) < 6:
        return []
    out = []
    for start in rng.choice(len(sentences) - 5, min(n, len(sentences) - 5), replace=False):
        out.append(" ".join(sentences[start : start + int(rng.integers(1, 6))]))
    return out


def negatives(shared: Path, rng: np.random.Generator) -> list[dict]:
    """Answers without reasoning, all MIT / Apache-2.0: Self-Instruct instance outputs (seed and
    user-oriented tasks); T0/P3 completions (up to 60 per promptsource template); FLAN answer-only
    answers (the `answer` column of every CoT file, half as "The answer is <answer>."); SVAMP equations
    (half as "<equation> = <answer>"); web text (DCLM, Dolma, Data-Juicer CC/NIH/USPTO/demo samples; not
    arXiv or StackExchange, which hold worked reasoning), whole and as snippets of 1-5 sentences; snippets
    of the public-domain NLTK inaugural and State of the Union speeches and of the Project Gutenberg
    books; HumanEval canonical solutions (code)."""
    out = []
    for name in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        for task in jsonl(shared / "self_instruct" / name):
            for inst in task["instances"]:
                if inst["output"].strip():
                    out.append(chat(task["instruction"] + "\n\n" + inst["input"], inst["output"]))
    for f in sorted((shared / "t0_p3_templated" / "data_per_template").glob("*.jsonl")):
        rows = jsonl(f)
        for k in rng.permutation(len(rows))[:60]:
            out.append(chat(rows[k]["prompt"], rows[k]["completion"]))
    for rows in flan_rows(shared).values():
        for i, (q, answer, _) in enumerate(rows):
            out.append(chat(q, f"The answer is {answer}." if i % 2 else answer))
    for i, r in enumerate(json.loads((shared / "svamp" / "SVAMP.json").read_text(encoding="utf-8"))):
        eq = r["Equation"] + (f" = {r['Answer']}" if i % 2 else "")
        out.append(chat(r["Body"] + " " + r["Question"], eq))
    web = shared / "web_pretrain_samples"
    for f in sorted(web.glob("*.jsonl")):
        if "arxiv" in f.name or "stack" in f.name:
            continue
        out += [chat("Continue the text.", r["text"]) for r in jsonl(f) if r.get("text", "").strip()]
        out += [chat("Continue the text.", x) for r in jsonl(f) for x in snippets(r.get("text", ""), rng, 8)]
    for name in ("inaugural", "state_union"):
        with zipfile.ZipFile(shared / "nltk_corpora" / f"{name}.zip") as z:
            texts = [z.read(n).decode("utf-8", "replace") for n in sorted(z.namelist()) if n.endswith(".txt")]
        out += [chat("Write a paragraph.", x) for t in texts for x in snippets(t, rng, 20)]
    for f in sorted((shared / "gutenberg_gitenberg").glob("*.txt")):
        text = f.read_text(encoding="utf-8", errors="replace")
        body = text[len(text) // 10 : -len(text) // 10]  # not the Project Gutenberg header and license
        out += [chat("Tell a story.", x) for x in snippets(body, rng, 600)]
    with gzip.open(shared / "humaneval" / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as fh:
        out += [chat(r["prompt"], r["canonical_solution"]) for r in map(json.loads, fh)]
    return out


def zero_shot_logs(shared: Path, cot: bool) -> dict[str, list[str]]:
    """Per task, the answers in kojima-takeshi188/zero_shot_cot logs ("A: ..." up to "pred_before")."""
    out = {}
    for f in sorted((shared / "zero_shot_cot" / "log").glob("*_zero_shot_cot.log" if cot else "*_zero_shot.log")):
        blocks = f.read_text(encoding="utf-8", errors="replace").split("\nA:")[1:]
        out[f.name.split("_zero_shot")[0]] = [b.split("\npred_before")[0].strip() for b in blocks]
    return out


def alpaca_like(path: Path) -> list[tuple[str, str]]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [(r["instruction"] + "\n" + r.get("input", ""), r["output"]) for r in rows if r["output"].strip()]


def eval_sets(shared: Path) -> dict[str, tuple[bool, list[str]]]:
    """name → (is positive, answers). Negatives: answers whose prompt does not match REASONING_PROMPT."""
    plain = lambda rows: [a for p, a in rows if not REASONING_PROMPT.search(p)]  # noqa: E731
    alpaca = plain(alpaca_like(shared / "alpaca_52k" / "alpaca_data.json"))
    code = [x for f in ("code_alpaca_2k.json", "new_codealpaca.json") for x in alpaca_like(shared / "code_alpaca" / f)]
    cot = zero_shot_logs(shared, cot=True)
    sets = {"zero-shot-CoT outputs (12 tasks)": (True, [a for answers in cot.values() for a in answers])}
    for task, answers in cot.items():
        sets[f"  {task}"] = (True, answers)
    stripped = [
        a.removeprefix("Let's think step by step.").strip() for a in sets["zero-shot-CoT outputs (12 tasks)"][1]
    ]
    sets["  all 12, trigger sentence removed"] = (True, stripped)
    return sets | {
        "GSM8K test answers": (True, [r["answer"] for r in jsonl(shared / "gsm8k" / "test.jsonl")]),
        "Alpaca, non-reasoning prompts": (False, alpaca),
        "  of which long (>= 150 words)": (False, [a for a in alpaca if len(a.split()) >= 150]),
        "  of which First/Second/Finally lists": (False, [a for a in alpaca if STRUCTURE.search(a)]),
        "Code Alpaca, non-reasoning prompts": (False, plain(code)),
        "LLaMA-Factory alpaca_en_demo (GPT-4), non-reasoning": (
            False,
            plain(alpaca_like(shared / "llamafactory_demo" / "alpaca_en_demo.json")),
        ),
        "zero-shot direct answers (no CoT)": (
            False,
            [a for x in zero_shot_logs(shared, cot=False).values() for a in x],
        ),
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def train(shared: Path, out: Path, model: Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    write_jsonl(out / "positive.jsonl", positives(shared, rng))
    write_jsonl(out / "negative.jsonl", negatives(shared, rng))
    start = time.perf_counter()
    result = train_classifier(
        [str(out / "positive.jsonl")],
        [str(out / "negative.jsonl")],
        model,
        label="reasoning",
        negative_label="other",
        field="response",
        quantize=True,
        seed=seed,
    )
    before = result.heldout_before_quantize
    return {
        "train_counts": result.train_counts,
        "sources": result.sources,
        "dropped_conflicts": result.dropped_conflicts,
        "size_bytes": result.size_bytes,
        "seconds": round(time.perf_counter() - start, 1),
        "heldout": result.heldout.__dict__,
        "heldout_before_quantize": before.__dict__ if before else None,
    }


def evaluate(shared: Path, model_path: Path) -> dict:
    model = load_classifier(model_path)
    groups, labels, scores, lengths, keyword = {}, [], [], [], []
    kw = re.compile(r"step|therefore|because|so the answer|answer is|first,|then|thus|=", re.I)
    for name, (positive, answers) in eval_sets(shared).items():
        start = time.perf_counter()
        s = np.array(score_texts(model, [classifier_text(a) for a in answers], "reasoning"), dtype=float)
        rate = len(answers) / (time.perf_counter() - start)
        groups[name] = {
            "positive": positive,
            "n": len(answers),
            "mean_score": float(np.nanmean(s)),
            "share_ge_0.5": float(np.mean(s >= 0.5)),
            "records_per_s": round(rate),
        }
        if name.startswith("  "):
            continue  # subsets of the group above, not counted twice
        labels += [positive] * len(answers)
        scores += list(s)
        lengths += [len(a.split()) for a in answers]
        keyword += [bool(kw.search(a)) for a in answers]
    y, sc = np.array(labels), np.nan_to_num(np.array(scores, dtype=float))
    belle = jsonl(shared / "belle_zh" / "eval_set.json")  # JSON Lines despite the name
    zh = [(r["class"] == "math", r["std_answer"]) for r in belle if r["class"] not in ("code", "classification")]
    zh_scores = np.nan_to_num(np.array(score_texts(model, [classifier_text(a) for _, a in zh], "reasoning"), float))
    zh_labels = np.array([m for m, _ in zh])
    chinese = {
        "belle_math": int(zh_labels.sum()),
        "belle_other": int((~zh_labels).sum()),
        "auc": roc_auc(zh_labels, zh_scores),
        "math_share_ge_0.5": float((zh_scores[zh_labels] >= 0.5).mean()),
        "other_share_ge_0.5": float((zh_scores[~zh_labels] >= 0.5).mean()),
    }
    overall = binary_scores(y, sc).__dict__
    naive = {
        "answer length (words) AUC": roc_auc(y, np.array(lengths)),
        "keyword regex": binary_scores(y, np.array(keyword, dtype=float)).__dict__,
    }
    return {"groups": groups, "overall": overall, "naive": naive, "chinese": chinese}


def table(ev: dict, trained: dict | None) -> str:
    lines = ["| set | label | records | mean score | share >= 0.5 |", "|---|---|---:|---:|---:|"]
    for name, g in ev["groups"].items():
        lines.append(
            f"| {('↳ ' if name.startswith('  ') else '') + name.strip()} | "
            f"{'reasoning' if g['positive'] else 'other'} | {g['n']:,} | "
            f"{g['mean_score']:.3f} | {g['share_ge_0.5']:.3f} |"
        )
    o, kw = ev["overall"], ev["naive"]["keyword regex"]
    lines += [
        "",
        "| rule (all sets above, subsets counted once) | precision | recall | F1 | ROC AUC |",
        "|---|---:|---:|---:|---:|",
        f"| reasoning_v1 >= 0.5 | {o['precision']:.3f} | {o['recall']:.3f} | {o['f1']:.3f} | {o['auc']:.4f} |",
        f"| keyword regex (naive) | {kw['precision']:.3f} | {kw['recall']:.3f} | {kw['f1']:.3f} | {kw['auc']:.4f} |",
        f"| answer length (naive) | | | | {ev['naive']['answer length (words) AUC']:.4f} |",
        "",
        f"{o['n_positive']:,} positives, {o['n_negative']:,} negatives.",
        "",
        f"Chinese (not in the training data), BELLE eval set: {ev['chinese']['belle_math']} `math` answers against "
        f"{ev['chinese']['belle_other']} answers of the other classes except code and classification: ROC AUC "
        f"{ev['chinese']['auc']:.3f}; share >= 0.5: math {ev['chinese']['math_share_ge_0.5']:.3f}, "
        f"other {ev['chinese']['other_share_ge_0.5']:.3f}.",
    ]
    if trained:
        h, b = trained["heldout"], trained["heldout_before_quantize"]
        lines += [
            "",
            f"Held-out 10% of the training data ({h['n_positive']:,} reasoning, {h['n_negative']:,} other): "
            f"quantized (shipped) precision {h['precision']:.3f}, recall {h['recall']:.3f}, F1 {h['f1']:.3f}, "
            f"ROC AUC {h['auc']:.4f}; before quantization F1 {b['f1']:.3f}, ROC AUC {b['auc']:.4f}. "
            f"Trained on {trained['train_counts']} in {trained['seconds']} s; "
            f"model {trained['size_bytes'] / 1e6:.2f} MB.",
        ]
    return "\n".join(lines)


def write_md(path: Path, body: str) -> None:
    start, end = "<!-- figures -->", "<!-- /figures -->"
    text = (
        path.read_text(encoding="utf-8") if path.exists() else f"# Reasoning classifier evaluation\n\n{start}\n{end}\n"
    )
    head, rest = text.split(start, 1)
    path.write_text(head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "reasoning_classifier")
    ap.add_argument("--model", type=Path, default=bundled_model())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-only", action="store_true", help="evaluate --model without training")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trained = None if args.eval_only else train(args.shared, args.out, args.model, args.seed)
    if trained:
        print(json.dumps(trained, indent=1))
    ev = evaluate(args.shared, args.model.with_suffix(".ftz") if not args.eval_only else args.model)
    if args.eval_only and (args.out / "eval.json").exists():  # keep the training figures of the last run
        trained = json.loads((args.out / "eval.json").read_text()).get("trained")
    results = {"trained": trained, "eval": ev}
    (args.out / "eval.json").write_text(json.dumps(results, indent=1))
    body = table(ev, results["trained"])
    print(body)
    write_md(Path(__file__).resolve().parent / "EVAL_CLASSIFIER.md", body)


if __name__ == "__main__":
    main()
