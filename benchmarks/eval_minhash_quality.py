"""Quality of `minhash_dedup` on real data (issue 3, "Quality"): template recovery, near-duplicate
recall/precision, Alpaca templates, short texts.

    .venv/bin/python benchmarks/eval_minhash_quality.py --shared /work/shared/data

1. P3 template recovery (`t0_p3_templated/data_per_template`, one JSONL per promptsource template, file
   name = label, empty files skipped): all files pooled and built with `curate.build` (one source per
   file), `minhash_dedup` with `fields = "prompt"`, `template = true`, defaults otherwise. Cluster of every
   record: `dup_cluster` of kept records (shards), `near_duplicate:<cluster>` of dropped ones (ledger);
   singletons are their own cluster. Homogeneity, completeness and V-measure (numpy, from the
   contingency table, natural log, as scikit-learn) against the file names, and against "wording
   labels" (templates whose prompts share exactly the same fixed text are merged, see `oracle_skeletons`).
   A sweep over threshold 0.5-0.8 x ngram 3/4/5 and the `template = false` baseline use
   `MinhashDedup(...).apply_with_reasons` on the same records (`curate.read_source` per file).
   Failure analysis: most mixed clusters, label pairs merged, labels split, and per label the share of
   records left without template n-grams (unstructured) or whose template n-grams the passage rule
   removed (recomputed with the stage's own shingling and `template_mask`).
2. Near duplicates: 2,500 Alpaca + 2,500 Code Alpaca records (seeded sample, empty outputs skipped as
   curate quarantines them), one perturbed copy each at a target word 5-gram Jaccard drawn from
   U(0.5, 1.0) (word insertions from the sample's vocabulary, deletions, adjacent swaps), 10% of copies
   changing only case and spacing (Jaccard 1). True Jaccard of every pair of the 10,000 records is
   computed exactly on the shingle sets *as curate builds them* (`curate.minhash.shingles`: field text
   with `fields = "all"`, fold, word units, 5-grams; the strings, before curate's 32-bit hashing), with a
   sparse product. Stage: `fields = "all"`, `template = false`, `threshold = 0.8`, `ngram = 5`.
   Recall over all pairs with Jaccard >= 0.85 (found = same cluster); precision = 1 - (pairs in one
   cluster with Jaccard < 0.7) / (pairs in one cluster). Per Jaccard bucket the merge rate of the
   designed pairs beside a Monte Carlo model of banding + verification with the stage's bands/rows.
3. All of Alpaca with `fields = "prompt"`, `template = true`, `keep_per_cluster = 3` (curate.build):
   clusters of size >= 2 and >= 5, the 10 largest skeletons from templates.jsonl, records removed.
   Also with `include_input = false`.
4. Short texts: real 1-4-word instructions (Alpaca without input, Self-Instruct seed and user-oriented,
   Code Alpaca), `fields = "prompt"`, template false and true: every record whose folded text
   (skeleton for template = true) differs from all others must be kept; pairs of different texts in
   one cluster are listed. The same check on the short records inside the full-Alpaca run of (3).
5. (skip with --no-prototype) The skeleton changes suggested in EVAL_MINHASH.md, prototyped here, outside
   curate: the stage's decision rebuilt from curate's own functions with changed shingles, on P3.

Outputs: OUT/results.json, OUT/* build outputs, and the figures section of benchmarks/EVAL_MINHASH.md
(between the `figures` markers; the hand-written analysis around them is kept).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from datasketch.lsh import _optimal_param
from scipy.sparse import csr_matrix

import curate
from curate.minhash import shingles
from curate.stages import MinhashDedup
from curate.stages.base import Context

ROOT = Path(__file__).resolve().parent.parent
MD_START, MD_END = "<!-- figures:start -->", "<!-- figures:end -->"
P3_DIR = "t0_p3_templated/data_per_template"
P3_FIELDS = {"prompt": "prompt", "response": "completion"}
ORACLE_SHARE = 0.9  # a trigram is fixed text of a template when >= 90% of its records contain it
SHORT_MAX_WORDS = 4
JACCARD_BUCKETS = [0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.0001]


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- metrics


def v_measure(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """Homogeneity, completeness and V-measure (beta = 1) from the contingency table."""
    _, a = np.unique(labels, return_inverse=True)
    _, b = np.unique(clusters, return_inverse=True)
    n = len(a)
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=np.float64)
    np.add.at(table, (a, b), 1.0)

    def entropy(counts: np.ndarray) -> float:
        p = counts[counts > 0] / n
        return float(-(p * np.log(p)).sum())

    rows, cols = table.sum(1), table.sum(0)
    i, j = np.nonzero(table)
    nij = table[i, j]
    h_label_given_cluster = float(-(nij / n * np.log(nij / cols[j])).sum())
    h_cluster_given_label = float(-(nij / n * np.log(nij / rows[i])).sum())
    h_label, h_cluster = entropy(rows), entropy(cols)
    homogeneity = 1.0 if h_label == 0 else 1.0 - h_label_given_cluster / h_label
    completeness = 1.0 if h_cluster == 0 else 1.0 - h_cluster_given_label / h_cluster
    v = 0.0 if homogeneity + completeness == 0 else 2 * homogeneity * completeness / (homogeneity + completeness)
    return {"homogeneity": homogeneity, "completeness": completeness, "v_measure": v}


def stage_clusters(out: pl.DataFrame) -> np.ndarray:
    """Cluster label of every row of `apply_with_reasons` output (kept: dup_cluster; dropped: reason)."""
    labels = out.select(
        pl.coalesce(pl.col("_drop").str.strip_prefix("near_duplicate:"), pl.col("dup_cluster"))
    ).to_series()
    if labels.null_count():
        raise RuntimeError(f"{labels.null_count()} rows without a cluster")
    return labels.to_numpy()


def build_clusters(out_dir: Path) -> pl.DataFrame:
    """Ledger of a build with the cluster of every record (kept: shards' dup_cluster; dropped: reason)."""
    ledger = pl.read_parquet(out_dir / "ledger.parquet").with_row_index("_pos")
    shards = pl.concat(
        [pl.read_parquet(f).select("id", "dup_cluster", "dup_cluster_size") for f in sorted(out_dir.glob("shards/*"))]
    )
    out = ledger.join(shards, on="id", how="left").sort("_pos")
    out = out.with_columns(
        pl.when(pl.col("status") == "kept")
        .then(pl.col("dup_cluster"))
        .otherwise(pl.col("reason").str.strip_prefix("near_duplicate:"))
        .alias("cluster")
    )
    live = out.filter(pl.col("status") != "quarantined")
    if live["cluster"].null_count():
        raise RuntimeError(f"{out_dir}: {live['cluster'].null_count()} records without a cluster")
    return out


def fresh_build(config: dict, out: Path, name: str) -> tuple[Path, dict, float]:
    target, work = out / name, out / "work" / name
    shutil.rmtree(work, ignore_errors=True)
    start = time.perf_counter()
    result = curate.build(config, base_dir=out, output=target, work_dir=work)
    seconds = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)
    return target, result.manifest, seconds


def read_templates(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def curate_ngram_sets(df: pl.DataFrame, fields: str, template: bool, n: int) -> list[set[str]]:
    """Shingle sets as curate builds them, as strings: curate hashes the same windows of units
    (`curate.minhash.signature.ngram_hashes`)."""
    folded = shingles.fold(shingles.field_text(fields, True).fill_null(""), template)
    frame = df.select(shingles.units(folded, "auto").alias("u"), shingles.by_words(folded, "auto").alias("w"))
    units = frame["u"]
    if template:
        units = pl.Series([["\x02", *u, "\x03"] if u else [] for u in units.to_list()], dtype=pl.List(pl.String))
    seps = [" " if w else "" for w in frame["w"].to_list()]
    return [
        {sep.join(u[i : i + n]) for i in range(len(u) - n + 1)} if len(u) >= n else ({sep.join(u)} if u else set())
        for u, sep in zip(units.to_list(), seps, strict=True)
    ]


def _placeholders(text: pl.Expr) -> pl.Expr:
    """Steps 1-4 of curate's skeleton rules (`curate.minhash.shingles`), before case and punctuation folding."""
    return (
        text.str.replace_all(shingles.FENCED, " ⟨code⟩ ")
        .str.replace_all(shingles.INLINE_CODE, " ⟨code⟩ ")
        .str.replace_all(shingles.URL, " ⟨url⟩ ")
        .str.replace_all(shingles.EMAIL, " ⟨email⟩ ")
        .str.replace_all(shingles.QUOTED, " ⟨quote⟩ ")
        .str.replace_all(shingles.NUMBER, " ⟨num⟩ ")
    )


def fold_with_newlines(text: pl.Expr) -> pl.Expr:
    """curate's skeleton fold, except that every line break is kept as a unit `⟨nl⟩`."""
    return (
        _placeholders(text)
        .str.to_lowercase()
        .str.replace_all("\n", " ⟨nl⟩ ")
        .str.replace_all(r"[^\w⟨⟩]+", " ")
        .str.strip_chars()
    )


# ---------------------------------------------------------------- 1. P3 templates


def p3_files(shared: Path) -> list[Path]:
    files = [f for f in sorted((shared / P3_DIR).glob("*.jsonl")) if f.stat().st_size > 0]
    names = [f.stem.lower() for f in files]
    if len(set(names)) != len(names):
        raise RuntimeError("P3 file names collide once lower-cased")
    return files


def p3_frame(files: list[Path]) -> pl.DataFrame:
    frames = []
    for f in files:
        df = curate.read_source(f, name=f.stem.lower(), format="prompt_response", fields=P3_FIELDS)
        frames.append(df.with_columns(pl.lit(f.stem).alias("label")))
    return pl.concat(frames)


def oracle_skeletons(df: pl.DataFrame) -> dict[str, frozenset[str]]:
    """Per label, the fixed text of its prompts: word trigrams of the skeleton (curate's fold with
    template = true, but line breaks kept as `⟨nl⟩`, start/end markers) present in >= 90% of the label's
    records. Labels with equal non-empty sets cannot be told apart from the prompt text (at this
    resolution); an empty set means no fixed text."""
    folded = df.select("label", fold_with_newlines(shingles.field_text("prompt", True)).alias("f"))
    out = {}
    for (label,), group in folded.group_by("label"):
        counts: Counter[str] = Counter()
        for text in group["f"].to_list():
            u = ["⟨s⟩", *text.split(), "⟨e⟩"]
            counts.update({" ".join(u[i : i + 3]) for i in range(max(1, len(u) - 2))})
        out[label] = frozenset(k for k, v in counts.items() if v >= ORACLE_SHARE * group.height)
    return out


def wording_labels(labels: np.ndarray, oracle: dict[str, frozenset[str]]) -> np.ndarray:
    """Labels merged when their (non-empty) oracle skeletons are identical."""
    rep: dict[frozenset[str], str] = {}
    mapping = {}
    for label in sorted(oracle):
        fixed = oracle[label]
        mapping[label] = rep.setdefault(fixed, label) if fixed else label
    return np.array([mapping[x] for x in labels])


def skeleton_diagnosis(df: pl.DataFrame, n: int) -> pl.DataFrame | None:
    """Per record: n-grams, n-grams with df >= k, template n-grams after the passage rule. Uses the
    stage's own shingling step and `template_mask` (internals: skipped if they changed)."""
    try:
        from curate.minhash.skeleton import template_mask
        from curate.stages.minhash_dedup import GRAMS, _Shingle

        shingled = _Shingle("prompt", True, True, n, "auto").apply(df, Context())
        lengths = shingled[GRAMS].list.len().to_numpy()
        owner = np.repeat(np.arange(shingled.height), lengths)
        grams = shingled[GRAMS].explode().drop_nulls().to_numpy().astype(np.uint32)
        keep, stats = template_mask(owner, grams, np.zeros(shingled.height, dtype=np.int64))
    except Exception as exc:  # the lead engineer may be changing these internals
        log(f"  (skeleton diagnosis skipped: {type(exc).__name__}: {exc})")
        return None
    occ = pl.DataFrame({"o": owner, "g": grams})
    doc_freq = occ.unique().group_by("g").agg(pl.len().alias("df"))
    high = occ.join(doc_freq, on="g", how="left", maintain_order="left")["df"].to_numpy() >= stats.df_threshold
    return pl.DataFrame(
        {
            "label": df["label"],
            "grams": lengths,
            "high_df": np.bincount(owner, weights=high, minlength=df.height).astype(np.int64),
            "template": np.bincount(owner, weights=keep, minlength=df.height).astype(np.int64),
        }
    )


def p3_confusions(
    labels: np.ndarray, clusters: np.ndarray, oracle: dict[str, frozenset[str]], diag: pl.DataFrame | None
) -> dict[str, Any]:
    frame = pl.DataFrame({"label": labels, "cluster": clusters})
    same_text = {(a, b) for a in oracle for b in oracle if a < b and oracle[a] and oracle[a] == oracle[b]}
    mixed = (
        frame.group_by("cluster")
        .agg(pl.len().alias("size"), pl.col("label").value_counts(sort=True).alias("labels"))
        .filter(pl.col("labels").list.len() > 1)
        .with_columns((pl.col("size") - pl.col("labels").list.first().struct.field("count")).alias("impurity"))
        .sort(["impurity", "size"], descending=True)
    )
    mixed_rows = [
        {
            "cluster": r["cluster"],
            "size": r["size"],
            "labels": {x["label"]: x["count"] for x in r["labels"][:5]},
            "n_labels": len(r["labels"]),
        }
        for r in mixed.head(12).iter_rows(named=True)
    ]
    # label pairs: records of the pair sharing clusters (sum of min counts over clusters)
    pair_counts: Counter[tuple[str, str]] = Counter()
    per_cluster = frame.group_by("cluster", "label").len()
    for (_,), group in per_cluster.group_by("cluster"):
        if group.height < 2:
            continue
        items = sorted(zip(group["label"].to_list(), group["len"].to_list(), strict=True))
        for x in range(len(items)):
            for y in range(x + 1, len(items)):
                pair_counts[(items[x][0], items[y][0])] += min(items[x][1], items[y][1])
    pairs = [
        {"a": a, "b": b, "shared_records": c, "identical_fixed_text": (a, b) in same_text}
        for (a, b), c in pair_counts.most_common(15)
    ]
    # splits: each label's contribution to H(cluster | label)
    n = len(labels)
    split = (
        frame.group_by("label", "cluster")
        .len()
        .with_columns(pl.col("len").sum().over("label").alias("size"))
        .group_by("label")
        .agg(
            pl.col("size").first(),
            pl.len().alias("clusters"),
            (pl.col("len").max() / pl.col("size").first()).alias("largest_share"),
            (-(pl.col("len") / n) * (pl.col("len") / pl.col("size")).log()).sum().alias("h_contrib"),
        )
    )
    if diag is not None:
        per_label = diag.group_by("label").agg(
            (pl.col("template") == 0).mean().alias("unstructured"),
            ((pl.col("template") == 0) & (pl.col("high_df") > 0)).mean().alias("lost_to_passage_rule"),
        )
        split = split.join(per_label, on="label", how="left")
    split = split.with_columns(
        pl.col("label").map_elements(lambda x: len(oracle.get(x, ())), return_dtype=pl.Int64).alias("fixed_trigrams")
    ).sort("h_contrib", descending=True)
    losses = []
    if diag is not None:
        lost = diag.group_by("label").agg(
            ((pl.col("template") == 0) & (pl.col("high_df") > 0)).mean().alias("lost_to_passage_rule"),
            pl.len().alias("size"),
        )
        losses = lost.filter(pl.col("lost_to_passage_rule") >= 0.05).sort("lost_to_passage_rule", descending=True)
        losses = losses.to_dicts()
    return {
        "mixed_clusters": mixed_rows,
        "merged_pairs": pairs,
        "split_labels": split.head(20).to_dicts(),
        "passage_rule_losses": losses,
    }


def eval_p3(shared: Path, out: Path) -> dict[str, Any]:
    log("[1] P3 template recovery")
    files = p3_files(shared)
    sources = [
        {"name": f.stem.lower(), "path": str(f), "format": "prompt_response", "fields": P3_FIELDS} for f in files
    ]
    config = {
        "pipeline": {"name": "eval-p3"},
        "sources": sources,
        "stages": [{"use": "minhash_dedup", "fields": "prompt", "template": True}],
        "output": {"formats": ["parquet"]},
    }
    target, manifest, seconds = fresh_build(config, out, "p3_template")
    ledger = build_clusters(target)
    label_of = {f.stem.lower(): f.stem for f in files}
    labels = ledger["source"].replace_strict(label_of).to_numpy()
    clusters = ledger["cluster"].to_numpy()
    df = p3_frame(files)
    aligned = df.height == ledger.height and (df["_line"] == ledger["line"]).all() and (df["label"] == labels).all()
    if not aligned:
        raise RuntimeError("P3: the records of read_source and of the build's ledger do not line up")
    oracle = oracle_skeletons(df)
    wl = wording_labels(labels, oracle)
    no_fixed = sorted(k for k, v in oracle.items() if not v)
    # An ideal text-only method: one cluster per distinct fixed text; templates without fixed text singletons.
    ideal = np.array([w if oracle[lab] else f"#{i}" for i, (lab, w) in enumerate(zip(labels, wl, strict=True))])
    headline = {
        "records": int(ledger.height),
        "templates": len(files),
        "build_seconds": round(seconds, 1),
        "stage_stats": manifest["stage_stats"].get("minhash_dedup", {}),
        "clusters": len(np.unique(clusters)),
        **v_measure(labels, clusters),
        "wording": v_measure(wl, clusters),
        "wording_labels": len(np.unique(wl)),
        "no_fixed_text_templates": no_fixed,
        "ideal_text_only": v_measure(labels, ideal),
    }
    log(
        f"  build {seconds:.1f}s: H={headline['homogeneity']:.3f} C={headline['completeness']:.3f} "
        f"V={headline['v_measure']:.3f}  (wording labels: V={headline['wording']['v_measure']:.3f}; "
        f"ideal text-only V={headline['ideal_text_only']['v_measure']:.3f})"
    )
    templates = read_templates(target / "templates.jsonl")
    top = [{"size": t["size"], "sources": t["sources"], "skeleton": t["skeleton"][:200]} for t in templates[:10]]
    # sweep with the in-memory API
    runs = []
    settings: list[dict[str, Any]] = [{"template": False}]
    settings += [{"template": True, "threshold": t, "ngram": g} for g in (5, 4, 3) for t in (0.5, 0.6, 0.7, 0.8)]
    settings += [{"template": True, "threshold": 0.8, "ngram": 5, "seed": seed} for seed in (2, 3)]  # MinHash noise
    for params in settings:
        start = time.perf_counter()
        stats_dir = out / "work" / "p3_sweep"
        shutil.rmtree(stats_dir, ignore_errors=True)
        stats_dir.mkdir(parents=True)
        res = MinhashDedup(fields="prompt", **params).apply_with_reasons(df, Context(artifacts=stats_dir))
        stats = json.loads((stats_dir / "minhash_dedup.stats.json").read_text())
        cl = stage_clusters(res)
        row = {
            "params": params,
            "seconds": round(time.perf_counter() - start, 1),
            **v_measure(df["label"].to_numpy(), cl),
            "v_wording": v_measure(wording_labels(df["label"].to_numpy(), oracle), cl)["v_measure"],
            "clusters": len(np.unique(cl)),
            **{k: stats.get(k) for k in ("df_threshold", "passage_run_length", "unstructured", "bands", "rows")},
        }
        runs.append(row)
        log(
            f"  {params}: H={row['homogeneity']:.3f} C={row['completeness']:.3f} V={row['v_measure']:.3f} "
            f"(wording {row['v_wording']:.3f}) clusters={row['clusters']} k={row['df_threshold']} "
            f"L={row['passage_run_length']} unstructured={row['unstructured']} [{row['seconds']}s]"
        )
    default = next(r for r in runs if r["params"] == {"template": True, "threshold": 0.8, "ngram": 5})
    if abs(default["v_measure"] - headline["v_measure"]) > 1e-9:
        log(f"  WARNING: build V {headline['v_measure']:.4f} != in-memory V {default['v_measure']:.4f}")
    diag = skeleton_diagnosis(df, 5)
    confusions = p3_confusions(labels, clusters, oracle, diag)
    same_groups: dict[frozenset[str], list[str]] = {}
    for label, fixed in oracle.items():
        if fixed:
            same_groups.setdefault(fixed, []).append(label)
    return {
        "headline": headline,
        "top_templates": top,
        "sweep": runs,
        "confusions": confusions,
        "identical_fixed_text_groups": sorted(sorted(g) for g in same_groups.values() if len(g) > 1),
    }


# ---------------------------------------------------------------- 2. near duplicates

_FOLD = re.compile(r"[^\w⟨⟩]+")


def py_units(rec: dict) -> list[str]:
    """Python replica of curate's plain fold (used only to steer the perturbation; the reported
    Jaccard is recomputed with curate's own functions)."""
    text = "\n".join(x for x in (rec["instruction"], rec["input"], rec["output"]) if x)
    return _FOLD.sub(" ", text.lower()).split()


def py_grams(units: list[str], n: int = 5) -> set[str]:
    if not units:
        return set()
    if len(units) <= n:
        return {" ".join(units)}
    return {" ".join(units[i : i + n]) for i in range(len(units) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def perturb(rec: dict, target: float, rng: random.Random, vocab: list[str]) -> tuple[dict, Counter]:
    """Word edits (insert / delete / adjacent swap) while the 5-gram Jaccard stays >= target (at least one)."""
    tokens = {k: re.findall(r"\S+|\s+", rec[k]) for k in ("instruction", "input", "output")}
    base = py_grams(py_units(rec))
    ops: Counter[str] = Counter()
    current, j_cur = dict(rec), 1.0
    for _ in range(400):
        words = {k: [i for i, t in enumerate(v) if not t.isspace()] for k, v in tokens.items()}
        weights = [len(words[k]) for k in tokens]
        field = rng.choices(list(tokens), weights=weights)[0]
        trial = list(tokens[field])
        positions = words[field]
        op = rng.choice(("insert", "delete", "swap"))
        if op == "delete" and len(positions) < 2:
            op = "insert"
        if op == "swap" and len(positions) < 2:
            op = "insert"
        i = rng.randrange(len(positions))
        if op == "insert":
            trial.insert(positions[i] + 1, " " + rng.choice(vocab))
        elif op == "delete":
            del trial[positions[i]]
        else:
            j = min(i + 1, len(positions) - 1) if i + 1 < len(positions) else i - 1
            trial[positions[i]], trial[positions[j]] = trial[positions[j]], trial[positions[i]]
        candidate = {**current, field: "".join(trial)}
        j_new = jaccard(base, py_grams(py_units(candidate)))
        if j_new < target and j_cur < 1.0:  # keep the last copy at or above the target
            break
        tokens[field], current, j_cur = trial, candidate, j_new
        ops[op] += 1
        if j_new < target:  # the first real edit already went below: keep it
            break
    return current, ops


def load_alpaca_like(path: Path) -> list[dict]:
    data = json.loads(path.read_text("utf-8"))
    out = []
    for r in data:
        rec = {k: r.get(k) or "" for k in ("instruction", "input", "output")}
        if rec["instruction"].strip() and rec["output"].strip():  # curate quarantines an empty side
            out.append(rec)
    return out


def merge_model(bands: int, rows: int, num_perm: int, threshold: float, js: np.ndarray, seed: int) -> np.ndarray:
    """P(pair merged directly) for Jaccard js: some band of `rows` values all equal AND the share of
    equal values >= threshold (each permutation equal with probability J, independently; Monte Carlo,
    20,000 draws on a 0.005 grid, interpolated)."""
    rng = np.random.default_rng(seed)
    grid = np.arange(0.0, 1.0001, 0.005)
    prob = np.empty(len(grid))
    for i, j in enumerate(grid):
        eq = rng.random((20000, num_perm)) < j
        cand = eq[:, : bands * rows].reshape(20000, bands, rows).all(axis=2).any(axis=1)
        prob[i] = (cand & (eq.mean(axis=1) >= threshold)).mean()
    return np.interp(js, grid, prob)


def all_pair_jaccard(sets: list[set[str]], floor: float) -> pl.DataFrame:
    """Every pair (a < b) with exact Jaccard >= floor: sparse record x shingle product, in row chunks."""
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for s in sets:
        indices.extend(vocab.setdefault(g, len(vocab)) for g in s)
        indptr.append(len(indices))
    n = len(sets)
    x = csr_matrix((np.ones(len(indices), dtype=np.int32), indices, indptr), shape=(n, len(vocab)))
    sizes = np.diff(x.indptr)
    xt = x.T.tocsr()
    parts = []
    for start in range(0, n, 1000):
        prod = (x[start : start + 1000] @ xt).tocoo()
        a, b, inter = prod.row + start, prod.col, prod.data
        keep = a < b
        a, b, inter = a[keep], b[keep], inter[keep]
        jac = inter / (sizes[a] + sizes[b] - inter)
        keep = jac >= floor
        parts.append(pl.DataFrame({"a": a[keep], "b": b[keep], "j": jac[keep]}))
    return pl.concat(parts).with_columns(pl.col("a").cast(pl.Int64), pl.col("b").cast(pl.Int64))


def cluster_pairs(clusters: np.ndarray) -> pl.DataFrame:
    """All pairs (a < b) of records in one cluster."""
    _, inv = np.unique(clusters, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0, True])
    a_all, b_all = [], []
    for s, e in pairwise(bounds):
        if e - s < 2:
            continue
        members = np.sort(order[s:e])
        ia, ib = np.triu_indices(len(members), 1)
        a_all.append(members[ia])
        b_all.append(members[ib])
    if not a_all:
        return pl.DataFrame(schema={"a": pl.Int64, "b": pl.Int64})
    return pl.DataFrame({"a": np.concatenate(a_all).astype(np.int64), "b": np.concatenate(b_all).astype(np.int64)})


def eval_near_duplicates(shared: Path, out: Path, per_source: int, seed: int) -> dict[str, Any]:
    log("[2] near-duplicate recall / precision")
    rng = random.Random(seed)
    alpaca = load_alpaca_like(shared / "alpaca_52k/alpaca_data.json")
    code = load_alpaca_like(shared / "code_alpaca/code_alpaca_2k.json") + load_alpaca_like(
        shared / "code_alpaca/new_codealpaca.json"
    )
    originals = [{**r, "_src": "alpaca"} for r in rng.sample(alpaca, per_source)]
    originals += [{**r, "_src": "code_alpaca"} for r in rng.sample(code, per_source)]
    vocab = [w for r in originals for w in (r["instruction"] + " " + r["output"]).split()]
    records: list[dict] = []
    op_counts: Counter[str] = Counter()
    start = time.perf_counter()
    for k, rec in enumerate(originals):
        if rng.random() < 0.1:  # case and spacing only: Jaccard 1 after curate's folding
            copy = {**rec, "instruction": rec["instruction"].upper(), "output": rec["output"].replace(" ", "  ")}
            ops: Counter[str] = Counter({"case_space": 1})
        else:
            copy, ops = perturb(rec, rng.uniform(0.5, 1.0), rng, vocab)
        op_counts.update(ops)
        records.append({**rec, "_orig": k, "_copy": False})
        records.append({**copy, "_orig": k, "_copy": True})
    rng.shuffle(records)
    perturb_seconds = time.perf_counter() - start
    path = out / "neardup" / "records.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{k: r[k] for k in ("instruction", "input", "output")} for r in records]))
    df = curate.read_source(path, name="neardup", format="alpaca")
    if df.height != len(records):
        raise RuntimeError(f"near-dup: read_source gives {df.height} of {len(records)} records")
    where: dict[int, list[int]] = {}
    for idx, r in enumerate(records):
        where.setdefault(r["_orig"], []).append(idx)
    designed = [tuple(sorted(v)) for v in where.values()]
    sets = curate_ngram_sets(df, "all", False, 5)
    pairs = all_pair_jaccard(sets, floor=0.3)
    stage = MinhashDedup(fields="all", template=False, threshold=0.8, ngram=5)
    cluster_step: Any = stage.steps()[1]
    bands, rows = cluster_step.bands, cluster_step.rows
    start = time.perf_counter()
    res = stage.apply_with_reasons(df)
    stage_seconds = time.perf_counter() - start
    clusters = stage_clusters(res)
    lookup = pairs.with_columns(pl.Series("same", clusters[pairs["a"].to_numpy()] == clusters[pairs["b"].to_numpy()]))
    positives = lookup.filter(pl.col("j") >= 0.85)
    merged = cluster_pairs(clusters).join(pairs, on=["a", "b"], how="left").with_columns(pl.col("j").fill_null(0.0))
    wrong = merged.filter(pl.col("j") < 0.7)
    dpairs = pl.DataFrame({"a": [p[0] for p in designed], "b": [p[1] for p in designed]}).cast(pl.Int64)
    dpairs = dpairs.join(pairs, on=["a", "b"], how="left").with_columns(pl.col("j").fill_null(0.0))
    dpairs = dpairs.with_columns(
        pl.Series("same", clusters[dpairs["a"].to_numpy()] == clusters[dpairs["b"].to_numpy()]),
        pl.Series("src", [records[a]["_src"] for a in dpairs["a"].to_list()]),
    )
    model = merge_model(bands, rows, 128, 0.8, dpairs["j"].to_numpy(), seed)
    dpairs = dpairs.with_columns(pl.Series("model", model))
    buckets = []
    for lo, hi in pairwise(JACCARD_BUCKETS):
        sub = dpairs.filter((pl.col("j") >= lo) & (pl.col("j") < hi))
        if sub.height:
            buckets.append(
                {
                    "range": f"[{lo:.2f}, {min(hi, 1.0):.2f}{']' if hi > 1 else ')'}",
                    "pairs": sub.height,
                    "merged": round(float(sub["same"].mean()), 4),
                    "model": round(float(sub["model"].mean()), 4),
                }
            )
    natural = positives.join(dpairs.select("a", "b"), on=["a", "b"], how="anti")
    # Other bands x rows (stage parameters), same verification: what datasketch's optimiser gives with more
    # weight on false negatives (candidates are verified, so a false-positive candidate costs only time).
    alternatives = []
    for weights in ((0.5, 0.5), (0.2, 0.8), (0.1, 0.9), (0.05, 0.95)):
        b_alt, r_alt = _optimal_param(0.8, 128, *weights)
        stats_dir = out / "work" / "neardup_alt"
        shutil.rmtree(stats_dir, ignore_errors=True)
        stats_dir.mkdir(parents=True)
        t0 = time.perf_counter()
        alt = MinhashDedup(fields="all", template=False, threshold=0.8, ngram=5, bands=b_alt, rows=r_alt)
        alt_clusters = stage_clusters(alt.apply_with_reasons(df, Context(artifacts=stats_dir)))
        seconds = time.perf_counter() - t0
        stats = json.loads((stats_dir / "minhash_dedup.stats.json").read_text())
        same = alt_clusters[positives["a"].to_numpy()] == alt_clusters[positives["b"].to_numpy()]
        m = cluster_pairs(alt_clusters).join(pairs, on=["a", "b"], how="left").with_columns(pl.col("j").fill_null(0.0))
        alternatives.append(
            {
                "weights_fp_fn": list(weights),
                "bands": b_alt,
                "rows": r_alt,
                "recall": float(same.mean()),
                "model_recall": float(merge_model(b_alt, r_alt, 128, 0.8, positives["j"].to_numpy(), seed).mean()),
                "precision": 1.0 - m.filter(pl.col("j") < 0.7).height / m.height if m.height else None,
                "candidate_pairs": stats.get("candidate_pairs"),
                "verified_pairs": stats.get("verified_pairs"),
                "seconds": round(seconds, 1),
            }
        )
    result = {
        "records": len(records),
        "originals": {"alpaca": per_source, "code_alpaca": per_source},
        "edit_ops": dict(op_counts),
        "perturb_seconds": round(perturb_seconds, 1),
        "stage_seconds": round(stage_seconds, 1),
        "bands": bands,
        "rows": rows,
        "designed_jaccard_quantiles": [round(float(q), 3) for q in np.quantile(dpairs["j"], [0, 0.1, 0.5, 0.9, 1])],
        "positive_pairs": positives.height,
        "positive_pairs_natural": natural.height,
        "recall": float(positives["same"].mean()) if positives.height else None,
        "recall_designed": float(dpairs.filter(pl.col("j") >= 0.85)["same"].mean()),
        "recall_by_source": {
            s: float(dpairs.filter((pl.col("j") >= 0.85) & (pl.col("src") == s))["same"].mean())
            for s in ("alpaca", "code_alpaca")
        },
        "model_recall_designed": float(dpairs.filter(pl.col("j") >= 0.85)["model"].mean()),
        "merged_pairs": merged.height,
        "wrong_pairs": wrong.height,
        "gray_pairs": merged.filter((pl.col("j") >= 0.7) & (pl.col("j") < 0.85)).height,
        "precision": 1.0 - wrong.height / merged.height if merged.height else None,
        "largest_cluster": int(np.unique(clusters, return_counts=True)[1].max()),
        "buckets": buckets,
        "alternatives": alternatives,
        "wrong_examples": [
            {
                "j": round(r["j"], 3),
                "a": df["messages"][r["a"]][0]["content"][:100],
                "b": df["messages"][r["b"]][0]["content"][:100],
            }
            for r in wrong.sort("j").head(5).iter_rows(named=True)
        ],
    }
    log(
        f"  {len(records)} records, bands x rows = {bands} x {rows}: recall(J>=0.85) = {result['recall']:.4f} "
        f"({positives.height} pairs, {natural.height} natural), precision = {result['precision']:.4f} "
        f"({wrong.height} wrong of {merged.height} merged pairs)"
    )
    for b in buckets:
        log(f"    J {b['range']}: {b['pairs']} pairs, merged {b['merged']:.3f} (model {b['model']:.3f})")
    for x in alternatives:
        log(
            f"    bands x rows {x['bands']} x {x['rows']} (FP/FN weights {x['weights_fp_fn']}): recall "
            f"{x['recall']:.4f} (model {x['model_recall']:.4f}), precision {x['precision']:.4f}, "
            f"{x['candidate_pairs']} candidate pairs [{x['seconds']}s]"
        )
    return result


# ---------------------------------------------------------------- 3. Alpaca templates


def eval_alpaca(shared: Path, out: Path) -> dict[str, Any]:
    log("[3] Alpaca 52k templates (fields = prompt, template = true, keep_per_cluster = 3)")
    results = {}
    for include_input in (True, False):
        config = {
            "pipeline": {"name": "eval-alpaca"},
            "sources": [{"name": "alpaca", "path": str(shared / "alpaca_52k/alpaca_data.json"), "format": "alpaca"}],
            "stages": [
                {
                    "use": "minhash_dedup",
                    "fields": "prompt",
                    "template": True,
                    "keep_per_cluster": 3,
                    "include_input": include_input,
                }
            ],
            "output": {"formats": ["parquet"]},
        }
        name = "alpaca_template" + ("" if include_input else "_no_input")
        target, manifest, seconds = fresh_build(config, out, name)
        ledger = build_clusters(target)
        live = ledger.filter(pl.col("status") != "quarantined")
        sizes = live.group_by("cluster").len()["len"].cast(pl.Int64).to_numpy()
        removed = int((ledger["stage"] == "minhash_dedup").sum())
        expected = int(np.maximum(sizes - 3, 0).sum())
        templates = read_templates(target / "templates.jsonl")
        entry = {
            "records_in": int(ledger.height),
            "quarantined": int((ledger["status"] == "quarantined").sum()),
            "build_seconds": round(seconds, 1),
            "clusters_ge2": int((sizes >= 2).sum()),
            "clusters_ge5": int((sizes >= 5).sum()),
            "records_in_clusters_ge5": int(sizes[sizes >= 5].sum()),
            "removed_keep3": removed,
            "removed_keep3_expected": expected,
            "removed_if_keep1": int((sizes - 1).sum()),
            "stage_stats": manifest["stage_stats"].get("minhash_dedup", {}),
            "top10": [
                {"size": t["size"], "skeleton": t["skeleton"][:160], "example": t["examples"][0]["text"][:120]}
                for t in templates[:10]
            ],
        }
        results["include_input" if include_input else "no_input"] = entry
        log(
            f"  include_input={include_input}: {entry['clusters_ge5']} clusters of size >= 5 "
            f"({entry['records_in_clusters_ge5']} records), keep 3 removes {removed} (keep 1 would remove "
            f"{entry['removed_if_keep1']}) [{seconds:.1f}s]"
        )
        if removed != expected:
            log(f"  WARNING: removed {removed} != sum(max(size - 3, 0)) = {expected}")
        for t in entry["top10"]:
            log(f"    {t['size']:5d}  {t['skeleton'][:100]}")
        results["_ledger_" + name] = ledger  # used by the short-text check, dropped before saving
    return results


# ---------------------------------------------------------------- 4. short texts


def short_instructions(shared: Path) -> list[dict]:
    seen, out = set(), []

    def add(instruction: str, output: str, origin: str) -> None:
        words = instruction.split()
        if 1 <= len(words) <= SHORT_MAX_WORDS and instruction not in seen and output.strip():
            seen.add(instruction)
            out.append({"instruction": instruction, "input": "", "output": output, "_origin": origin})

    for r in json.loads((shared / "alpaca_52k/alpaca_data.json").read_text("utf-8")):
        if not r["input"].strip():
            add(r["instruction"], r["output"], "alpaca")
    for name in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        for line in (shared / "self_instruct" / name).read_text("utf-8").splitlines():
            r = json.loads(line)
            add(r["instruction"], r["instances"][0]["output"] or "-", "self_instruct")
    for name in ("code_alpaca_2k.json", "new_codealpaca.json"):
        for r in json.loads((shared / "code_alpaca" / name).read_text("utf-8")):
            add(r["instruction"], r["output"], "code_alpaca")
    return out


def wrong_merges(texts: list[str], clusters: np.ndarray) -> list[tuple[str, str]]:
    """Pairs in one cluster whose compared texts differ."""
    by: dict[str, list[int]] = {}
    for i, c in enumerate(clusters):
        by.setdefault(c, []).append(i)
    bad = []
    for members in by.values():
        distinct = sorted({texts[i] for i in members})
        bad.extend((distinct[0], other) for other in distinct[1:])
    return bad


def eval_short(shared: Path, out: Path, alpaca_ledger: pl.DataFrame | None) -> dict[str, Any]:
    log(f"[4] short texts (1-{SHORT_MAX_WORDS} words)")
    recs = short_instructions(shared)
    path = out / "short" / "short.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{k: r[k] for k in ("instruction", "input", "output")} for r in recs]))
    df = curate.read_source(path, name="short", format="alpaca")
    result: dict[str, Any] = {"records": df.height, "origins": dict(Counter(r["_origin"] for r in recs))}
    for template in (False, True):
        folded = df.select(shingles.fold(shingles.field_text("prompt", True), template))
        texts = folded.to_series().to_list()
        res = MinhashDedup(fields="prompt", template=template).apply_with_reasons(df)
        clusters = stage_clusters(res)
        bad = wrong_merges(texts, clusters)
        entry = {
            "distinct_texts": len(set(texts)),
            "kept": int(res["_drop"].is_null().sum()),
            "clusters": len(np.unique(clusters)),
            "wrong_merges": len(bad),
            "examples": bad[:10],
        }
        result["template" if template else "plain"] = entry
        log(
            f"  template={template}: {df.height} records, {entry['distinct_texts']} distinct "
            f"{'skeletons' if template else 'folded texts'}, kept {entry['kept']}, wrongly merged pairs {len(bad)}"
        )
        for a, b in bad[:5]:
            log(f"    {a!r} ~ {b!r}")
    if alpaca_ledger is not None:
        # the same check inside the full Alpaca run: short records whose cluster holds a different skeleton
        alpaca = curate.read_source(shared / "alpaca_52k/alpaca_data.json", name="alpaca", format="alpaca")
        skel = alpaca.select(shingles.fold(shingles.field_text("prompt", True), True)).to_series().to_numpy()
        live = alpaca_ledger.filter(pl.col("status") != "quarantined")
        if live.height == alpaca.height:
            first_turn = pl.col("messages").list.first().struct.field("content")
            words = alpaca.select(first_turn.str.extract_all(r"\S+").list.len())
            short = words.to_series().to_numpy() <= SHORT_MAX_WORDS
            clusters = live["cluster"].to_numpy()
            frame = pl.DataFrame({"c": clusters, "s": skel, "short": short})
            per = frame.group_by("c").agg(
                pl.col("s").filter(pl.col("short")).unique().sort().alias("short_skeletons"),
                pl.col("s").filter(~pl.col("short")).unique().sort().alias("long_skeletons"),
            )
            per = per.with_columns(
                pl.col("long_skeletons").list.set_difference("short_skeletons").list.sort().alias("long_skeletons")
            )
            short_short = per.filter(pl.col("short_skeletons").list.len() > 1).sort("c")
            short_long = per.filter(
                (pl.col("short_skeletons").list.len() > 0) & (pl.col("long_skeletons").list.len() > 0)
            ).sort("c")
            dropped = short & (live["status"] == "dropped").to_numpy()
            result["in_alpaca_52k"] = {
                "short_records": int(short.sum()),
                "short_dropped": int(dropped.sum()),
                "clusters_short_vs_short": short_short.height,
                "clusters_short_vs_long": short_long.height,
                "examples_short_vs_short": [r["short_skeletons"][:3] for r in short_short.head(5).to_dicts()],
                "examples_short_vs_long": [
                    [r["short_skeletons"][0], r["long_skeletons"][0]] for r in short_long.head(5).to_dicts()
                ],
            }
            log(
                f"  in the 52k run: {int(short.sum())} short prompts, {int(dropped.sum())} dropped; clusters with "
                f"two different short skeletons: {short_short.height}; short prompt + longer prompts: "
                f"{short_long.height}"
            )
    return result


# ---------------------------------------------------------------- 5. suggested skeleton changes (prototype)


def proto_grams(df: pl.DataFrame, n: int, newline_units: bool, segment_grams: bool) -> list[list[str]]:
    """Skeleton n-grams as the stage builds them (template = true, word units), with two optional changes:
    `newline_units`: every line break is kept as a unit `⟨nl⟩` (instead of being folded away like punctuation);
    `segment_grams`: every segment between boundaries (text start/end, runs of newline . ? ! : ;) that has
    fewer than n units is added as one more shingle, with its boundary markers (curate's short-text rule,
    applied to segments)."""
    text = shingles.field_text("prompt", True).fill_null("")
    folded = fold_with_newlines(text) if newline_units else shingles.fold(text, True)
    units = df.select(shingles.units(folded, "word").alias("u"))["u"].to_list()
    segments = None
    if segment_grams:
        bounded = (
            _placeholders(text)
            .str.to_lowercase()
            .str.replace_all(r"[\n.?!:;]+", " ⟨b⟩ ")
            .str.replace_all(r"[^\w⟨⟩]+", " ")
            .str.strip_chars()
        )
        segments = df.select(bounded.alias("b"))["b"].to_list()
    out = []
    for i, u in enumerate(units):
        u = ["⟨s⟩", *u, "⟨e⟩"] if u else []
        grams = [" ".join(u[k : k + n]) for k in range(len(u) - n + 1)] if len(u) > n else [" ".join(u)] * bool(u)
        if segments is not None:
            toks = ["⟨s⟩", *segments[i].split(), "⟨e⟩"]
            bounds = [k for k, t in enumerate(toks) if t in ("⟨s⟩", "⟨e⟩", "⟨b⟩")]
            grams += ["§ " + " ".join(toks[a : b + 1]) for a, b in pairwise(bounds) if 1 <= b - a - 1 < n]
        out.append(grams)
    return out


def plateau_mask(owner: np.ndarray, flagged: np.ndarray, doc_freq: np.ndarray) -> np.ndarray:
    """Passage rule on df plateaus: runs of flagged n-grams are also cut where log2(df) jumps between
    neighbours by at least the Otsu split of all such jumps, then (as the stage) plateaus longer than the
    short class of a clearly bimodal length distribution are passage."""
    from curate.minhash.skeleton import otsu

    level = np.log2(doc_freq.astype(np.float64))
    inside = np.r_[False, (owner[1:] == owner[:-1]) & flagged[1:] & flagged[:-1]]
    jump = np.abs(np.r_[0.0, np.diff(level)])
    values = jump[inside & (jump > 0)]
    cut = otsu(values, np.ones(len(values))) if len(values) else None
    start = ~inside | (jump >= (cut if cut is not None else np.inf))
    plateau = np.cumsum(start) - 1
    length = np.bincount(plateau)[plateau]
    runs = length[start & flagged].astype(np.float64)
    split = otsu(np.log2(runs), runs) if len(runs) else None
    if split is None:
        return flagged
    low, high = runs[np.log2(runs) < split], runs[np.log2(runs) >= split]
    if not len(low) or high.mean() < 4.0 * low.mean():
        return flagged
    return flagged & (length <= low.max())


def proto_clusters(grams: list[list[str]], threshold: float, plateaus: bool) -> tuple[np.ndarray, dict]:
    """The stage's decision (template = true, global scope, 128 permutations, seed 1, verify) rebuilt
    from curate's own building blocks, with the skeleton n-grams given."""
    from curate.minhash.clusters import candidate_pairs, components, verified
    from curate.minhash.signature import band_keys, lsh_params, signatures
    from curate.minhash.skeleton import otsu, template_mask

    n = len(grams)
    hashed = pl.Series(grams, dtype=pl.List(pl.String)).to_frame("g")
    hashed = hashed.select(pl.col("g").list.eval((pl.element().hash(seed=0) & 0xFFFFFFFF).cast(pl.UInt32)))["g"]
    owner = np.repeat(np.arange(n), hashed.list.len().to_numpy())
    values = hashed.explode().drop_nulls().to_numpy().astype(np.uint32)
    scope = np.zeros(n, dtype=np.int64)
    if plateaus:
        occ = pl.DataFrame({"o": owner, "g": values})
        counts = occ.unique().group_by("g").agg(pl.len().alias("df"))
        cut = otsu(np.log2(counts["df"].to_numpy().astype(np.float64)), counts["df"].to_numpy())
        k = max(2, round(2**cut)) if cut is not None else 2
        doc_freq = occ.join(counts, on="g", how="left", maintain_order="left")["df"].to_numpy()
        keep = plateau_mask(owner, doc_freq >= k, doc_freq)
    else:
        keep, _ = template_mask(owner, values, scope)
    unstructured = np.bincount(owner[keep], minlength=n) == 0
    keep = keep | unstructured[owner]
    sig = signatures(owner[keep], values[keep], n, 128, 1)
    bands, rows = lsh_params(threshold, 128)
    pairs = candidate_pairs(band_keys(sig, bands, rows), scope, np.bincount(owner[keep], minlength=n) > 0)
    labels = components(n, verified(pairs, sig, threshold))
    return labels, {"unstructured": int(unstructured.sum())}


def eval_prototype(shared: Path, reference_v: float) -> list[dict[str, Any]]:
    log("[5] suggested skeleton changes, prototyped outside curate (P3)")
    df = p3_frame(p3_files(shared))
    labels = df["label"].to_numpy()
    variants = [
        ("stage rules (must equal the stage)", False, False, False),
        ("+ line breaks as ⟨nl⟩ units", True, False, False),
        ("+ short segments as shingles", False, True, False),
        ("+ df-plateau passage rule", False, False, True),
        ("+ ⟨nl⟩ units + short segments", True, True, False),
        ("+ ⟨nl⟩ units + short segments + df-plateau passage rule", True, True, True),
    ]
    rows = []
    try:
        for name, newline_units, segment_grams, plateaus in variants:
            grams = proto_grams(df, 5, newline_units, segment_grams)
            for threshold in (0.8, 0.7):
                start = time.perf_counter()
                clusters, info = proto_clusters(grams, threshold, plateaus)
                row = {
                    "variant": name,
                    "threshold": threshold,
                    **v_measure(labels, clusters),
                    "clusters": len(np.unique(clusters)),
                    **info,
                    "seconds": round(time.perf_counter() - start, 1),
                }
                rows.append(row)
                log(
                    f"  {name}, t={threshold}: H={row['homogeneity']:.3f} C={row['completeness']:.3f} "
                    f"V={row['v_measure']:.3f} unstructured={row['unstructured']} clusters={row['clusters']}"
                )
    except Exception as exc:  # built on curate internals the lead engineer may be changing
        log(f"  (prototype skipped: {type(exc).__name__}: {exc})")
        return rows
    if rows and abs(rows[0]["v_measure"] - reference_v) > 1e-9:
        log(f"  WARNING: the prototype's baseline V {rows[0]['v_measure']:.4f} != the stage's {reference_v:.4f}")
    return rows


# ---------------------------------------------------------------- report


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def figures_markdown(res: dict[str, Any]) -> str:
    p3, nd, al, sh = res["p3"], res["near_duplicates"], res["alpaca"], res["short"]
    h = p3["headline"]
    st = h["stage_stats"]
    lines = [
        f"Run: `{res['command']}` — curate commit `{res['commit']}`"
        + (f" with uncommitted changes to {', '.join(res['dirty'])}" if res["dirty"] else "")
        + f", {res['date']}, {res['seconds']:.0f} s in all.",
        "",
        "### 1. P3 template recovery",
        "",
        f'{h["records"]:,} prompts, {h["templates"]} non-empty template files; `fields = "prompt"`, '
        f"`template = true`, defaults (threshold 0.8, ngram 5, 128 perms), built with `curate.build`.",
        "",
        "| labels | homogeneity | completeness | V-measure |",
        "|---|---|---|---|",
        f"| file names ({h['templates']}) | {fmt(h['homogeneity'])} | {fmt(h['completeness'])} | "
        f"**{fmt(h['v_measure'])}** |",
        f"| wording labels ({h['wording_labels']}: files with identical fixed prompt text merged) | "
        f"{fmt(h['wording']['homogeneity'])} | {fmt(h['wording']['completeness'])} | "
        f"{fmt(h['wording']['v_measure'])} |",
        f"| *reference: ideal text-only clustering vs file names* | {fmt(h['ideal_text_only']['homogeneity'])} | "
        f"{fmt(h['ideal_text_only']['completeness'])} | {fmt(h['ideal_text_only']['v_measure'])} |",
        "",
        f"Stage stats (manifest): df_threshold k = {st.get('df_threshold')}, passage_run_length L = "
        f"{st.get('passage_run_length')}, template n-grams {st.get('template_ngrams')} of "
        f"{st.get('distinct_ngrams')}, unstructured {st.get('unstructured')}, clusters (size > 1) "
        f"{st.get('clusters')}, all clusters incl. singletons {h['clusters']}.",
        "",
        "Sweep (in-memory `apply_with_reasons`, same records):",
        "",
        "| template | threshold | ngram | H | C | V | V (wording) | clusters | k | L | unstructured | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in p3["sweep"]:
        p = r["params"]
        lines.append(
            f"| {p['template']}{' seed ' + str(p['seed']) if 'seed' in p else ''} | {p.get('threshold', 0.8)} | "
            f"{p.get('ngram', 5)} | {fmt(r['homogeneity'])} | "
            f"{fmt(r['completeness'])} | {'**' if r['v_measure'] >= 0.9 else ''}{fmt(r['v_measure'])}"
            f"{'**' if r['v_measure'] >= 0.9 else ''} | {fmt(r['v_wording'])} | {r['clusters']} | "
            f"{r['df_threshold'] or '-'} | {r['passage_run_length'] or '-'} | {r['unstructured'] or '-'} | "
            f"{r['seconds']} |"
        )
    conf = p3["confusions"]
    lines += ["", "Most mixed clusters (default run):", "", "| size | labels (records) |", "|---|---|"]
    for c in conf["mixed_clusters"][:8]:
        labs = ", ".join(f"{k} ({v})" for k, v in c["labels"].items())
        lines.append(f"| {c['size']} | {labs}{' …' if c['n_labels'] > 5 else ''} |")
    lines += [
        "",
        "Label pairs merged (records of the pair sharing clusters; *identical* = same fixed prompt text):",
        "",
        "| label a | label b | shared | identical fixed text |",
        "|---|---|---|---|",
    ]
    for p in conf["merged_pairs"][:12]:
        same = "yes" if p["identical_fixed_text"] else "no"
        lines.append(f"| {p['a']} | {p['b']} | {p['shared_records']} | {same} |")
    lines += [
        "",
        "Labels split most (contribution to H(cluster | label); unstructured = no template n-gram left; "
        "lost = had df ≥ k n-grams but the passage rule removed them all; fixed = trigrams in ≥ 90% of the "
        "label's prompts):",
        "",
        "| label | records | clusters | largest share | unstructured | lost to passage rule | fixed trigrams |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in conf["split_labels"][:16]:
        lines.append(
            f"| {s['label']} | {s['size']} | {s['clusters']} | {fmt(s['largest_share'], 2)} | "
            f"{fmt(s.get('unstructured'), 2)} | {fmt(s.get('lost_to_passage_rule'), 2)} | {s['fixed_trigrams']} |"
        )
    if conf.get("passage_rule_losses"):
        lost = ", ".join(f"{x['label']} {x['lost_to_passage_rule']:.2f}" for x in conf["passage_rule_losses"][:10])
        lines += ["", f"Share of a label's records whose every df ≥ k n-gram the passage rule removed: {lost}."]
    lines += ["", f"Templates without any fixed trigram: {', '.join(h['no_fixed_text_templates']) or 'none'}."]
    groups = "; ".join(" = ".join(g) for g in p3["identical_fixed_text_groups"])
    n_groups = len(p3["identical_fixed_text_groups"])
    lines += ["", f"Files with identical fixed prompt text ({n_groups} groups): {groups}."]
    lines += ["", "Largest clusters (templates.jsonl):", "", "| size | sources | skeleton |", "|---|---|---|"]
    for t in p3["top_templates"][:10]:
        srcs = ", ".join(f"{k} {v}" for k, v in list(t["sources"].items())[:3])
        lines.append(f"| {t['size']} | {srcs} | {t['skeleton'][:110].replace('|', '/')} |")
    lines += [
        "",
        "### 2. Near-duplicate recall / precision",
        "",
        f"{nd['records']:,} records = {nd['originals']['alpaca']:,} Alpaca + {nd['originals']['code_alpaca']:,} "
        f"Code Alpaca originals + one perturbed copy each (edits: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(nd["edit_ops"].items()))
        + f'). True Jaccard: exact, on curate\'s own word 5-gram shingle sets (fields = "all"), all pairs. '
        f"Designed-pair Jaccard quantiles (0/10/50/90/100%): {nd['designed_jaccard_quantiles']}. "
        f"Stage: threshold 0.8, ngram 5, 128 perms → bands × rows = {nd['bands']} × {nd['rows']}, verify on.",
        "",
        "| metric | value | target |",
        "|---|---|---|",
        f"| recall, all pairs with J ≥ 0.85 ({nd['positive_pairs']:,}, of which {nd['positive_pairs_natural']} "
        f"natural) | **{fmt(nd['recall'], 4)}** | ≥ 0.95 |",
        f"| recall, designed pairs with J ≥ 0.85 (Alpaca {fmt(nd['recall_by_source']['alpaca'], 4)}, Code Alpaca "
        f"{fmt(nd['recall_by_source']['code_alpaca'], 4)}) | {fmt(nd['recall_designed'], 4)} | |",
        f"| model: P(direct merge) for the same pairs, bands {nd['bands']} × rows {nd['rows']} + verify | "
        f"{fmt(nd['model_recall_designed'], 4)} | |",
        f"| precision = 1 − wrong/merged ({nd['wrong_pairs']} pairs with J < 0.7 of {nd['merged_pairs']:,} merged; "
        f"{nd['gray_pairs']} in 0.7–0.85) | **{fmt(nd['precision'], 4)}** | ≥ 0.97 |",
        "",
        "| designed pairs, true J | pairs | merged (observed) | model: banding + verify |",
        "|---|---|---|---|",
    ]
    for b in nd["buckets"]:
        lines.append(f"| {b['range']} | {b['pairs']} | {fmt(b['merged'])} | {fmt(b['model'])} |")
    lines += [
        "",
        "Other bands × rows for the same stage (`bands`/`rows` parameters; what datasketch's optimiser returns "
        "when false negatives weigh more than false positives — with `verify` on, a false-positive candidate "
        "only costs a signature comparison):",
        "",
        "| FP/FN weights | bands × rows | recall J ≥ 0.85 | model | precision | candidate pairs | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in nd["alternatives"]:
        w = "/".join(str(v) for v in x["weights_fp_fn"])
        lines.append(
            f"| {w} | {x['bands']} × {x['rows']} | {fmt(x['recall'], 4)} | {fmt(x['model_recall'], 4)} | "
            f"{fmt(x['precision'], 4)} | {x['candidate_pairs']:,} | {x['seconds']} |"
        )
    lines += ["", '### 3. Alpaca 52k, `fields = "prompt"`, `template = true`, `keep_per_cluster = 3`', ""]
    lines += [
        "| include_input | records (quarantined) | clusters ≥ 2 | clusters ≥ 5 (records) | removed, keep 3 | "
        "removed if keep 1 | k | L | unstructured |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in ("include_input", "no_input"):
        a = al[key]
        s = a["stage_stats"]
        lines.append(
            f"| {key == 'include_input'} | {a['records_in']:,} ({a['quarantined']}) | {a['clusters_ge2']:,} | "
            f"{a['clusters_ge5']:,} ({a['records_in_clusters_ge5']:,}) | **{a['removed_keep3']:,}** | "
            f"{a['removed_if_keep1']:,} | {s.get('df_threshold')} | {s.get('passage_run_length')} | "
            f"{s.get('unstructured')} |"
        )
    for key in ("include_input", "no_input"):
        lines += ["", f"10 largest clusters ({key}):", "", "| size | skeleton | example |", "|---|---|---|"]
        for t in al[key]["top10"]:
            ex = t["example"].replace("\n", " ").replace("|", "/")
            lines.append(f"| {t['size']} | {t['skeleton'][:100].replace('|', '/')} | {ex[:70]} |")
    lines += ["", f"### 4. Short texts (1–{SHORT_MAX_WORDS} words)", ""]
    lines.append(
        f"{sh['records']} distinct real instructions ("
        + ", ".join(f"{k} {v}" for k, v in sh["origins"].items())
        + '), `fields = "prompt"`, defaults otherwise.'
    )
    lines += ["", "| template | distinct compared texts | kept | wrongly merged pairs | examples |"]
    lines += ["|---|---|---|---|---|"]
    for key in ("plain", "template"):
        e = sh[key]
        ex = "; ".join(f"`{a}` ~ `{b}`" for a, b in e["examples"][:3]) or "—"
        lines.append(f"| {key == 'template'} | {e['distinct_texts']} | {e['kept']} | {e['wrong_merges']} | {ex} |")
    if "in_alpaca_52k" in sh:
        s = sh["in_alpaca_52k"]
        lines += [
            "",
            f"Inside the full-Alpaca template run (3): {s['short_records']} prompts of ≤ {SHORT_MAX_WORDS} words "
            f"(instruction + input), {s['short_dropped']} dropped; clusters holding two short prompts with "
            f"different skeletons: {s['clusters_short_vs_short']}"
            + (f" (e.g. {s['examples_short_vs_short'][:2]})" if s["examples_short_vs_short"] else "")
            + "; clusters joining a short prompt to longer prompts with another skeleton: "
            + str(s["clusters_short_vs_long"])
            + (f" (e.g. {s['examples_short_vs_long'][:3]})" if s["examples_short_vs_long"] else "")
            + ".",
        ]
    if res.get("prototype"):
        lines += [
            "",
            "### 5. Suggested skeleton changes, prototyped outside curate (P3, ngram 5)",
            "",
            "`--no-prototype` skips this. The stage's decision rebuilt from curate's own functions "
            "(`template_mask`, `signatures`, `candidate_pairs`, `verified`, `components`) with changed "
            "shingles; the first row must equal the stage's figure above.",
            "",
            "| variant | threshold | H | C | V | unstructured | clusters |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in res["prototype"]:
            lines.append(
                f"| {r['variant']} | {r['threshold']} | {fmt(r['homogeneity'])} | {fmt(r['completeness'])} | "
                f"{fmt(r['v_measure'])} | {r['unstructured']} | {r['clusters']} |"
            )
    return "\n".join(lines)


def write_markdown(path: Path, figures: str) -> None:
    block = f"{MD_START}\n{figures}\n{MD_END}"
    if path.exists() and MD_START in path.read_text("utf-8"):
        text = path.read_text("utf-8")
        head, rest = text.split(MD_START, 1)
        tail = rest.split(MD_END, 1)[1] if MD_END in rest else ""
        path.write_text(head + block + tail, "utf-8")
    else:
        path.write_text(
            "# minhash_dedup quality on real data\n\n## Figures\n\n" + block + "\n\n## Analysis\n\n(to be written)\n",
            "utf-8",
        )


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "eval_minhash")
    parser.add_argument("--md", type=Path, default=ROOT / "benchmarks" / "EVAL_MINHASH.md")
    parser.add_argument("--per-source", type=int, default=2500, help="near-dup originals per source")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-prototype", action="store_true", help="skip the prototype of suggested changes")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    res: dict[str, Any] = {
        "command": ".venv/bin/python benchmarks/eval_minhash_quality.py " + " ".join(sys.argv[1:]),
        "commit": git("rev-parse", "HEAD"),
        "dirty": [line[3:] for line in git("status", "--porcelain", "--", "curate").splitlines()],
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "curate_version": curate.__version__,
    }
    res["p3"] = eval_p3(args.shared, args.out)
    res["near_duplicates"] = eval_near_duplicates(args.shared, args.out, args.per_source, args.seed)
    res["alpaca"] = eval_alpaca(args.shared, args.out)
    ledger = res["alpaca"].pop("_ledger_alpaca_template", None)
    res["alpaca"].pop("_ledger_alpaca_template_no_input", None)
    res["short"] = eval_short(args.shared, args.out, ledger)
    if not args.no_prototype:
        res["prototype"] = eval_prototype(args.shared, res["p3"]["headline"]["v_measure"])
    res["seconds"] = time.perf_counter() - start
    (args.out / "results.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    write_markdown(args.md, figures_markdown(res))
    h, nd = res["p3"]["headline"], res["near_duplicates"]
    log("\nSummary")
    log(f"  P3 V-measure {h['v_measure']:.3f} (target 0.9; H {h['homogeneity']:.3f}, C {h['completeness']:.3f})")
    log(f"  near-dup recall {nd['recall']:.4f} (target 0.95), precision {nd['precision']:.4f} (target 0.97)")
    a = res["alpaca"]["include_input"]
    log(f"  Alpaca: {a['clusters_ge5']} clusters of size >= 5, keep_per_cluster = 3 removes {a['removed_keep3']}")
    s = res["short"]
    plain, templ = s["plain"]["wrong_merges"], s["template"]["wrong_merges"]
    log(f"  short texts: wrongly merged pairs: plain {plain}, template {templ}")
    log(f"  {res['seconds']:.0f}s; results: {args.out / 'results.json'}; figures: {args.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
