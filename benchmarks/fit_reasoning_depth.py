"""Fit the coefficients of `reasoning_depth_v1` (curate/reasoning/reasoning_depth_v1.json).

    .venv/bin/python benchmarks/fit_reasoning_depth.py --shared /work/shared/data [--write]

Data: permissively licensed sets only (see /work/shared/data/README.md), never Alpaca / Code Alpaca
(CC BY-NC 4.0) or zero_shot_cot (no license):

- positives (label 1): GSM8K train answers (MIT); FLAN CoT rationales, all seven subsets (Apache-2.0).
- negatives (label 0): FLAN CoT answers without their rationale (Apache-2.0); SVAMP equation-only answers
  (MIT); HumanEval canonical solutions, code without explanation (MIT); LLaMA-Factory alpaca_en_demo and
  alpaca_zh_demo GPT-4 answers and Self-Instruct user-oriented instances (Apache-2.0), each only for
  instructions that are not maths/logic (`REASONING_PROMPT` does not match); T0/P3 completions
  (Apache-2.0).

Only the *fit split* is used: records whose `split_of(prompt, answer)` is "fit" (a hash of the text:
30%); `benchmarks/eval_reasoning_depth.py` evaluates on the other 70% and on sources never used here.
At most `--per-source` records per source (seeded sample); classes weighted to equal total weight.

Model: logistic regression on `curate.reasoning.depth.model_inputs()` with every weight constrained to
>= 0 (so that appending reasoning never lowers the score) and an L2 penalty, by scipy L-BFGS-B.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
from scipy.optimize import minimize

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from curate.reasoning.depth import add_features, model_inputs  # noqa: E402
from curate.tokens import DEFAULT_ENCODING  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from reasoning_sets import _split, is_reasoning_prompt, load_chinese, load_labelled  # noqa: E402

MODEL_JSON = REPO / "curate" / "reasoning" / "reasoning_depth_v1.json"
#: Sources of `reasoning_sets.load_labelled` whose licenses allow fitting shipped coefficients on them.
PERMISSIVE_SOURCES = ("gsm8k", "flan_cot", "flan_answer_only", "svamp_equation", "llamafactory")
#: Share of the total weight of each label that each group of sources gets in the fit.
GROUP_WEIGHTS = {
    1: {"gsm8k": 0.4, "flan_cot": 0.6},
    0: {
        "llamafactory": 0.3,  # long GPT-4 answers to non-reasoning instructions: the hard case
        "llamafactory_zh": 0.1,
        "self_instruct": 0.1,
        "flan_answer_only": 0.15,
        "svamp_equation": 0.1,
        "humaneval": 0.1,
        "t0_p3": 0.15,
    },
}


def to_records(prompts: list[str], answers: list[str]) -> pl.DataFrame:
    """Instruction records (user prompt, assistant answer) in curate's canonical columns."""
    return pl.DataFrame(
        {
            "kind": ["instruction"] * len(prompts),
            "text": [None] * len(prompts),
            "messages": [
                [{"role": "user", "content": p}, {"role": "assistant", "content": a}]
                for p, a in zip(prompts, answers, strict=True)
            ],
        },
        schema={
            "kind": pl.String,
            "text": pl.String,
            "messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
        },
    )


def _extra_negatives(shared: Path) -> list[dict]:
    """Permissive negatives beyond `reasoning_sets`: code without explanation, Self-Instruct, T0/P3."""
    rows: list[dict] = []

    def add(source: str, slice_: str, pairs) -> None:
        for prompt, answer in pairs:
            if answer and answer.strip():
                rows.append({"source": source, "prompt": prompt, "answer": answer, "label": 0, "slice": slice_})

    with gzip.open(shared / "humaneval" / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as f:
        add("humaneval", "code", ((h["prompt"], h["canonical_solution"]) for h in map(json.loads, f)))
    with open(shared / "self_instruct" / "user_oriented_instructions.jsonl", encoding="utf-8") as f:
        tasks = [json.loads(line) for line in f]
    pairs = [
        ("\n".join(x for x in (t["instruction"], i.get("input", "")) if x), i["output"])
        for t in tasks
        for i in t["instances"]
    ]
    add("self_instruct", "plain", ((p, a) for p, a in pairs if not is_reasoning_prompt(p)))
    t0 = []
    for path in sorted((shared / "t0_p3_templated" / "data_per_template").glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            t0 += [json.loads(line) for line in f]
    add("t0_p3", "plain", ((t["prompt"], t["completion"]) for t in t0))
    df = pl.DataFrame(rows)
    return df.with_columns(
        pl.struct("source", "prompt", "answer")
        .map_elements(lambda r: _split(r["source"], r["prompt"], r["answer"]), pl.String)
        .alias("split")
    )


def load_permissive(shared: Path) -> pl.DataFrame:
    """Every permissively licensed labelled record (dev and test splits): source, prompt, answer, label,
    slice, split. Rows of the non-permissive sources that `load_labelled` also reads are dropped here."""
    labelled = load_labelled(shared).filter(pl.col("source").is_in(PERMISSIVE_SOURCES))
    zh = load_chinese(shared).filter((pl.col("source") == "llamafactory_zh") & (pl.col("label") == 0))
    cols = ["source", "prompt", "answer", "label", "slice", "split"]
    extra = _extra_negatives(shared)
    return pl.concat([labelled.select(cols), zh.select(cols), extra.select(cols)], how="vertical_relaxed")


def design_matrix(df: pl.DataFrame) -> tuple[np.ndarray, list[str], pl.DataFrame]:
    """Features of labelled rows: (X, input names, the frame with every rd_* column)."""
    feats = add_features(to_records(df["prompt"].to_list(), df["answer"].to_list()), DEFAULT_ENCODING, 8)
    inputs = model_inputs(feats)
    names = sorted(inputs)
    x = np.column_stack([inputs[n] for n in names]).astype(np.float64)
    return x, names, pl.concat([df, feats.drop("kind", "text", "messages")], how="horizontal")


def fit_logistic(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float, floors: list[float] | None = None
) -> tuple[float, np.ndarray]:
    """Weighted logistic regression, coefficients >= `floors` (default 0; intercept free), L2 penalty."""

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] + x @ theta[1:]
        p = 1.0 / (1.0 + np.exp(-z))
        nll = np.sum(w * (np.logaddexp(0.0, z) - y * z)) / w.sum()
        g = w * (p - y) / w.sum()
        grad = np.concatenate([[g.sum()], x.T @ g])
        grad[1:] += 2 * l2 * theta[1:]
        return nll + l2 * float(theta[1:] @ theta[1:]), grad

    bounds = [(None, None)] + [(f, None) for f in (floors or [0.0] * x.shape[1])]
    res = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds)
    if not res.success:
        raise RuntimeError(f"fit did not converge: {res.message}")
    return float(res.x[0]), res.x[1:]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties count one half)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fit_weights(data: pl.DataFrame) -> np.ndarray:
    """Per-row weights: each source group gets its `GROUP_WEIGHTS` share of its label's half of the weight."""
    counts = data.group_by("source").len()
    n = dict(zip(counts["source"], counts["len"], strict=True))
    share = {src: part for groups in GROUP_WEIGHTS.values() for src, part in groups.items()}
    return np.array([0.5 * share[s] / n[s] for s in data["source"]]) * data.height


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--per-source", type=int, default=3000)
    ap.add_argument("--l2", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--min-steps-weight",
        type=float,
        default=0.4,
        help="lower bound of the step-count weight, so that the score is graded by steps (see EVAL_REASONING_DEPTH.md)",
    )
    ap.add_argument("--write", action="store_true", help=f"write {MODEL_JSON.relative_to(REPO)}")
    args = ap.parse_args()

    data = load_permissive(args.shared).filter(pl.col("split") == "dev")
    data = data.filter(pl.int_range(pl.len()).shuffle(seed=args.seed).over("source") < args.per_source)
    x, names, _ = design_matrix(data)
    y = data["label"].to_numpy().astype(np.float64)
    floors = [args.min_steps_weight if n == "steps" else 0.0 for n in names]
    intercept, coef = fit_logistic(x, y, fit_weights(data), args.l2, floors)
    z = intercept + x @ coef
    counts = data.group_by("source", "label").len().sort("source")
    fit_auc = auc(z, y.astype(int))
    print(counts)
    print(f"fit AUC (dev split, in sample, unweighted) {fit_auc:.4f}")
    for src in data["source"].unique().sort():
        if src not in GROUP_WEIGHTS[1]:
            keep = (data["source"] == src).to_numpy() | (y == 1)
            print(f"  vs {src:18s} {auc(z[keep], y[keep].astype(int)):.4f}")
    for n, c in zip(names, coef, strict=True):
        print(f"  {n:22s} {c:.4f}")
    print(f"  {'intercept':22s} {intercept:.4f}")
    model = {
        "version": "reasoning_depth_v1",
        "formula": "sigmoid(intercept + sum(weight * input)); inputs: steps = sqrt(min(rd_steps, 20)), "
        "log1p of the other rd_* counts (connectives as a count), rd_code_explained as 0/1, "
        "log1p(rd_answer_prompt_ratio, null -> 0); 0 for an empty answer",
        "intercept": round(intercept, 6),
        "weights": {n: round(float(c), 6) for n, c in zip(names, coef, strict=True)},
        "fitted_on": {
            "script": "benchmarks/fit_reasoning_depth.py",
            "split": "the 'dev' half of benchmarks/reasoning_sets.py (hash of source, prompt, answer); "
            "the evaluation reports the 'test' half",
            "per_source_cap": args.per_source,
            "seed": args.seed,
            "l2": args.l2,
            "min_steps_weight": args.min_steps_weight,
            "group_weights": {str(k): v for k, v in GROUP_WEIGHTS.items()},
            "licenses": "GSM8K, SVAMP, HumanEval: MIT; FLAN CoT, LLaMA-Factory demo, Self-Instruct, T0/P3: "
            "Apache-2.0. No Alpaca, Code Alpaca (CC BY-NC) or zero_shot_cot (no license).",
            "records": {f"{r['source']}:{r['label']}": r["len"] for r in counts.iter_rows(named=True)},
            "in_sample_auc": round(fit_auc, 4),
        },
    }
    if args.write:
        MODEL_JSON.write_text(json.dumps(model, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {MODEL_JSON}")


if __name__ == "__main__":
    main()
