"""What the report shows, aggregated from a build output: the manifest, a lazy scan of the ledger and
of the output shards, and `templates.jsonl`. Everything here is bounded in size whatever the build's:
per-source tables are cut to the `TOP` largest sources plus an "others" row by the page, histograms
have fixed bins, and only the largest templates and reasons are kept."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from curate.results import BuildOutput

TOP = 20  # sources, templates, reasons shown in full before "others" / <details>
BINS = 20
SCORE_COLUMNS = ("reasoning_depth", "diversity", "lang_score")
OTHERS = "(others)"


@dataclass
class Histogram:
    column: str
    edges: list[float]
    counts: list[int]
    log10: bool = False  # edges and by_source values are log10 of the column
    # per source: (label, p10, median, p90, mean, count), largest sources first
    by_source: list[tuple[str, float, float, float, float, int]] = field(default_factory=list)


@dataclass
class ReportData:
    """Plain Python values, ready to render."""

    manifest: dict[str, Any]
    funnel: list[tuple[str, int, int]]
    reasons: list[dict[str, Any]]
    cluster_sizes: Histogram | None
    templates: list[dict[str, Any]]
    templates_total: int
    histograms: list[Histogram]
    tokens: Histogram | None
    cot: dict[str, Any] | None
    languages: dict[str, Any] | None
    kind_tokens: dict[str, int]
    shard_sizes: dict[str, int]


def collect(out: BuildOutput) -> ReportData:
    """Aggregate everything the report shows."""
    m = out.manifest
    records = out.records
    schema = records.collect_schema()
    histograms = [
        score_histogram(records, c)
        for c in [*SCORE_COLUMNS, *sorted(c for c in schema.names() if c.startswith("fasttext_"))]
        if c in schema.names() and schema[c].is_numeric()
    ]
    templates = out.templates
    return ReportData(
        manifest=m,
        funnel=ledger_funnel(out.ledger, stage_order(m)),
        reasons=ledger_reasons(out.ledger),
        cluster_sizes=cluster_size_histogram(templates["size"].to_list()) if templates.height else None,
        templates=templates.head(TOP).to_dicts(),
        templates_total=templates.height,
        histograms=[x for x in histograms if x is not None],
        tokens=token_histogram(records) if "n_tokens" in schema.names() else None,
        cot=cot_shares(records) if "cot" in schema.names() else None,
        languages=language_shares(records) if "lang" in schema.names() else None,
        kind_tokens=kind_tokens(records) if {"kind", "n_tokens"} <= set(schema.names()) else {},
        shard_sizes={s["path"]: (out.path / s["path"]).stat().st_size for s in m.get("shards", [])},
    )


def stage_order(manifest: dict[str, Any]) -> list[str]:
    """Ledger stages in pipeline order: ingest (quarantine), the configured stages, then the mixture."""
    names = ["ingest"]
    for table in manifest.get("stages", []):
        if table.get("use") not in names:
            names.append(table["use"])
    return [*names, "mixture"]


def ledger_funnel(ledger: pl.LazyFrame, order: list[str]) -> list[tuple[str, int, int]]:
    """(step, records remaining after it, records it removed), from every input record to the output."""
    total = ledger.select(pl.len()).collect().item()
    removed = ledger.filter(pl.col("status") != "kept").group_by("stage").agg(pl.len().alias("n")).collect()
    by_stage = {r["stage"] or "(none)": int(r["n"]) for r in removed.iter_rows(named=True)}
    ordered = [s for s in order if s in by_stage] + sorted(s for s in by_stage if s not in order)
    steps = [("records in", total, 0)]
    remaining = total
    for stage in ordered:
        remaining -= by_stage[stage]
        steps.append((stage, remaining, by_stage[stage]))
    return steps


def ledger_reasons(ledger: pl.LazyFrame, details: int = 5) -> list[dict[str, Any]]:
    """Per (stage, status, reason code): count, sources, and the top details after the colon when a code
    has few distinct ones (`language:fr`, `contaminated:<eval>`; not per-cluster ids)."""
    gone = ledger.filter(pl.col("status") != "kept").with_columns(
        pl.col("reason").str.split_exact(":", 1).struct.rename_fields(["code", "detail"]).alias("_r")
    )
    gone = gone.unnest("_r")
    codes = (
        gone.group_by("stage", "status", "code")
        .agg(
            pl.len().alias("n"),
            pl.col("detail").n_unique().alias("n_details"),
            pl.col("source").n_unique().alias("sources"),
        )
        .sort("n", "stage", "code", descending=[True, False, False])
        .collect()
    )
    few = codes.filter(pl.col("n_details") <= 50).select("stage", "code")
    top = (
        gone.join(few.lazy(), on=["stage", "code"])
        .drop_nulls("detail")
        .group_by("stage", "code", "detail")
        .agg(pl.len().alias("n"))
        .sort("n", "detail", descending=[True, False])
        .collect()
    )
    rows = []
    for r in codes.iter_rows(named=True):
        mine = top.filter((pl.col("stage") == r["stage"]) & (pl.col("code") == r["code"]))
        r["details"] = [(d["detail"], int(d["n"])) for d in mine.head(details).iter_rows(named=True)]
        rows.append(r)
    return rows


def cluster_size_histogram(sizes: list[int]) -> Histogram:
    """Cluster sizes in power-of-two bins: 2, 3-4, 5-8, 9-16, ..."""
    top = max(sizes)
    edges = [2.0]
    while edges[-1] <= top:
        edges.append(edges[-1] * 2 - 1)
    counts = [0] * (len(edges) - 1)
    for s in sizes:
        i = next(i for i in range(len(counts)) if s < edges[i + 1])
        counts[i] += 1
    first = next(i for i, n in enumerate(counts) if n)  # no empty bins before the smallest cluster
    return Histogram("cluster size", edges[first:], counts[first:])


def _by_source(records: pl.LazyFrame, column: pl.Expr) -> list[tuple[str, float, float, float, float, int]]:
    """Quantiles of a numeric expression per source, the TOP largest sources and then the others."""
    value = column.alias("_v")
    stats = (
        records.select("source", value)
        .drop_nulls("_v")
        .group_by("source")
        .agg(
            pl.col("_v").quantile(0.1).alias("p10"),
            pl.col("_v").median().alias("p50"),
            pl.col("_v").quantile(0.9).alias("p90"),
            pl.col("_v").mean().alias("mean"),
            pl.len().alias("n"),
        )
        .sort("n", "source", descending=[True, False])
        .collect()
    )
    rows = [(r["source"], r["p10"], r["p50"], r["p90"], r["mean"], int(r["n"])) for r in stats.iter_rows(named=True)]
    if len(rows) > TOP:
        rest = stats["source"].to_list()[TOP:]
        o = (
            records.filter(pl.col("source").is_in(rest))
            .select(value)
            .drop_nulls()
            .select(
                pl.col("_v").quantile(0.1),
                pl.col("_v").median().alias("m"),
                pl.col("_v").quantile(0.9).alias("q"),
                pl.col("_v").mean().alias("mean"),
                pl.len(),
            )
            .collect()
            .row(0)
        )
        rows = [*rows[:TOP], (f"{OTHERS} {len(rest)} sources", o[0], o[1], o[2], o[3], int(o[4]))]
    return rows


def score_histogram(records: pl.LazyFrame, column: str) -> Histogram | None:
    """Histogram of a score column over all output records ([0, 1] when it fits), and per-source ranges."""
    lo, hi = records.select(pl.col(column).min().alias("lo"), pl.col(column).max().alias("hi")).collect().row(0)
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    lo, hi = (0.0, 1.0) if lo >= 0 and hi <= 1 else (float(lo), float(hi) if hi > lo else float(lo) + 1)
    edges, counts = _bins(records, pl.col(column), lo, hi)
    return Histogram(column, edges, counts, False, _by_source(records, pl.col(column)))


def _bins(records: pl.LazyFrame, value: pl.Expr, lo: float, hi: float) -> tuple[list[float], list[int]]:
    width = (hi - lo) / BINS
    index = ((value - lo) / width).floor().clip(0, BINS - 1).cast(pl.Int64).alias("_bin")
    counts = records.select(index).drop_nulls().group_by("_bin").agg(pl.len()).collect()
    found = dict(zip(counts["_bin"].to_list(), counts["len"].to_list(), strict=True))
    return [lo + i * width for i in range(BINS + 1)], [int(found.get(i, 0)) for i in range(BINS)]


def token_histogram(records: pl.LazyFrame) -> Histogram | None:
    """Tokens per record on a log10 axis, and per-source ranges (also log10)."""
    lo, hi = records.select(pl.col("n_tokens").min(), pl.col("n_tokens").max().alias("m")).collect().row(0)
    if lo is None:
        return None
    a, b = math.floor(math.log10(max(lo, 1))), math.ceil(math.log10(max(hi, 1) + 1))
    value = pl.col("n_tokens").clip(1).log10()
    edges, counts = _bins(records, value, float(a), float(max(b, a + 1)))
    return Histogram("n_tokens", edges, counts, True, _by_source(records, value))


def cot_shares(records: pl.LazyFrame) -> dict[str, Any]:
    """Share of records with chain of thought per source, and the CoT styles' counts."""
    per = (
        records.group_by("source")
        .agg(pl.col("cot").cast(pl.Float64).mean().alias("share"), pl.len().alias("n"))
        .sort("n", "source", descending=[True, False])
        .collect()
    )
    styles: list[tuple[str, int]] = []
    if "cot_style" in records.collect_schema().names():
        counted = (
            records.select(pl.col("cot_style").explode().alias("style"))
            .drop_nulls()
            .group_by("style")
            .agg(pl.len())
            .sort("len", "style", descending=[True, False])
            .collect()
        )
        styles = [(r[0], int(r[1])) for r in counted.head(TOP).iter_rows()]
    overall = records.select(pl.col("cot").cast(pl.Float64).mean()).collect().item()
    sources = [(r["source"], float(r["share"] or 0), int(r["n"])) for r in per.iter_rows(named=True)]
    return {"overall": overall or 0.0, "sources": sources, "styles": styles}


def language_shares(records: pl.LazyFrame, top: int = 12) -> dict[str, Any]:
    """The most common languages overall, and each source's top three with shares."""
    overall = records.group_by("lang").agg(pl.len()).sort("len", "lang", descending=[True, False]).collect()
    per = (
        records.group_by("source", "lang")
        .agg(pl.len())
        .with_columns((pl.col("len") / pl.col("len").sum().over("source")).alias("share"))
        .sort("source", "len", "lang", descending=[False, True, False])
        .group_by("source", maintain_order=True)
        .agg(pl.col("lang").head(3), pl.col("share").head(3), pl.col("len").sum().alias("n"))
        .sort("n", "source", descending=[True, False])
        .collect()
    )
    return {
        "overall": [(str(r[0]), int(r[1])) for r in overall.head(top).iter_rows()],
        "sources": [(r["source"], list(zip(r["lang"], r["share"], strict=True))) for r in per.iter_rows(named=True)],
    }


def kind_tokens(records: pl.LazyFrame) -> dict[str, int]:
    """Output tokens per record kind (the pretrain share is the replay share)."""
    rows = records.group_by("kind").agg(pl.col("n_tokens").sum()).collect()
    return {str(k): int(v) for k, v in rows.iter_rows()}
