"""Diversity metrics of the final mixture, for the manifest (`manifest["diversity"]`).

Computed only when the pipeline has a `diversity` stage (with its `field`, `dim` and `sample_size`), so
builds without one keep their manifest unchanged. The sample is drawn from the output *instances* (a
record repeated for several epochs can be drawn several times, so upweighting shows as lower
diversity), seeded with the pipeline seed: `sample_size` instances for the whole mixture and as many
per source. Only the sampled records' text is read back from the pass files, so memory is bounded by
the sample size. Clusters are `dup_cluster` when a `minhash_dedup` column is in the pass files, else
vector clusters of the sample (see `curate.diversity.metrics`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.diversity import metrics
from curate.diversity.vectors import text_of


def mixture_diversity(stages: list[Any], files: list[Path], instances: pl.DataFrame, seed: int) -> dict[str, Any]:
    """`{"diversity": {"mixture": ..., "sources": {...}}}`, or `{}` without a `diversity` stage."""
    stage = next((s for s in stages if s.name == "diversity"), None)
    if stage is None:
        return {}
    if not files or instances.is_empty():
        return {"diversity": {"mixture": None, "sources": {}}}
    plan = metrics.sample_plan(instances.select("_row", "source"), seed, stage.sample_size)
    wanted = pl.Series("_row", np.unique(np.concatenate(list(plan.values()))), dtype=pl.Int64)
    scan = pl.scan_parquet(files, glob=False)
    has_cluster = "dup_cluster" in scan.collect_schema().names()
    cluster = [pl.col("dup_cluster").cast(pl.String).alias("_cluster")] if has_cluster else []
    texts = (
        scan.filter(pl.col("_row").is_in(wanted.implode()))
        .select("_row", text_of(stage.field).alias("_text"), *cluster)
        .collect()
    )
    found = metrics.grouped_metrics(plan, texts, stage.dim)
    return {"diversity": {"mixture": found["overall"], "sources": found["sources"]}}
