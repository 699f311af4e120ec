"""The manifest: what a build read, kept and wrote, per source and in total (no timestamps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from curate import __version__
from curate.config import Config
from curate.formats import sha256_file
from curate.mixture import EXACTNESS_RULE, MixturePlan


def build_manifest(
    config: Config,
    plan: MixturePlan,
    ledger: pl.DataFrame,
    instances: pl.DataFrame,
    shards: list[dict],
    quarantine_files: dict[str, str],
    warnings: list[str],
    groups: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """The manifest. `instances` is the output plan (one row per written record, with `split`); `groups`
    (`_row`, `group`) says which mixture group each kept row is in, when there are groups."""
    if "split" not in instances.columns:
        instances = instances.with_columns(pl.lit("train").alias("split"))
    every = instances
    instances = every.filter(pl.col("split") == "train")
    held = every.filter(pl.col("split") == "validation")
    held_by = {r["source"]: r for r in _per_source(held).iter_rows(named=True)}
    counts = ledger.group_by("source").agg(
        pl.len().alias("records_in"),
        (pl.col("status") == "kept").sum().alias("records_kept"),
        (pl.col("status") == "dropped").sum().alias("records_dropped"),
        (pl.col("status") == "quarantined").sum().alias("records_quarantined"),
    )
    by_source = {r["source"]: r for r in counts.iter_rows(named=True)}
    realized_by = {r["source"]: r for r in _per_source(instances).iter_rows(named=True)}
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
        if held.height:
            sources[line.source]["validation_records"] = int(held_by.get(line.source, {}).get("n") or 0)
            sources[line.source]["validation_tokens"] = int(held_by.get(line.source, {}).get("tokens") or 0)
    return {
        "curate_version": __version__,
        "pipeline": config.pipeline.name,
        "config_sha256": config.sha256,
        "seed": config.pipeline.seed,
        "tokenizer": config.pipeline.tokenizer,
        "stages": [s.to_table() for s in config.stages],
        "sources": sources,
        "mixture": mixture_section(plan, instances, held, groups) if plan.weighted else None,
        "splits": {
            "train": {"records": instances.height, "tokens": total_out},
            **({"validation": {"records": held.height, "tokens": int(held["n_tokens"].sum())}} if held.height else {}),
        },
        "totals": {
            "records_in": ledger.height,
            "records_out": every.height,
            "tokens_out": int(every["n_tokens"].sum()) if every.height else 0,
            "records_quarantined": int((ledger["status"] == "quarantined").sum()),
        },
        "shards": shards,
        "ledger": "ledger.parquet",
        "warnings": warnings,
    }


def _per_source(instances: pl.DataFrame) -> pl.DataFrame:
    return instances.group_by("source").agg(pl.len().alias("n"), pl.col("n_tokens").sum().alias("tokens"))


def mixture_section(
    plan: MixturePlan, train: pl.DataFrame, held: pl.DataFrame, groups: pl.DataFrame | None
) -> dict[str, Any]:
    """The plan, with target vs realized tokens and shares per source, group and cell (training split),
    the exactness rule with its bound for this mixture, and the validation split's size."""
    section = plan.to_dict()
    total = int(train["n_tokens"].sum()) if train.height else 0
    if groups is not None and groups.height:
        train = train.join(groups, on="_row", how="left")
    else:
        train = train.with_columns(pl.lit(None, pl.String).alias("group"))
    by_cell = {
        (r["group"], r["source"]): int(r["tokens"])
        for r in train.group_by("group", "source").agg(pl.col("n_tokens").sum().alias("tokens")).iter_rows(named=True)
    }

    def realized(line: dict[str, Any], tokens: int, share: float) -> None:
        line["realized_tokens"] = tokens
        line["realized_share"] = round(tokens / total, 6) if total else 0.0
        line["target_share"] = round(share, 6)

    for line in section["sources"]:
        tokens = sum(v for (_, s), v in by_cell.items() if s == line["source"])
        realized(line, tokens, line["weight"])
    for line in section.get("groups", []):
        realized(line, sum(v for (g, _), v in by_cell.items() if g == line["group"]), line["weight"])
    for line in section.get("cells", []):
        realized(line, by_cell.get((line["group"], line["source"]), 0), line["share"])
    slack = sum(c.max_record_tokens for c in plan.cells if c.share > 0) / 2
    bound = (2 * slack + len(plan.cells)) / (plan.total_tokens - slack) if plan.total_tokens > slack else None
    errors = [abs(s["realized_share"] - s["target_share"]) for s in section["sources"]]
    section["exactness"] = {
        "rule": EXACTNESS_RULE,
        "share_error_bound": round(bound, 6) if bound is not None else None,
        "max_share_error": round(max(errors, default=0.0), 6),
        "max_token_error": max(
            (abs(by_cell.get((c.group, c.source), 0) - c.target_tokens) for c in plan.cells), default=0
        ),
    }
    if held.height:
        section["validation"] = {"records": held.height, "tokens": int(held["n_tokens"].sum())}
    return section


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


def other_files_checksums(out: Path, shards: list[dict[str, Any]]) -> dict[str, str]:
    """sha256 of every file in the output folder `out` that no shard row covers (its path, companion
    `files`, or for `hf` the folder of a split): the ledger, the quarantine files, the stage reports, the
    trainers' index files (`hf/dataset_dict.json`, MDS `index.json`, Megatron `data_path*.txt`), so that
    `curate verify` sees them edited or deleted too. Written before `manifest.json` and the files made
    from it (`report.html`, `run.json`), which are not listed."""
    covered = {row["path"] for row in shards} | {name for row in shards for name in row.get("files") or {}}
    folders = tuple(f"{row['path']}/" for row in shards if (out / row["path"]).is_dir())
    found = (path.relative_to(out).as_posix() for path in sorted(out.rglob("*")) if path.is_file())
    return {rel: sha256_file(out / rel) for rel in found if rel not in covered and not rel.startswith(folders)}
