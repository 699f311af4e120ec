"""Quality and speed of `diversity` and `diverse_select` on real data (issue 4, quality item 3).

    .venv/bin/python benchmarks/eval_diversity.py --shared ../shared/data        # or: make eval-diversity

Reads the development data at run time (nothing is copied into the package):

1. Template coverage on `t0_p3_templated/data_per_template` pooled (one JSONL per promptsource template,
   file name = ground-truth template; the 11 empty trec_* files are skipped): 143 templates, 28,337
   records, as instruction records (prompt = user turn). For each seed the pool is put in a seeded
   random order; "random" takes the first B records of that order (a uniform sample without
   replacement), `diverse_select` visits the same order (no `rank_by`) with a budget of B records. So
   both see the same records in the same order and differ only in the similarity rule. Templates
   covered = distinct file names among the selected records; mean ± sd over `--seeds` seeds.
   Settings (`SETTINGS`): `frame` 0 (whole prompt) or 8, `center` off/on, `min_df` 0/5/10, and
   max_similarity 0.3-0.9. The sweep calls `curate.diversity.select.greedy_select` on the vectors the
   stage's barrier builds (`pool_vectors`); at every budget the recommended setting is checked to give
   exactly the stage's own result (`DiverseSelect(...).process`).
   An imbalanced variant keeps, per template (in a seeded order of templates), ceil(200 / rank)
   records (Zipf, exponent 1): a few large templates and many small ones, as in real instruction
   collections; budgets are scaled to the same 7% share of the pool as 2,000 of 28,337 (and 700).
   1c: on Alpaca (templates unknown), how many records each setting visits to select 2,000.
2. `diversity` approximation: exact kNN novelty against the IVF approximation on the P3 pool (mean
   absolute difference, Spearman rank correlation), and the templates of lowest and highest mean
   novelty.
3. Dataset metrics (`curate.diversity.metrics.dataset_metrics`, 2,000-record seeded samples) of P3
   pooled, one P3 template, Alpaca (instructions), GSM8K (questions) and LLaMA-Factory's identity set.
4. Speed: P3 + Alpaca pooled (80,339 records) and cycled to 100,000 (copies made distinct by a
   ` (copy N)` suffix), as an in-memory frame; `Diversity().apply_with_reasons`, and
   `DiverseSelect` with max_records = 20,000 (whole text, and the recommended defaults) each in a fresh
   process: wall time (map step + barrier), records/s, peak RSS (ru_maxrss of that process) and the
   RSS after loading the frame, before the stage.

Writes OUT/results.json and the figures section of benchmarks/EVAL_DIVERSITY.md (between the
`figures` markers; the hand-written analysis around them is kept).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from curate.diversity.knn import novelty  # noqa: E402
from curate.diversity.metrics import dataset_metrics, sample_indices  # noqa: E402
from curate.diversity.select import ACCEPTED, greedy_select  # noqa: E402
from curate.diversity.vectors import center, feature_ids, hashed_vectors, vectors_from_ids  # noqa: E402
from curate.stages import DiverseSelect, Diversity  # noqa: E402

MD_START, MD_END = "<!-- figures:start -->", "<!-- figures:end -->"
# (frame, center, min_df, max_similarity)
SETTINGS = (
    *((0, False, 0, t) for t in (0.3, 0.5, 0.7, 0.9)),
    *((8, False, 0, t) for t in (0.3, 0.5, 0.7)),
    *((8, True, 0, t) for t in (0.3, 0.5)),
    *((8, False, 5, t) for t in (0.4, 0.5, 0.6)),
    *((8, False, 10, t) for t in (0.5, 0.6)),
)
RECOMMENDED = (8, False, 5, 0.5)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def chat_frame(prompts: list[str], responses: list[str], source: str, **extra: Any) -> pl.DataFrame:
    n = len(prompts)
    return pl.DataFrame(
        {
            "id": [f"{source}-{i}" for i in range(n)],
            "source": [source] * n,
            "kind": ["instruction"] * n,
            "text": [None] * n,
            "messages": [
                [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
                for p, r in zip(prompts, responses, strict=True)
            ],
            "n_tokens": [max(1, len(p.split()) + len(r.split())) for p, r in zip(prompts, responses, strict=True)],
            "meta": ["{}"] * n,
            **extra,
        },
        schema_overrides={"text": pl.String, "n_tokens": pl.Int64},
    )


def load_p3(shared: Path) -> pl.DataFrame:
    prompts, completions, templates = [], [], []
    for path in sorted((shared / "t0_p3_templated" / "data_per_template").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                prompts.append(row["prompt"])
                completions.append(row["completion"])
                templates.append(path.stem)
    return chat_frame(prompts, completions, "p3", template=templates)


def load_alpaca(shared: Path) -> pl.DataFrame:
    rows = json.loads((shared / "alpaca_52k" / "alpaca_data.json").read_text(encoding="utf-8"))
    prompts = [r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "") for r in rows]
    return chat_frame(prompts, [r["output"] or "-" for r in rows], "alpaca")


def prompts_of(frame: pl.DataFrame) -> pl.Series:
    return frame["messages"].list.first().struct.field("content")


def mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.1f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.1f}"


# ------------------------------------------------------------------------------------------ 1. coverage


def setting_name(setting: tuple) -> str:
    frame, centred, min_df, threshold = setting
    return f"frame={frame} center={centred} min_df={min_df} max_similarity={threshold}"


def pool_vectors(texts: pl.Series, frame: int, centred: bool, min_df: int) -> np.ndarray:
    """The vectors the stage's barrier compares, for a whole pool of candidates."""
    ids, owner = feature_ids(texts, frame)
    vectors = vectors_from_ids(ids, owner, len(texts), 256, min_df)
    return center(vectors) if centred else vectors


def coverage(pool: pl.DataFrame, budgets: list[int], seeds: int, check_stage: bool) -> dict[str, Any]:
    """Templates covered by random samples and by greedy selection, per budget and setting."""
    templates = pool["template"].to_numpy()
    n = pool.height
    vectors = {key: pool_vectors(prompts_of(pool), *key) for key in {s[:3] for s in SETTINGS}}
    out: dict[str, Any] = {"records": n, "templates": len(set(templates.tolist())), "budgets": {}}
    for budget in budgets:
        orders = [np.random.default_rng(seed).permutation(n) for seed in range(seeds)]
        row: dict[str, Any] = {"random": [len(set(templates[o[:budget]].tolist())) for o in orders]}
        for setting in SETTINGS:
            covered, selected = [], []
            for o in orders:
                status = greedy_select(vectors[setting[:3]][o], np.ones(n), setting[3], max_records=budget)
                chosen = o[status == ACCEPTED]
                covered.append(len(set(templates[chosen].tolist())))
                selected.append(len(chosen))
            row[setting_name(setting)] = {"covered": covered, "selected": selected}
        if check_stage:  # the sweep's numbers are the stage's numbers
            o = orders[0]
            frame, centred, min_df, threshold = RECOMMENDED
            stage = DiverseSelect(threshold, budget, frame=frame, center=centred, min_df=min_df)
            kept = stage.process(pool[o].with_columns(pl.Series("n_tokens", np.ones(n, dtype=np.int64))))
            swept = row[setting_name(RECOMMENDED)]["covered"][0]
            if kept["template"].n_unique() != swept:
                raise SystemExit(
                    f"stage and sweep disagree at budget {budget}: {kept['template'].n_unique()} vs {swept}"
                )
        out["budgets"][str(budget)] = row
        log(f"  budget {budget}: random {mean_sd(row['random'])}")
    return out


def unstructured(shared: Path, budget: int = 2000) -> dict[str, Any]:
    """Alpaca (no template labels) in a seeded order: how many records each setting visits to select
    `budget` (records visited per record selected: 1 = nothing rejected)."""
    texts = prompts_of(load_alpaca(shared))
    order = np.random.default_rng(0).permutation(len(texts))
    out = {}
    for key in sorted({s[:3] for s in SETTINGS}):
        vectors = pool_vectors(texts, *key)[order]
        for setting in (s for s in SETTINGS if s[:3] == key):
            status = greedy_select(vectors, np.ones(len(texts)), setting[3], max_records=budget)
            chosen = np.flatnonzero(status == ACCEPTED)
            visited = int(chosen[-1]) + 1 if len(chosen) else 0
            out[setting_name(setting)] = {"selected": len(chosen), "visited": visited}
    return out


def zipf_pool(p3: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Per template (seeded order), its first ceil(200 / rank) records."""
    names = sorted(p3["template"].unique().to_list())
    order = np.random.default_rng(seed).permutation(len(names))
    keep = {names[i]: math.ceil(200 / (rank + 1)) for rank, i in enumerate(order)}
    ranked = p3.with_columns(pl.int_range(pl.len()).over("template").alias("_k"))
    return ranked.filter(pl.col("_k") < pl.col("template").replace_strict(keep)).drop("_k")


# ------------------------------------------------------------------------------------------ 2. novelty


def novelty_check(p3: pl.DataFrame) -> dict[str, Any]:
    vectors = center(hashed_vectors(prompts_of(p3), 256, 8))
    t0 = time.perf_counter()
    exact, _ = novelty(vectors, 10, seed=0, exact_limit=len(vectors))
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    approx, cells = novelty(vectors, 10, seed=0)
    t_approx = time.perf_counter() - t0
    ok = ~np.isnan(exact) & ~np.isnan(approx)
    rank = pl.DataFrame({"a": exact[ok], "b": approx[ok]}).select(pl.corr("a", "b", method="spearman")).item()
    frame = p3.with_columns(pl.Series("d", approx))
    per_template = frame.group_by("template").agg(pl.col("d").mean()).sort("d")
    return {
        "records": len(vectors),
        "cells": len(set(cells.tolist())),
        "exact_seconds": round(t_exact, 2),
        "approx_seconds": round(t_approx, 2),
        "mean_abs_diff": round(float(np.abs(exact[ok] - approx[ok]).mean()), 4),
        "approx_minus_exact_mean": round(float((approx[ok] - exact[ok]).mean()), 4),
        "spearman": round(float(rank), 4),
        "mean_exact": round(float(exact[ok].mean()), 4),
        "lowest_templates": [(r["template"], round(r["d"], 3)) for r in per_template.head(3).iter_rows(named=True)],
        "highest_templates": [(r["template"], round(r["d"], 3)) for r in per_template.tail(3).iter_rows(named=True)],
    }


# ------------------------------------------------------------------------------------------ 3. metrics


def metric_table(shared: Path, p3: pl.DataFrame) -> dict[str, Any]:
    gsm = [json.loads(x)["question"] for x in (shared / "gsm8k" / "train.jsonl").read_text().splitlines() if x]
    identity = json.loads((shared / "llamafactory_demo" / "identity.json").read_text(encoding="utf-8"))
    alpaca = prompts_of(load_alpaca(shared))
    sets = {
        "P3 pooled (143 templates)": prompts_of(p3),
        "P3 one template (glue_qqp_duplicate)": prompts_of(p3.filter(pl.col("template") == "glue_qqp_duplicate")),
        "Alpaca prompts": alpaca,
        "GSM8K train questions": pl.Series(gsm),
        "LLaMA-Factory identity (templated)": pl.Series([r["instruction"] for r in identity]),
    }
    out = {}
    for name, texts in sets.items():
        sample = texts[sample_indices(len(texts), 2000, 0)]
        out[name] = dataset_metrics(sample)
    return out


# ------------------------------------------------------------------------------------------ 4. speed


def speed_frame(shared: Path, records: int) -> pl.DataFrame:
    pool = pl.concat([load_p3(shared).drop("template"), load_alpaca(shared)])
    copies = []
    for copy in range(math.ceil(records / pool.height)):
        part = (
            pool
            if copy == 0
            else pool.with_columns(
                pl.col("messages").list.eval(
                    pl.struct(
                        pl.element().struct.field("role"),
                        pl.concat_str(pl.element().struct.field("content"), pl.lit(f" (copy {copy})")).alias("content"),
                    )
                )
            )
        )
        copies.append(part)
    frame = pl.concat(copies).head(records)
    return frame.with_columns(pl.format("r{}", pl.int_range(pl.len())).alias("id"))


def speed_child(shared: Path, records: int, which: str) -> dict[str, Any]:
    frame = speed_frame(shared, records)
    rss_frame = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    frame_, centred, min_df, threshold = RECOMMENDED
    stage = {
        "diversity": Diversity(),
        "diverse_select (whole text)": DiverseSelect(threshold, 20_000, frame=0, min_df=0),
        "diverse_select (recommended)": DiverseSelect(threshold, 20_000, frame=frame_, center=centred, min_df=min_df),
    }[which]
    t0 = time.perf_counter()
    out = stage.apply_with_reasons(frame)
    seconds = time.perf_counter() - t0
    result = {
        "stage": which,
        "records": frame.height,
        "seconds": round(seconds, 2),
        "records_per_s": round(frame.height / seconds),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_loading_mb": rss_frame,
        "config": stage.to_table(),
    }
    if which == "diversity":
        result["diversity_mean"] = round(float(out["diversity"].mean()), 4)
    else:
        result["dropped"] = out["_drop"].value_counts().sort("_drop").to_dicts()
    return result


def speed(shared: Path, records: int) -> list[dict[str, Any]]:
    results = []
    for which in ("diversity", "diverse_select (whole text)", "diverse_select (recommended)"):
        cmd = [sys.executable, __file__, "--shared", str(shared), "--speed-child", which, "--records", str(records)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        log(f"  {results[-1]}")
    return results


def build_speed(shared: Path, records: int, out: Path) -> list[dict[str, Any]]:
    """`curate build` (workers = 1, fresh process and work dir each) on the speed records written as
    JSONL: without stages (baseline: read, token count, write) and with diversity + diverse_select."""
    data = out / f"speed-{records}.jsonl"
    if not data.exists():
        frame = speed_frame(shared, records)
        turns = frame["messages"]
        pl.DataFrame(
            {
                "prompt": turns.list.first().struct.field("content"),
                "response": turns.list.last().struct.field("content"),
            }
        ).write_ndjson(data)
    results = []
    for name, stages in (
        ("baseline (no stages)", []),
        ("diversity + diverse_select", [{"use": "diversity"}, {"use": "diverse_select", "max_records": 20_000}]),
    ):
        config = {
            "pipeline": {"name": "speed", "output": str(out / "build-out")},
            "sources": [
                {
                    "name": "pool",
                    "path": str(data),
                    "format": "prompt_response",
                    "fields": {"prompt": "prompt", "response": "response"},
                }
            ],
            "stages": stages,
        }
        path = out / "speed.json"
        path.write_text(json.dumps(config))
        work = out / "build-work"
        subprocess.run(["rm", "-rf", str(work)], check=True)
        code = (
            "import json, sys, curate; r = curate.build(json.load(open(sys.argv[1])), work_dir=sys.argv[2], workers=1);"
            "print(json.dumps(r.run))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(path), str(work)], check=True, capture_output=True, text=True
        )
        run = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(
            {
                "build": name,
                "records": records,
                "seconds": run["seconds"],
                "timings": run["timings"],
                "peak_rss_mb": run["peak_rss_mb"],
            }
        )
        log(f"  {results[-1]}")
    return results


# ------------------------------------------------------------------------------------------ report


def coverage_table(cov: dict[str, Any], budgets: list[int]) -> list[str]:
    keys = [k for k in cov["budgets"][str(budgets[0])] if k != "random"]
    lines = [
        "| setting | " + " | ".join(f"B = {b:,}" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
        "| random sample | " + " | ".join(mean_sd(cov["budgets"][str(b)]["random"]) for b in budgets) + " |",
    ]
    for key in keys:
        cells = []
        for b in budgets:
            row, rnd = cov["budgets"][str(b)][key], np.mean(cov["budgets"][str(b)]["random"])
            short = " (n<B)" if min(row["selected"]) < b else ""
            cells.append(f"{mean_sd(row['covered'])} ({np.mean(row['covered']) / rnd:.2f}x){short}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def report(results: dict[str, Any], budgets: list[int], zipf_budgets: list[int]) -> str:
    cov, zipf = results["coverage"], results["coverage_zipf"]
    lines = [
        f"Run: `benchmarks/eval_diversity.py`, {results['seeds']} seeds, {results['seconds']:.0f} s.",
        "",
        f"### 1a. P3 pooled: templates covered ({cov['records']:,} records, {cov['templates']} templates)",
        "",
        "Mean ± sd over seeds; in brackets the ratio to the random sample's mean; `(n<B)`: the threshold let",
        "fewer than B records through.",
        "",
        *coverage_table(cov, budgets),
        "",
        f"### 1b. Imbalanced P3 (Zipf template sizes: {zipf['records']:,} records, {zipf['templates']} templates)",
        "",
        *coverage_table(zipf, zipf_budgets),
        "",
        f"### 1c. Alpaca (no templates known): records visited to select {results['unstructured_budget']:,}",
        "",
        "| setting | selected | visited | visited per selected |",
        "|---|---|---|---|",
        *(
            f"| {k} | {v['selected']:,} | {v['visited']:,} | {v['visited'] / max(1, v['selected']):.2f} |"
            for k, v in results["unstructured"].items()
        ),
        "",
        "### 2. `diversity`: IVF approximation against exact kNN (P3 pooled, frame = 8, k = 10)",
        "",
        "| records | cells | exact s | approx s | mean abs diff | approx - exact | Spearman | mean novelty |",
        "|---|---|---|---|---|---|---|---|",
    ]
    nv = results["novelty"]
    lines += [
        f"| {nv['records']:,} | {nv['cells']} | {nv['exact_seconds']} | {nv['approx_seconds']} | {nv['mean_abs_diff']} "
        f"| {nv['approx_minus_exact_mean']} | {nv['spearman']} | {nv['mean_exact']} |",
        "",
        f"Least novel templates: {nv['lowest_templates']}; most novel: {nv['highest_templates']}.",
        "",
        "### 3. Dataset metrics (seeded 2,000-record samples, whole prompt)",
        "",
        "| set | records | distinct-1 | distinct-2 | mean pairwise distance | clusters | clustered share "
        "| cluster entropy (norm) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results["metrics"].items():
        lines.append(
            f"| {name} | {m['records']:,} | {m['distinct_1']:.3f} | {m['distinct_2']:.3f} | "
            f"{m['mean_pairwise_distance']:.3f} | {m['clusters']} | {m['clustered_share']:.3f} | "
            f"{m['cluster_entropy_norm']:.3f} |"
        )
    lines += [
        "",
        "### 4. Speed (one process, in-memory frame, this machine)",
        "",
        "| stage | config | records | seconds | records/s | peak RSS (MB) | RSS before the stage (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in results["speed"]:
        lines.append(
            f"| {s['stage']} | `{s['config']}` | {s['records']:,} | {s['seconds']} | {s['records_per_s']:,} "
            f"| {s['peak_rss_mb']:,} | {s['rss_after_loading_mb']:,} |"
        )
    if results.get("build_speed"):
        lines += [
            "",
            "Through `curate build` (JSONL in, parquet + JSONL out, workers = 1, fresh work dir):",
            "",
            "| build | records | seconds | timings (s) | peak RSS (MB) |",
            "|---|---|---|---|---|",
            *(
                f"| {b['build']} | {b['records']:,} | {b['seconds']} | {b['timings']} | {b['peak_rss_mb']:,} |"
                for b in results["build_speed"]
            ),
        ]
    return "\n".join(lines)


def write_markdown(text: str) -> None:
    path = HERE / "EVAL_DIVERSITY.md"
    old = path.read_text() if path.exists() else f"# Diversity evaluation\n\n{MD_START}\n{MD_END}\n"
    head, rest = old.split(MD_START, 1)
    tail = rest.split(MD_END, 1)[1]
    path.write_text(f"{head}{MD_START}\n{text}\n{MD_END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "diversity")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--records", type=int, default=100_000, help="speed test size")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--report-only", action="store_true", help="rewrite the markdown from OUT/results.json")
    parser.add_argument("--speed-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speed_child:
        print(json.dumps(speed_child(args.shared, args.records, args.speed_child)))
        return
    budgets = [50, 100, 143, 300, 1000, 2000]
    if args.report_only:
        results = json.loads((args.out / "results.json").read_text())
        zipf_budgets = [int(b) for b in results["coverage_zipf"]["budgets"]]
        write_markdown(report(results, budgets, zipf_budgets))
        return
    started = time.perf_counter()
    p3 = load_p3(args.shared)
    log("1. coverage, P3 pooled")
    results: dict[str, Any] = {"seeds": args.seeds, "coverage": coverage(p3, budgets, args.seeds, check_stage=True)}
    zipf = zipf_pool(p3, 0)
    zipf_budgets = [round(b * zipf.height / p3.height) for b in (700, 2000)] + [143]
    log(f"1b. coverage, Zipf pool of {zipf.height} records, budgets {zipf_budgets}")
    results["coverage_zipf"] = coverage(zipf, zipf_budgets, args.seeds, check_stage=False)
    log("1c. Alpaca")
    results["unstructured_budget"] = 2000
    results["unstructured"] = unstructured(args.shared, 2000)
    log("2. novelty approximation")
    results["novelty"] = novelty_check(p3)
    log("3. dataset metrics")
    results["metrics"] = metric_table(args.shared, p3)
    log("4. speed")
    results["speed"] = [] if args.no_speed else speed(args.shared, args.records)
    args.out.mkdir(parents=True, exist_ok=True)
    results["build_speed"] = [] if args.no_speed else build_speed(args.shared, args.records, args.out)
    results["seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    text = report(results, budgets, zipf_budgets)
    write_markdown(text)
    print(text)


if __name__ == "__main__":
    main()
