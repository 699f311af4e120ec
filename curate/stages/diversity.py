"""`diversity`: per-record novelty within the dataset, and dataset-level diversity metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import polars as pl

from curate.diversity import metrics
from curate.diversity.knn import novelty
from curate.diversity.vectors import center, hashed_vectors, text_of
from curate.params import below_minimum, param
from curate.stages.base import BarrierStep, Context, MapStep, Stage, Step

VEC, CLUSTER = "_div_vec", "_div_cluster"
_SLICE = 65536  # vectors are read from the pass files in slices of this many rows
MAX_DIM = 4096


@dataclass(frozen=True)
class _Embed(MapStep):
    """Per record: the hashed vector of its text, and `dup_cluster` if an earlier stage wrote it."""

    field: str
    dim: int
    frame: int
    stage_name: str = "diversity"
    reads: tuple[str, ...] = ("kind", "text", "messages", "meta")
    writes: tuple[str, ...] = (VEC, CLUSTER)

    def apply(self, df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        vectors = hashed_vectors(df.select(text_of(self.field)).to_series(), self.dim, self.frame)
        cluster = pl.col("dup_cluster").cast(pl.String) if "dup_cluster" in df.columns else pl.lit(None, pl.String)
        return df.with_columns(pl.Series(VEC, vectors, dtype=pl.Array(pl.Float32, self.dim)), cluster.alias(CLUSTER))


@dataclass(frozen=True)
class _Score(BarrierStep):
    """All vectors at once: centre on the dataset mean, kNN novelty per scope group, sample metrics."""

    field: str
    dim: int
    k: int
    scope: str
    exact_limit: int
    max_candidates: int
    sample_size: int
    stage_name: str = "diversity"
    reads: tuple[str, ...] = ("source", "kind", "text", "messages", "meta", VEC, CLUSTER)

    def decide(self, rows: pl.LazyFrame, ctx: Context) -> pl.DataFrame:
        keys = rows.select("_row", "source", CLUSTER).collect()
        n = keys.height
        vectors = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, _SLICE):  # bounded: one slice of the frame at a time beside the matrix
            vectors[start : start + _SLICE] = rows.select(VEC).slice(start, _SLICE).collect()[VEC].to_numpy()
        by_row = np.argsort(keys["_row"].to_numpy(), kind="stable")
        if (by_row != np.arange(n)).any():
            vectors, keys = vectors[by_row], keys[by_row]
        center(vectors, inplace=True)  # one space for every scope: the dataset's shared component removed
        if self.scope == "global":
            scores, cells = novelty(vectors, self.k, ctx.seed, self.exact_limit, self.max_candidates)
        else:
            scores, cells = np.full(n, np.nan), np.zeros(n, dtype=np.int64)
            groups, offset = keys["source"].to_numpy(), 0
            for group in sorted(set(groups.tolist())):
                index = np.flatnonzero(groups == group)
                scores[index], labels = novelty(vectors[index], self.k, ctx.seed, self.exact_limit, self.max_candidates)
                cells[index] = labels + offset
                offset += int(labels.max()) + 1
        del vectors
        decisions = pl.DataFrame(
            {"_row": keys["_row"], "diversity": pl.Series(scores).fill_nan(None).round(6)},
            schema={"_row": pl.Int64, "diversity": pl.Float64},
        )
        if ctx.artifacts is not None:
            stats = self._stats(rows, keys.with_columns(pl.Series("_cell", cells)), decisions, ctx.seed)
            (ctx.artifacts / "diversity.stats.json").write_text(json.dumps(stats, sort_keys=True) + "\n")
        return decisions

    def _stats(self, rows: pl.LazyFrame, keys: pl.DataFrame, decisions: pl.DataFrame, seed: int) -> dict:
        """Per-record score summary and cell entropy over all rows; sample metrics (see metrics module)."""
        scored = keys.join(decisions, on="_row")
        has_clusters = keys[CLUSTER].null_count() < keys.height
        plan = metrics.sample_plan(keys.select("_row", "source"), seed=seed, size=self.sample_size)
        wanted = pl.Series("_row", np.unique(np.concatenate(list(plan.values()))), dtype=pl.Int64)
        texts = (
            rows.filter(pl.col("_row").is_in(wanted.implode()))
            .select("_row", text_of(self.field).alias("_text"), pl.col(CLUSTER).alias("_cluster"))
            .collect()
        )
        sampled = metrics.grouped_metrics(plan, texts if has_clusters else texts.drop("_cluster"), self.dim)

        def clusters(part: pl.DataFrame) -> pl.Series:  # a record without a cluster id is a singleton
            singleton = pl.concat_str(pl.lit("\x00"), pl.col("_row").cast(pl.String))
            return part.select(pl.coalesce(pl.col(CLUSTER), singleton)).to_series()

        def whole(part: pl.DataFrame) -> dict:
            d = part["diversity"].drop_nulls()
            return {
                "records": part.height,
                "diversity_mean": round(float(d.mean()), 6) if len(d) else None,
                "diversity_p10": round(float(d.quantile(0.1)), 6) if len(d) else None,
                "diversity_p50": round(float(d.quantile(0.5)), 6) if len(d) else None,
                "vector_cells": part["_cell"].n_unique(),
                "vector_cell_entropy": metrics.cluster_figures(part["_cell"])["cluster_entropy"],
                **({"dup_clusters": metrics.cluster_figures(clusters(part))} if has_clusters else {}),
                "sample": None,
            }

        overall = {**whole(scored), "sample": sampled["overall"]}
        sources = {
            name: {**whole(scored.filter(pl.col("source") == name)), "sample": sampled["sources"][name]}
            for name in sampled["sources"]
        }
        return {"scope": self.scope, "k": self.k, "dim": self.dim, "overall": overall, "sources": sources}


@dataclass
class Diversity(Stage):
    """Novelty of each record within the dataset. Reads the chosen field's text; writes `diversity`
    (float in [0, 1], null for a record without tokens); never drops rows.

    Records become hashed word uni+bigram vectors (`curate.diversity.vectors`: no model, no network,
    deterministic), centred on the dataset's mean vector (removes the words all records share, in place
    of idf; so novelty is relative to what the whole dataset has in common, whatever the scope).
    `diversity` = 1 - mean cosine similarity to the record's `k` nearest neighbours in
    its scope (the whole dataset or its source): 0 for a record with k identical copies, near 1 for one
    unlike anything else. `frame = 8` compares only the first and last 8 tokens, where instruction
    templates keep their fixed wording. Exact up to `exact_limit` records per scope group; above it an approximate
    search inside k-means cells (`curate.diversity.knn` documents the approximation; cost grows like
    n x `max_candidates`, never n²). The vectors of all rows are held in memory during the barrier
    (4 x `dim` bytes per record: 1 GB per million at dim 256).

    Writes `diversity.stats.json` (the manifest's `stage_stats.diversity`): per source and overall, the
    score's mean/p10/p50, the number and size entropy of k-means cells, the size figures of
    `dup_cluster` groups when a `minhash_dedup` stage ran before (measured on the records it kept:
    dropped near-duplicates are gone, so `dup_clusters` counts templates that still have several kept
    members), and, on a seeded sample of `sample_size` records, distinct-1/2, mean pairwise cosine
    distance and template clusters (`curate.diversity.metrics`). The build also adds the sample
    metrics of the final mixture to the manifest (`diversity`) when this stage is configured.
    """

    name: ClassVar[str] = "diversity"
    reads: ClassVar[tuple[str, ...]] = ("kind", "text", "messages")
    writes: ClassVar[tuple[str, ...]] = ("diversity",)

    field: Literal["prompt", "response", "all"] = param("prompt", "text embedded (pretrain records: text)")
    k: int = param(10, "neighbours averaged")
    scope: Literal["global", "source"] = param("global", "neighbours from the whole dataset or the same source")
    dim: int = param(256, "hashed vector dimensions")
    frame: int = param(0, "embed only the first and last `frame` tokens (0: all; 8 finds instruction templates)")
    exact_limit: int = param(4096, "exact kNN up to this many records per scope group, approximate above")
    max_candidates: int = param(4096, "approximate search: most neighbours compared per k-means cell")
    sample_size: int = param(2000, "records per group sampled for dataset-level metrics")

    def problems(self, where: str) -> list[str]:
        out = below_minimum(where, self, k=1, dim=8, frame=0, exact_limit=2, max_candidates=2, sample_size=2)
        if self.dim > MAX_DIM:
            out.append(f"{where}.dim: must be <= {MAX_DIM}, got {self.dim}")
        if self.max_candidates <= self.k:
            out.append(f"{where}.max_candidates: must be > k = {self.k}, got {self.max_candidates}")
        return out

    def steps(self) -> list[Step]:
        score = _Score(
            self.field, self.dim, self.k, self.scope, self.exact_limit, self.max_candidates, self.sample_size
        )
        return [_Embed(self.field, self.dim, self.frame), score]
