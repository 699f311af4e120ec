"""The manifest: what a build read, kept and wrote, per source and in total (no timestamps)."""

from __future__ import annotations

from typing import Any

import polars as pl

from curate import __version__
from curate.config import Config
from curate.mixture import MixturePlan


def build_manifest(
    config: Config,
    plan: MixturePlan,
    ledger: pl.DataFrame,
    instances: pl.DataFrame,
    shards: list[dict],
    quarantine_files: dict[str, str],
    warnings: list[str],
) -> dict[str, Any]:
    counts = ledger.group_by("source").agg(
        pl.len().alias("records_in"),
        (pl.col("status") == "kept").sum().alias("records_kept"),
        (pl.col("status") == "dropped").sum().alias("records_dropped"),
        (pl.col("status") == "quarantined").sum().alias("records_quarantined"),
    )
    by_source = {r["source"]: r for r in counts.iter_rows(named=True)}
    realized = instances.group_by("source").agg(pl.len().alias("n"), pl.col("n_tokens").sum().alias("tokens"))
    realized_by = {r["source"]: r for r in realized.iter_rows(named=True)}
    total_out = int(instances["n_tokens"].sum()) if instances.height else 0
    reasons = (
        ledger.filter(pl.col("status") != "kept")
        .with_columns(pl.col("reason").str.split(":").list.first().alias("code"))
        .group_by("source", "stage", "code")
        .agg(pl.len().alias("n"))
        .sort("source", "stage", "code")
    )
    sources = {}
    for line in plan.sources:
        c = by_source.get(line.source, {})
        out_tokens = int(realized_by.get(line.source, {}).get("tokens") or 0)
        sources[line.source] = {
            "records_in": int(c.get("records_in") or 0),
            "records_kept": int(c.get("records_kept") or 0),
            "records_dropped": int(c.get("records_dropped") or 0),
            "records_quarantined": int(c.get("records_quarantined") or 0),
            "records_out": int(realized_by.get(line.source, {}).get("n") or 0),
            "tokens_available": line.available_tokens,
            "tokens_out": out_tokens,
            "target_share": round(line.weight, 6),
            "realized_share": round(out_tokens / total_out, 6) if total_out else 0.0,
            "max_epochs": line.max_epochs,
            "epochs": round(line.epochs, 6),
            "epochs_realized": round(out_tokens / line.available_tokens, 6) if line.available_tokens else 0.0,
            "drop_reasons": nested_counts(reasons.filter(pl.col("source") == line.source)),
            "quarantine_file": quarantine_files.get(line.source),
        }
    return {
        "curate_version": __version__,
        "pipeline": config.pipeline.name,
        "config_sha256": config.sha256,
        "seed": config.pipeline.seed,
        "tokenizer": config.pipeline.tokenizer,
        "stages": [s.to_table() for s in config.stages],
        "sources": sources,
        "mixture": plan.to_dict() if plan.weighted else None,
        "totals": {
            "records_in": ledger.height,
            "records_out": instances.height,
            "tokens_out": total_out,
            "records_quarantined": int((ledger["status"] == "quarantined").sum()),
        },
        "shards": shards,
        "ledger": "ledger.parquet",
        "warnings": warnings,
    }


def decontamination_counts(config: Config, ledger: pl.DataFrame) -> dict[str, Any]:
    """Records dropped per eval set by `decontaminate` stages (zero counts included)."""
    names = [e["name"] for stage in config.stages if stage.name == "decontaminate" for e in stage.eval]
    if not names:
        return {}
    reasons = ledger.filter(pl.col("reason").str.starts_with("contaminated:"))["reason"].str.slice(13)
    counts = reasons.value_counts()
    found = dict(zip(counts["reason"].to_list(), counts["count"].to_list(), strict=True))
    return {"decontaminate": {"contaminated": {name: int(found.get(name, 0)) for name in names}}}


def nested_counts(reasons: pl.DataFrame) -> dict[str, dict[str, int]]:
    """{stage: {reason code: count}} for one source's dropped and quarantined records."""
    nested: dict[str, dict[str, int]] = {}
    for r in reasons.iter_rows(named=True):
        nested.setdefault(r["stage"], {})[r["code"]] = int(r["n"])
    return nested
